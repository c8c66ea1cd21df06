// Worker for test/helpers/terminate-host.ts: native calls back to back until it is terminated.
import { parentPort } from 'node:worker_threads'

import { ops, Tensor } from '../../lib/index'

const logits = () => Tensor.randn([4, 8, 64], { dtype: 'float32' })
parentPort!.postMessage('running')
for (;;) {
  const policy = logits()
  policy.requiresGrad = true
  const r = ops.epsilonDpoLoss({
    policyLogits: policy,
    referenceLogits: logits(),
    labels: Tensor.zeros([4, 8], { dtype: 'int64' }),
    lossMask: Tensor.full([4, 8], 1),
    beta: 0.1,
    epsilon: 0.01,
  })
  r.loss.backward()
  policy.matmul(policy.transpose(1, 2)).logSoftmax(2).sum().item()
}
