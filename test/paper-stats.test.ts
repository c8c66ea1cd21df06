// bench/paper's seed statistics: the t interval against hand-computed values, and the bootstrap
// interval of a mean (seeded, inside the data's range, around the mean, narrowing with n).
import t from 'tap'

import { bootstrapMeanCi, meanCi } from '../bench/paper/stats'

t.test('mean ± t(0.975, n−1)·s/√n', (t) => {
  const ci = meanCi([1, 2, 3, 4, 5])
  // s = √2.5, t(0.975, 4) = 2.776
  const half = (2.776 * Math.sqrt(2.5)) / Math.sqrt(5)
  t.ok(Math.abs(ci.mean - 3) < 1e-12 && Math.abs(ci.lo - (3 - half)) < 1e-12 && Math.abs(ci.hi - (3 + half)) < 1e-12)
  t.same(meanCi([7]), { mean: 7, lo: 7, hi: 7 })
  t.end()
})

t.test('bootstrap interval of the mean', (t) => {
  const xs = [0.02, -0.01, 0.03, 0.05, 0.0, 0.01]
  const a = bootstrapMeanCi(xs, 5000, 1)
  t.same(bootstrapMeanCi(xs, 5000, 1), a, 'seeded')
  t.ok(a.lo >= Math.min(...xs) && a.hi <= Math.max(...xs) && a.lo < a.mean && a.mean < a.hi, `${a.lo} < ${a.mean} < ${a.hi}`)
  const many = bootstrapMeanCi(
    Array.from({ length: 96 }, (_, i) => xs[i % xs.length]!),
    5000,
    1,
  )
  t.ok(many.hi - many.lo < (a.hi - a.lo) / 2, 'sixteen times the data: at least half as wide')
  t.end()
})
