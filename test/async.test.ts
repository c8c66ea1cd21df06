// Long native calls run on the thread pool: the JS thread keeps running timers meanwhile, and the
// results equal the synchronous ones.
import t from 'tap'

import { ops } from '../lib/index'
import { makeCase } from './helpers/reference'

t.test('epsilonDpoLossAsync leaves the event loop free and matches the sync op', async (t) => {
  const c = makeCase({ pairs: 4, steps: 128, vocab: 8000, seed: 3 })
  const args = { policyLogits: c.policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.1, epsilon: 0.01 }
  const sync = ops.epsilonDpoLoss(args)
  let ticks = 0
  const timer = setInterval(() => ticks++, 0)
  const started = performance.now()
  const pending = ops.epsilonDpoLossAsync(args)
  // The call returned before the work finished.
  t.ok(performance.now() - started < 50, 'returns a Promise at once')
  const result = await pending
  clearInterval(timer)
  t.ok(ticks > 0, `timers ran ${ticks} times while the op ran`)
  t.equal(result.loss.item(), sync.loss.item())
  t.same(Array.from(result.steps.toArray() as BigInt64Array), Array.from(sync.steps.toArray() as BigInt64Array))
})
