// Learning-rate schedules (transformers' formulas) and the global β update of spec §6.
import t from 'tap'

import { BetaController } from '../lib/train/methods/beta'
import { lrMultiplier, warmupSteps } from '../lib/train/schedule'

t.test('cosine with warm-up, as get_cosine_schedule_with_warmup', (t) => {
  // 10 steps, warm-up ratio 0.1 → ceil(1) = 1 warm-up step.
  t.equal(warmupSteps(10, 0.1), 1)
  t.equal(lrMultiplier('cosine', 0, 10, 0.1), 0)
  t.equal(lrMultiplier('cosine', 1, 10, 0.1), 1)
  t.ok(Math.abs(lrMultiplier('cosine', 4, 10, 0.1) - 0.5 * (1 + Math.cos((Math.PI * 3) / 9))) < 1e-15)
  t.ok(Math.abs(lrMultiplier('cosine', 10, 10, 0.1)) < 1e-15)
  t.equal(warmupSteps(7, 0.1), 1, 'ceil')
  t.equal(lrMultiplier('linear', 3, 5, 0.2), 1 - 2 / 4)
  t.equal(lrMultiplier('constant', 1, 5, 0.5), 1 / 3, 'warm-up of ceil(2.5) = 3 steps')
  t.equal(lrMultiplier('constant', 3, 5, 0.5), 1)
  t.equal(lrMultiplier('constant', 4, 5, 0.2), 1)
  t.end()
})

t.test('β is updated once per optimizer step from the mean step over every micro-batch', (t) => {
  const beta = new BetaController(0.1, 0.01)
  beta.accumulate([1, 1, 0, -1]) // micro-batch 1
  beta.accumulate(new BigInt64Array([1n, 1n])) // micro-batch 2
  t.equal(beta.beta, 0.1, 'micro-batches of a step share β')
  const u = beta.finishStep()
  t.equal(u.before, 0.1)
  t.equal(u.avgSteps, 3 / 6)
  t.equal(u.plusFraction, 4 / 6)
  t.equal(u.minusFraction, 1 / 6)
  t.equal(u.after, 0.1 / (1 + 0.01 * 0.5))
  t.equal(beta.beta, u.after)
  const next = beta.finishStep()
  t.equal(next.after, u.after, 'a step without pairs leaves β unchanged')
  t.end()
})

t.test('ε = 0 keeps β constant (DPO)', (t) => {
  const beta = new BetaController(0.5, 0)
  beta.accumulate([1, -1, 1])
  t.equal(beta.finishStep().after, 0.5)
  t.end()
})
