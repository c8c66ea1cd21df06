// Child process for test/sync-loop-memory.test.ts: a synchronous ε-DPO training loop that never
// yields to the event loop, disposing every output. Prints the RSS growth after a warm-up, in MB.
import { ops, Tensor } from '../../lib/index'

const [B, T, V] = [2, 16, 2048] // 512 KiB of fp32 logits per model: above the 256 KiB mmap threshold
const policy = Tensor.randn([2 * B, T, V])
policy.requiresGrad = true
const reference = Tensor.randn([2 * B, T, V])
const labels = Tensor.zeros([2 * B, T], { dtype: 'int64' })
const lossMask = Tensor.full([2 * B, T], 1)

function step(): void {
  const out = ops.epsilonDpoLoss({ policyLogits: policy, referenceLogits: reference, labels, lossMask, beta: 0.1, epsilon: 0.01 })
  out.loss.backward()
  for (const t of Object.values(out)) t.dispose()
  const logps = policy.logSoftmax(2)
  const total = logps.sum()
  total.backward()
  logps.dispose()
  total.dispose()
  policy.zeroGrad()
}

for (let i = 0; i < 200; i++) step()
const before = process.memoryUsage().rss
for (let i = 0; i < 2000; i++) step()
console.log(JSON.stringify({ growthMB: (process.memoryUsage().rss - before) / 2 ** 20 }))
