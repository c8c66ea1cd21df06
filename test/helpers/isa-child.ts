// Child process for test/cpu-isa.test.ts: runs the op under the instruction set capped by
// EDPO_CPU_ISA and prints its outputs and gradients as JSON.
import { ops, runtime, Tensor } from '../../lib/index'
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
process.stdout.write(JSON.stringify({ isa: runtime().cpuKernels, results }))
