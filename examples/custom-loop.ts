// A hand-written ε-DPO loop on the public API: CausalLM for the policy and a frozen reference,
// ops.epsilonDpoLoss on their logits, AdamW for the update and β updated as spec §6 says.
//   node --import tsx examples/custom-loop.ts <model dir> [steps]
import { AdamW, CausalLM, ops, Tensor } from 'edpo'

async function main(): Promise<void> {
  const [dir, stepsArg = '3'] = process.argv.slice(2)
  if (!dir) throw new Error('usage: custom-loop.ts <model dir> [steps]')
  const policy = (await CausalLM.fromPretrained(dir)).train()
  const reference = policy.clone() // frozen: no gradients, eval mode
  const optimizer = new AdamW(policy.namedParameters(), { weightDecay: 0 })
  const epsilon = 0.01
  let beta = 0.1

  // One fixed toy batch: 2 pairs → 4 rows (chosen rows first), the last 3 tokens are the completion.
  const B = 2
  const T = 6
  const vocab = policy.config.vocab_size
  const rows = Array.from({ length: 2 * B }, (_, r) => Array.from({ length: T }, (_, t) => (r * 7 + t * 3 + 1) % vocab))
  const inputIds = Tensor.from(BigInt64Array.from(rows.flat().map(BigInt)), [2 * B, T])
  const labels = Tensor.from(BigInt64Array.from(rows.flatMap((r) => [...r.slice(1), 0]).map(BigInt)), [2 * B, T])
  const lossMask = Tensor.from(Float32Array.from(rows.flatMap(() => [0, 0, 1, 1, 1, 0])), [2 * B, T])

  for (let step = 1; step <= Number(stepsArg); step++) {
    const { logits } = await policy.forwardAsync(inputIds)
    const { logits: refLogits } = await reference.forwardAsync(inputIds, { grad: false })
    const out = ops.epsilonDpoLoss({ policyLogits: logits, referenceLogits: refLogits, labels, lossMask, beta, epsilon })
    await out.loss.backwardAsync()
    optimizer.clipGradNorm(1)
    await optimizer.step(1e-3)
    optimizer.zeroGrad()
    const steps = Array.from(out.steps.toArray() as BigInt64Array, Number)
    const meanStep = steps.reduce((a, b) => a + b, 0) / steps.length
    console.log(JSON.stringify({ step, loss: out.loss.item(), beta, steps }))
    beta = beta / (1 + epsilon * meanStep) // spec §6: once per optimizer step
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
