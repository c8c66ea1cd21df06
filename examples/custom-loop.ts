// A hand-written ε-DPO loop on the public API: CausalLM for the policy and a frozen reference,
// ops.epsilonDpoLoss on their logits, AdamW for the update and β updated as spec §6 says.
//   node --import tsx examples/custom-loop.ts <model dir> [steps]
//
// Memory contract for embedders (README, "Memory in loops"):
// - t.dispose() frees a tensor's storage at once; memory returns to the OS for buffers of
//   256 KiB and more (the addon fixes glibc's mmap threshold; MALLOC_MMAP_THRESHOLD_ overrides).
// - backward() / backwardAsync() free the saved activations of the graph they ran through when
//   they return. The graph's outputs (the loss and anything else the op returned) stay alive
//   until they are disposed or collected.
// - A tensor you do not dispose is freed by its finalizer, which Node runs from the event loop.
//   A loop that never awaits must therefore dispose every tensor it creates per step, or its
//   memory grows until the loop yields. This loop awaits, and disposes anyway to keep peaks low.
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
    // Per-step tensors: free them now rather than when their finalizers get a turn.
    for (const t of [logits, refLogits, ...Object.values(out)]) t?.dispose()
    beta = beta / (1 + epsilon * meanStep) // spec §6: once per optimizer step
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
