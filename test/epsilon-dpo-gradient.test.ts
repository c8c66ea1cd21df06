// Gradients of ops.epsilonDpoLoss w.r.t. the policy logits: fp64 central finite differences of
// the op itself, and fp64 autograd through the eager reference for larger/bf16 cases.
import t from 'tap'

import { ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type Case, makeCase, referenceGradient, referenceLoss } from './helpers/reference'

function lossOf(c: Case, policy: Tensor, beta: number, epsilon: number, labelSmoothing = 0): number {
  return ops
    .epsilonDpoLoss({ policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta, epsilon, labelSmoothing })
    .loss.item()
}

t.test('fp64 finite differences match the analytic gradient', (t) => {
  for (const [seed, labelSmoothing] of [
    [1, 0],
    [2, 0.2],
  ] as const) {
    const c = makeCase({ pairs: 2, steps: 3, vocab: 7, seed, dtype: 'float64', emptyRows: [2] })
    const beta = 0.7
    const epsilon = 0.05
    const ref = referenceLoss(c, beta, epsilon, labelSmoothing)
    // Finite differences are only valid away from a step-decision boundary.
    for (let i = 0; i < 2; i++) t.ok(Math.min(Math.abs(ref.plusMargin[i]!), Math.abs(ref.minusMargin[i]!)) > 1e-4)
    const base = c.policy.toArray() as Float64Array
    const policy = Tensor.from(base, c.policy.shape, { requiresGrad: true })
    const out = ops.epsilonDpoLoss({ policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta, epsilon, labelSmoothing })
    out.loss.backward()
    const analytic = policy.grad!.toArray() as Float64Array
    const h = 1e-6
    const numeric = new Float64Array(base.length)
    for (let k = 0; k < base.length; k++) {
      const plus = Float64Array.from(base)
      const minus = Float64Array.from(base)
      plus[k] = plus[k]! + h
      minus[k] = minus[k]! - h
      const lp = lossOf(c, Tensor.from(plus, c.policy.shape), beta, epsilon, labelSmoothing)
      const lm = lossOf(c, Tensor.from(minus, c.policy.shape), beta, epsilon, labelSmoothing)
      numeric[k] = (lp - lm) / (2 * h)
    }
    const cmp = close(analytic, numeric, 1e-6, 1e-9)
    t.ok(cmp.ok, `labelSmoothing=${labelSmoothing}: ${describe(cmp)}`)
    // Rows with an all-zero mask get exactly zero gradient.
    const rowSize = 3 * 7
    t.ok(
      analytic.subarray(2 * rowSize, 3 * rowSize).every((v) => v === 0),
      'empty row has zero gradient',
    )
  }
  t.end()
})

t.test('gradient matches fp64 autograd through the eager reference', (t) => {
  for (const spec of [
    { pairs: 3, steps: 8, vocab: 1000, seed: 5, dtype: 'float32' as const, rtol: 1e-5, atol: 1e-9 },
    { pairs: 2, steps: 5, vocab: 50257, seed: 6, dtype: 'float32' as const, rtol: 1e-5, atol: 1e-10 },
    // bf16 gradients are rounded to bf16 on output: 2^-8 relative.
    { pairs: 2, steps: 6, vocab: 333, seed: 7, dtype: 'bfloat16' as const, rtol: 8e-3, atol: 1e-9 },
    { pairs: 2, steps: 6, vocab: 333, seed: 8, dtype: 'float16' as const, rtol: 1e-3, atol: 1e-7 },
  ]) {
    const c = makeCase({ ...spec, spread: 8 })
    const policy = Tensor.from(c.policy.to('float32').toArray() as Float32Array, c.policy.shape, {
      dtype: spec.dtype,
      requiresGrad: true,
    })
    const out = ops.epsilonDpoLoss({ policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.3, epsilon: 0.01 })
    out.loss.backward()
    t.equal(policy.grad!.dtype, spec.dtype, 'gradient keeps the logits dtype')
    const got = policy.grad!.to('float64').toArray() as Float64Array
    const want = referenceGradient(c, 0.3, 0.01)
    const cmp = close(got, want, spec.rtol, spec.atol)
    t.ok(cmp.ok, `V=${spec.vocab} ${spec.dtype}: ${describe(cmp)}`)
  }
  t.end()
})

t.test('chosenLogps-style outputs carry no gradient; loss.backward accumulates', (t) => {
  const c = makeCase({ pairs: 1, steps: 2, vocab: 5, seed: 9 })
  const policy = Tensor.from(c.policy.toArray() as Float32Array, c.policy.shape, { requiresGrad: true })
  const args = { policyLogits: policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.1, epsilon: 0.01 }
  const first = ops.epsilonDpoLoss(args)
  t.equal(first.loss.requiresGrad, true)
  t.equal(first.chosenLogps.requiresGrad, false)
  t.equal(first.steps.requiresGrad, false)
  first.loss.backward()
  const once = Float32Array.from(policy.grad!.toArray() as Float32Array)
  ops.epsilonDpoLoss(args).loss.backward()
  const twice = policy.grad!.toArray() as Float32Array
  t.ok(
    close(
      twice,
      Array.from(once, (v) => 2 * v),
      1e-6,
      1e-12,
    ).ok,
    'second backward adds to .grad',
  )
  t.end()
})
