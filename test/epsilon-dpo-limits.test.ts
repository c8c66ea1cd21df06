// Finite, accepted inputs never give a non-finite loss: extreme β and soft-caps are bounded with an
// error naming the argument, overflowing logits are reported instead of returning NaN, every real
// mask dtype works as a weight, and fp16 heads work on the CPU.
import t from 'tap'

import { type DType, ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { makeCase, referenceLoss } from './helpers/reference'

const c = makeCase({ pairs: 2, steps: 3, vocab: 11, seed: 41 })
const args = (patch: Partial<Parameters<typeof ops.epsilonDpoLoss>[0]> = {}) => ({
  policyLogits: c.policy,
  referenceLogits: c.reference,
  labels: c.labels,
  lossMask: c.mask,
  beta: 0.1,
  epsilon: 0.01,
  ...patch,
})

t.test('β is bounded: 1e308 is an error naming beta, 1e6 gives a finite loss', (t) => {
  t.throws(() => ops.epsilonDpoLoss(args({ beta: 1e308 })), /beta: must be a number in \(0, 1e\+06\]/)
  t.ok(Number.isFinite(ops.epsilonDpoLoss(args({ beta: 1e6 })).loss.item()))
  t.end()
})

t.test('logits near the float32 maximum are reported, not turned into NaN', (t) => {
  const huge = Float32Array.from(c.reference.toArray() as Float32Array)
  huge[2 * 11 + 5] = 3.3e38 // row 2 = sequence 0, last step: always a completion token
  const reference = Tensor.from(huge, c.reference.shape)
  t.throws(() => ops.epsilonDpoLoss(args({ referenceLogits: reference })), /policyLogits\/referenceLogits: row 2 .* holds finite logits up to 3\.3\d*e\+38/)
  t.throws(
    () => ops.sequenceLogps({ policyLogits: c.policy, referenceLogits: reference, labels: c.labels, lossMask: c.mask, epsilon: 0.01 }),
    /too large for the Float kernel/,
  )
  // Large but representable after scaling: exact against the fp64 reference.
  const big = Float32Array.from(c.policy.toArray() as Float32Array, (v, i) => (i % 11 === 3 ? 1e30 : v))
  const policy = Tensor.from(big, c.policy.shape)
  const got = ops.epsilonDpoLoss(args({ policyLogits: policy }))
  const want = referenceLoss({ ...c, policy }, 0.1, 0.01)
  t.ok(Number.isFinite(got.loss.item()), `loss ${got.loss.item()}`)
  const cmp = close([got.loss.item()], [want.loss], 1e-5, 1e-6)
  t.ok(cmp.ok, describe(cmp))
  t.end()
})

t.test('a soft-cap beyond the hidden dtype range is an error naming finalLogitSoftcap', (t) => {
  const rows = 4
  const hidden = (dtype: DType) => Tensor.full([rows, 2, 3], 0.5, { dtype })
  const head = (dtype: DType) => Tensor.full([7, 3], 0.25, { dtype })
  const fromHidden = (softcap: number, dtype: DType) =>
    ops.epsilonDpoLossFromHidden({
      policyHidden: hidden(dtype),
      policyHead: head(dtype),
      referenceHidden: hidden(dtype),
      referenceHead: head(dtype),
      labels: Tensor.zeros([rows, 2], { dtype: 'int64' }),
      lossMask: Tensor.full([rows, 2], 1),
      beta: 0.1,
      epsilon: 0.01,
      finalLogitSoftcap: softcap,
    })
  t.throws(() => fromHidden(3.5e38, 'float32'), /finalLogitSoftcap: must be 0 \(off\) or a number in \(0, 3\.40\d*e\+38\]/)
  t.throws(() => fromHidden(1e5, 'float16'), /finalLogitSoftcap: .*\(0, 65504\]/)
  t.ok(Number.isFinite(fromHidden(3e38, 'float32').loss.item()), 'a cap inside the range stays finite')
  t.equal(fromHidden(3e38, 'float32').loss.item(), fromHidden(0, 'float32').loss.item(), 'a huge cap is the identity')
  t.end()
})

t.test('every real lossMask dtype is a per-token weight', (t) => {
  const want = ops.epsilonDpoLoss(args()).loss.item()
  const mask = c.mask.toArray() as Float32Array
  for (const dtype of ['bool', 'uint8', 'int8', 'int16', 'int32', 'int64', 'float16', 'bfloat16', 'float32', 'float64'] as const) {
    const m = Tensor.from(Float64Array.from(mask), c.mask.shape).to(dtype)
    t.equal(ops.epsilonDpoLoss(args({ lossMask: m })).loss.item(), want, dtype)
  }
  t.end()
})

t.test('epsilonDpoLossFromHidden runs fp16 heads on the CPU (in fp32) and returns fp16 gradients', (t) => {
  const rows = 4
  const r = (n: number, seed: number) => Float64Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i * 1.7) * 0.8)
  const make = (dtype: DType) => ({
    policyHidden: Tensor.from(r(rows * 3 * 8, 1), [rows, 3, 8], { dtype, requiresGrad: true }),
    policyHead: Tensor.from(r(13 * 8, 2), [13, 8], { dtype, requiresGrad: true }),
    referenceHidden: Tensor.from(r(rows * 3 * 8, 3), [rows, 3, 8], { dtype }),
    referenceHead: Tensor.from(r(13 * 8, 4), [13, 8], { dtype }),
    labels: Tensor.from(
      BigInt64Array.from({ length: rows * 3 }, (_, i) => BigInt((i * 5) % 13)),
      [rows, 3],
    ),
    lossMask: Tensor.full([rows, 3], 1),
    beta: 0.5,
    epsilon: 0.05,
  })
  const half = make('float16')
  // The fp32 run sees the same (fp16-rounded) values.
  const single = make('float32')
  for (const k of ['policyHidden', 'policyHead', 'referenceHidden', 'referenceHead'] as const) {
    single[k] = Tensor.from(half[k].to('float64').toArray() as Float64Array, half[k].shape, { dtype: 'float32', requiresGrad: k.startsWith('policy') })
  }
  const got = ops.epsilonDpoLossFromHidden(half)
  const want = ops.epsilonDpoLossFromHidden(single)
  t.equal(got.loss.item(), want.loss.item(), 'fp16 inputs are multiplied exactly as their fp32 copies')
  got.loss.backward()
  want.loss.backward()
  t.equal(half.policyHead.grad!.dtype, 'float16')
  const g = close(half.policyHead.grad!.to('float64').toArray() as Float64Array, single.policyHead.grad!.to('float64').toArray() as Float64Array, 1e-3, 1e-5)
  t.ok(g.ok, `policyHead gradient: ${describe(g)}`)
  t.end()
})
