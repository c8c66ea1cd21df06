// ops.sequenceStatsFromHidden (SFT and evaluation without [R,T,V] logits) against eager fp64
// references on materialised logits: per-sequence log-probs, argmax hits, token counts, the
// reference's log-probs, the exact token KL, and the gradients of the log-probs.
import t from 'tap'

import { type DType, ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { rng } from './helpers/reference'

interface Setup {
  R: number
  T: number
  H: number
  V: number
  seed: number
  dtype: DType
  bias?: boolean
  softcap?: number
}

function randomTensor(r: () => number, shape: number[], scale: number, dtype: DType, requiresGrad = false): Tensor {
  const data = Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (2 * r() - 1) * scale)
  return Tensor.from(data, shape, { dtype, requiresGrad })
}

function build(s: Setup) {
  const r = rng(s.seed)
  const labels = new BigInt64Array(s.R * s.T)
  const mask = new Float32Array(s.R * s.T)
  for (let row = 0; row < s.R; row++) {
    const start = Math.floor(r() * s.T)
    for (let k = 0; k < s.T; k++) {
      const on = k >= start && row !== 1 // row 1 has no completion tokens
      mask[row * s.T + k] = on ? 1 : 0
      labels[row * s.T + k] = on ? BigInt(Math.floor(r() * s.V)) : -100n
    }
  }
  return {
    policyHidden: randomTensor(r, [s.R, s.T, s.H], 1, s.dtype, true),
    policyHead: randomTensor(r, [s.V, s.H], 0.5, s.dtype, true),
    policyBias: s.bias ? randomTensor(r, [s.V], 0.5, s.dtype, true) : undefined,
    referenceHidden: randomTensor(r, [s.R, s.T, s.H], 1, s.dtype),
    referenceHead: randomTensor(r, [s.V, s.H], 0.5, s.dtype),
    referenceBias: s.bias ? randomTensor(r, [s.V], 0.5, s.dtype) : undefined,
    labels: Tensor.from(labels, [s.R, s.T]),
    lossMask: Tensor.from(mask, [s.R, s.T]),
  }
}

/** fp64 logits of the (rounded) inputs, soft-capped as the op does. */
function logits64(hidden: Tensor, head: Tensor, bias: Tensor | undefined, softcap?: number, grad = false): { z: Tensor; leaves: Tensor[] } {
  const leaf = (x: Tensor) => Tensor.from(x.to('float64').toArray() as Float64Array, x.shape, { requiresGrad: grad })
  const h = leaf(hidden)
  const w = leaf(head)
  const b = bias ? leaf(bias) : undefined
  let z = h.matmul(w.transpose(0, 1))
  if (b) z = z.add(b)
  if (softcap) z = z.div(softcap).tanh().mul(softcap)
  return { z, leaves: b ? [h, w, b] : [h, w] }
}

function f64(x: Tensor): Float64Array {
  return x.to('float64').toArray() as Float64Array
}

const setups: Setup[] = [
  { R: 3, T: 5, H: 8, V: 7, seed: 1, dtype: 'float64' },
  { R: 4, T: 6, H: 16, V: 301, seed: 2, dtype: 'float64', bias: true, softcap: 3 },
  { R: 2, T: 9, H: 32, V: 1000, seed: 3, dtype: 'float32', bias: true },
  { R: 2, T: 4, H: 16, V: 50257, seed: 4, dtype: 'float32' },
  { R: 2, T: 5, H: 16, V: 503, seed: 5, dtype: 'bfloat16', softcap: 30 },
  { R: 2, T: 5, H: 16, V: 503, seed: 6, dtype: 'float16' },
]

for (const s of setups) {
  t.test(`R=${s.R} T=${s.T} H=${s.H} V=${s.V} ${s.dtype}${s.bias ? ' +bias' : ''}${s.softcap ? ` softcap=${s.softcap}` : ''}`, (t) => {
    const x = build(s)
    const mask = x.lossMask.to('float64')
    const labels = x.labels.where(x.lossMask.gt(0), Tensor.zeros(x.labels.shape, { dtype: 'int64' }))
    const p = logits64(x.policyHidden, x.policyHead, x.policyBias, s.softcap, true)
    const q = logits64(x.referenceHidden, x.referenceHead, x.referenceBias, s.softcap)
    const logP = p.z.logSoftmax(-1)
    const logQ = q.z.logSoftmax(-1)
    const gather = (lp: Tensor) => lp.gather(2, labels.unsqueeze(-1)).squeeze(-1).mul(mask)
    const S = gather(logP).sum(1)
    const want = {
      logps: f64(S),
      referenceLogps: f64(gather(logQ).sum(1)),
      kl: f64(logP.exp().mul(logP.sub(logQ)).sum(-1).mul(mask).sum(1)),
      correct: f64(p.z.argmax(-1).eq(labels).to('float64').mul(mask).sum(1)),
      tokenCount: f64(mask.sum(1)),
    }
    S.sum().backward()
    const wantGrads = p.leaves.map((l) => l.grad!.toArray() as Float64Array)
    // fp64: reduction order only. fp32/bf16/fp16 inputs: the products are rounded to the input
    // dtype (bf16: 8 bits) before the fp32 accumulation, unlike the fp64 reference.
    const tol = s.dtype === 'float64' ? 1e-10 : s.dtype === 'float32' ? 2e-5 : s.dtype === 'float16' ? 2e-3 : 2e-2

    for (const chunkTokens of [1, 3, undefined]) {
      for (const l of [x.policyHidden, x.policyHead, x.policyBias]) l?.zeroGrad()
      const got = ops.sequenceStatsFromHidden({ ...x, finalLogitSoftcap: s.softcap, chunkTokens })
      for (const key of ['logps', 'referenceLogps', 'kl', 'tokenCount'] as const) {
        const cmp = close(f64(got[key]!), want[key], tol, tol)
        t.ok(cmp.ok, `chunk ${chunkTokens}: ${key}: ${describe(cmp)}`)
      }
      // Argmax hits may differ only where the fp64 top-2 logits are within rounding: none at these sizes.
      if (s.dtype === 'float64' || s.dtype === 'float32') t.same(Array.from(f64(got.correct)), Array.from(want.correct), `chunk ${chunkTokens}: correct`)
      got.logps.sum().backward()
      const grads = [x.policyHidden, x.policyHead, ...(x.policyBias ? [x.policyBias] : [])].map((l) => f64(l.grad!))
      grads.forEach((g, i) => {
        const maxAbs = wantGrads[i]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
        const cmp = close(g, wantGrads[i]!, tol, tol * maxAbs)
        t.ok(cmp.ok, `chunk ${chunkTokens}: gradient ${i}: ${describe(cmp)}`)
      })
    }
    t.end()
  })
}

t.test('without a reference: policy statistics only, equal to the run with one', (t) => {
  const x = build({ R: 3, T: 4, H: 8, V: 31, seed: 9, dtype: 'float32' })
  const alone = ops.sequenceStatsFromHidden({ policyHidden: x.policyHidden, policyHead: x.policyHead, labels: x.labels, lossMask: x.lossMask })
  const withRef = ops.sequenceStatsFromHidden(x)
  t.equal(alone.referenceLogps, undefined)
  t.equal(alone.kl, undefined)
  t.same(Array.from(f64(alone.logps)), Array.from(f64(withRef.logps)))
  t.same(Array.from(f64(alone.tokenCount)), Array.from(f64(withRef.tokenCount)))
  t.same(Array.from(f64(alone.correct)), Array.from(f64(withRef.correct)))
  t.end()
})

t.test('the async form matches the sync one', async (t) => {
  const x = build({ R: 2, T: 3, H: 8, V: 17, seed: 10, dtype: 'float32' })
  const a = ops.sequenceStatsFromHidden(x)
  const b = await ops.sequenceStatsFromHiddenAsync(x)
  t.same(Array.from(f64(b.logps)), Array.from(f64(a.logps)))
  t.same(Array.from(f64(b.kl!)), Array.from(f64(a.kl!)))
})

t.test('bad inputs name the argument', (t) => {
  const x = build({ R: 2, T: 3, H: 8, V: 17, seed: 11, dtype: 'float32' })
  t.throws(() => ops.sequenceStatsFromHidden({ ...x, referenceHead: undefined }), /referenceHidden\/referenceHead: give both or neither/)
  t.throws(() => ops.sequenceStatsFromHidden({ ...x, referenceHead: Tensor.zeros([18, 8]) }), /referenceHead: vocabulary 18 does not match policyHead 17/)
  t.throws(
    () => ops.sequenceStatsFromHidden({ ...x, labels: Tensor.full([2, 3], 17, { dtype: 'int64' }), lossMask: Tensor.full([2, 3], 1) }),
    /labels: values at unmasked positions must lie in \[0, 17\)/,
  )
  t.throws(() => ops.sequenceStatsFromHidden({ ...x, policyHead: Tensor.zeros([17, 9]) }), /policyHead: expected shape \[V, 8\]/)
  t.throws(() => ops.sequenceStatsFromHidden({ ...x, chunkTokens: 0 }), /chunkTokens/)
  t.throws(() => ops.sequenceStatsFromHidden({ ...x, finalLogitSoftcap: 1e39 }), /finalLogitSoftcap/)
  t.end()
})
