// Child process for test/cpu-isa.test.ts: runs the op under the instruction set capped by
// EDPO_CPU_ISA and prints its outputs and gradients as JSON, then one AdamW step per parameter
// dtype (the optimizer's one-pass CPU kernel: the cap must reach it too) and the ISA it ran with.
import { AdamW, ops, runtime, Tensor } from '../../lib/index'
import { type CaseOptions, makeCase } from './reference'

const specs = JSON.parse(process.argv[2]!) as CaseOptions[]
const results = specs.map((spec) => {
  const c = makeCase(spec)
  const policy = Tensor.from(c.policy.to('float32').toArray() as Float32Array, c.policy.shape, {
    dtype: spec.dtype ?? 'float32',
    requiresGrad: true,
  })
  const out = ops.epsilonDpoLoss({ policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.3, epsilon: 0.01 })
  out.loss.backward()
  const seq = ops.sequenceLogps({ policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, epsilon: 0.01 })
  const arr = (t: Tensor) => Array.from(t.to('float64').toArray() as Float64Array)
  return {
    S: arr(seq.policy),
    Sref: arr(seq.reference),
    Splus: arr(seq.plus),
    Sminus: arr(seq.minus),
    steps: arr(out.steps),
    loss: out.loss.item(),
    grad: arr(policy.grad!),
  }
})
const before = runtime().optimizerKernels
// 4099 elements: a whole number of vector lanes plus a tail, on every build.
const n = 4099
const initial = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 2)
const direction = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11) + 0.05)
const adamw = (['float32', 'bfloat16'] as const).map((dtype) => {
  const p = Tensor.from(initial, [n], { dtype, requiresGrad: true })
  p.mul(Tensor.from(direction, [n], { dtype }))
    .sum()
    .backward()
  const opt = new AdamW([['w', p]], { weightDecay: 0.1 })
  return opt.step(1e-2).then(() => ({ dtype, weights: Array.from(p.to('float64').toArray() as Float64Array) }))
})
Promise.all(adamw).then((steps) => {
  process.stdout.write(JSON.stringify({ isa: runtime().cpuKernels, optimizerBefore: before, optimizerIsa: runtime().optimizerKernels, results, steps }))
})
