// The CUDA kernels against the CPU op (same inputs, same outputs within fp32 accumulation
// differences). Skips cleanly where there is no CUDA build or no GPU.
import t from 'tap'

import { type DType, ops, runtime, type Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { makeCase } from './helpers/reference'

const rt = runtime()
const skip = !rt.cudaBuild ? 'not a CUDA build (EDPO_CUDA=1 npm run build:cuda)' : !rt.cudaAvailable ? 'no CUDA device' : false

t.test('CUDA op matches the CPU op', { skip }, (t) => {
  for (const [vocab, dtype] of [
    [7, 'float32'],
    [32000, 'bfloat16'],
    [50257, 'float16'],
    [128256, 'bfloat16'],
  ] as [number, DType][]) {
    const c = makeCase({ pairs: 2, steps: 6, vocab, seed: vocab, dtype, emptyRows: [1] })
    const args = (device: string) => {
      const policy = c.policy.to(device)
      policy.requiresGrad = true
      return {
        policyLogits: policy,
        referenceLogits: c.reference.to(device),
        labels: c.labels.to(device),
        lossMask: c.mask.to(device),
        beta: 0.1,
        epsilon: 0.01,
      }
    }
    const cpuArgs = args('cpu')
    const gpuArgs = args('cuda')
    const cpu = ops.epsilonDpoLoss(cpuArgs)
    const gpu = ops.epsilonDpoLoss(gpuArgs)
    cpu.loss.backward()
    gpu.loss.backward()
    for (const key of ['chosenLogps', 'rejectedLogps', 'refChosenLogps', 'refRejectedLogps'] as const) {
      const cmp = close(gpu[key].to('cpu').toArray() as Float32Array, cpu[key].toArray() as Float32Array, 1e-5, 1e-5)
      t.ok(cmp.ok, `V=${vocab} ${dtype} ${key}: ${describe(cmp)}`)
    }
    t.same(Array.from(gpu.steps.to('cpu').toArray() as BigInt64Array), Array.from(cpu.steps.toArray() as BigInt64Array))
    const grad = (x: Tensor) => x.grad!.to('cpu').to('float64').toArray() as Float64Array
    const cmp = close(grad(gpuArgs.policyLogits), grad(cpuArgs.policyLogits), dtype === 'float32' ? 1e-5 : 1e-2, 1e-7)
    t.ok(cmp.ok, `V=${vocab} ${dtype} gradient: ${describe(cmp)}`)
  }
  t.end()
})
