// The baseline losses (lib/train/methods/losses/) against float64 references of their formulas
// written here in plain JS from the papers (docs/methods.md): the loss and the per-pair record
// from sums; the gradient w.r.t. the policy sums against fp64 central differences of the
// reference; and, end to end on the chunked path (ops.sequenceStatsFromHidden, no [R,T,V] logits)
// with fp32 and bf16 models, odd vocabularies and padding, against materialised fp64 logits.
import t from 'tap'

import { type DType, ops, Tensor } from '../lib/index'
import {
  BASELINE_RECORD_COLUMNS,
  type BaselineLoss,
  cpoLoss,
  ipoLoss,
  ktoLoss,
  orpoLoss,
  type PairSums,
  rDpoLoss,
  rrhfLoss,
  simpoLoss,
  slicHfLoss,
} from '../lib/train/methods/losses'
import { close, describe } from './helpers/assert'
import { rng } from './helpers/reference'

/** Plain host sums of 2B rows, chosen first, and the KL rows' (KTO). */
interface Host {
  S: number[]
  n: number[]
  R: number[]
  klP: number[]
  klR: number[]
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
const logSigmoid = (x: number) => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)))
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

interface Case {
  name: string
  reference: boolean
  run(s: PairSums, kl: { policy: Tensor; reference: Tensor }): BaselineLoss
  /** The per-pair losses of the formula (each with its share of the batch terms: their mean is the loss). */
  want(h: Host): number[]
}

function split(h: Host) {
  const B = h.S.length / 2
  const idx = Array.from({ length: B }, (_, i) => i)
  const avg = (k: number) => h.S[k]! / Math.max(1, h.n[k]!)
  const avgRef = (k: number) => h.R[k]! / Math.max(1, h.n[k]!)
  // The token mean NLL of the micro-batch's chosen completions.
  const nll = -sum(idx.map((i) => h.S[i]!)) / Math.max(1, sum(idx.map((i) => h.n[i]!)))
  return { B, idx, avg, avgRef, nll }
}

const cases: Case[] = [
  {
    name: 'ipo',
    reference: true,
    run: (s) => ipoLoss(s, { tau: 0.3 }),
    want(h) {
      const { B, idx, avg, avgRef } = split(h)
      return idx.map((i) => (avg(i) - avgRef(i) - (avg(B + i) - avgRef(B + i)) - 1 / (2 * 0.3)) ** 2)
    },
  },
  {
    name: 'simpo',
    reference: false,
    run: (s) => simpoLoss(s, { beta: 2, gamma: 1 }),
    want(h) {
      const { B, idx, avg } = split(h)
      return idx.map((i) => -logSigmoid(2 * avg(i) - 2 * avg(B + i) - 1))
    },
  },
  {
    name: 'cpo',
    reference: false,
    run: (s) => cpoLoss(s, { beta: 0.1, alpha: 0.7 }),
    want(h) {
      const { B, idx, nll } = split(h)
      return idx.map((i) => -logSigmoid(0.1 * (h.S[i]! - h.S[B + i]!)) + 0.7 * nll)
    },
  },
  {
    name: 'orpo',
    reference: false,
    run: (s) => orpoLoss(s, { lambda: 0.25 }),
    want(h) {
      const { B, idx, avg, nll } = split(h)
      // odds = p/(1−p), p = exp(mean log-prob)
      const logOdds = (k: number) => Math.log(Math.exp(avg(k)) / (1 - Math.exp(avg(k))))
      return idx.map((i) => nll - 0.25 * logSigmoid(logOdds(i) - logOdds(B + i)))
    },
  },
  {
    name: 'r-dpo',
    reference: true,
    run: (s) => rDpoLoss(s, { beta: 0.2, alpha: 0.05 }),
    want(h) {
      const { B, idx } = split(h)
      return idx.map((i) => -logSigmoid(0.2 * (h.S[i]! - h.R[i]!) - 0.2 * (h.S[B + i]! - h.R[B + i]!) + 0.05 * (h.n[i]! - h.n[B + i]!)))
    },
  },
  {
    name: 'slic-hf',
    reference: false,
    run: (s) => slicHfLoss(s, { beta: 0.5, lambda: 0.3 }),
    want(h) {
      const { B, idx, nll } = split(h)
      // δ = 1/β = 2, scaled by β
      return idx.map((i) => 0.5 * Math.max(0, 2 - (h.S[i]! - h.S[B + i]!)) + 0.3 * nll)
    },
  },
  {
    name: 'rrhf',
    reference: false,
    run: (s) => rrhfLoss(s, { lambda: 1 }),
    want(h) {
      const { B, idx, avg, nll } = split(h)
      return idx.map((i) => Math.max(0, avg(B + i) - avg(i)) + nll)
    },
  },
  {
    name: 'kto',
    reference: true,
    run: (s, kl) => ktoLoss(s, kl, { beta: 0.1, desirableWeight: 1.3, undesirableWeight: 0.8 }),
    want(h) {
      const { B, idx } = split(h)
      const z0 = Math.max(0, mean(h.klP.map((p, j) => p - h.klR[j]!)))
      // The mean over the 2B examples, written per pair.
      return idx.map((i) => (1.3 * (1 - sigmoid(0.1 * (h.S[i]! - h.R[i]! - z0))) + 0.8 * (1 - sigmoid(0.1 * (z0 - (h.S[B + i]! - h.R[B + i]!))))) / 2)
    },
  },
]

function tensors(h: Host, grad: boolean): { sums: PairSums; kl: { policy: Tensor; reference: Tensor }; leaf: Tensor } {
  const leaf = Tensor.from(Float64Array.from(h.S), [h.S.length], { requiresGrad: grad })
  return {
    leaf,
    sums: { policy: leaf, tokens: Tensor.from(Float64Array.from(h.n), [h.n.length]), reference: Tensor.from(Float64Array.from(h.R), [h.R.length]) },
    kl: { policy: Tensor.from(Float64Array.from(h.klP), [h.klP.length]), reference: Tensor.from(Float64Array.from(h.klR), [h.klR.length]) },
  }
}

/** d mean(want)/dS by fp64 central differences. */
function fdGradient(c: Case, h: Host): number[] {
  return h.S.map((_, k) => {
    const step = 1e-6 * Math.max(1, Math.abs(h.S[k]!))
    const at = (d: number) => mean(c.want({ ...h, S: h.S.map((v, j) => (j === k ? v + d : v)) }))
    return (at(step) - at(-step)) / (2 * step)
  })
}

function randomHost(seed: number, B: number): Host {
  const r = rng(seed)
  const n = Array.from({ length: 2 * B }, () => 1 + Math.floor(r() * 9))
  // Mean log-probs in (−3, −0.05): well inside ORPO's odds; sums scale with the tokens.
  const S = n.map((k) => -k * (0.05 + 3 * r()))
  return { S, n, R: S.map((v) => v + (2 * r() - 1)), klP: [-4 - r(), -3 - r(), -6 * r()], klR: [-5 + r(), -4, -3 * r()] }
}

for (const c of cases) {
  t.test(`${c.name}: loss, record and gradient against the formula`, (t) => {
    for (const seed of [1, 2, 3]) {
      const h = randomHost(seed, seed === 3 ? 1 : 4)
      const perPair = c.want(h)
      const { sums, kl, leaf } = tensors(h, true)
      const out = c.run(sums, kl)
      const got = out.loss.item()
      t.ok(Math.abs(got - mean(perPair)) <= 1e-12 * Math.max(1, Math.abs(mean(perPair))), `seed ${seed}: loss ${got} vs ${mean(perPair)}`)
      t.same(out.record.shape, [perPair.length, BASELINE_RECORD_COLUMNS.length])
      const rec = out.record.toArray() as Float64Array
      const k = BASELINE_RECORD_COLUMNS.length
      const col = (name: (typeof BASELINE_RECORD_COLUMNS)[number]) => perPair.map((_, i) => rec[i * k + BASELINE_RECORD_COLUMNS.indexOf(name)]!)
      const cmp = close(col('loss'), perPair, 1e-12, 1e-12)
      t.ok(cmp.ok, `seed ${seed}: per-pair loss: ${describe(cmp)}`)
      t.same(col('chosenTokens'), h.n.slice(0, perPair.length))
      out.loss.backward()
      const g = leaf.grad!.toArray() as Float64Array
      const want = fdGradient(c, h)
      const gmax = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
      const gc = close(g, want, 1e-6, 1e-7 * Math.max(1, gmax))
      t.ok(gc.ok, `seed ${seed}: gradient: ${describe(gc)}`)
    }
    t.end()
  })
}

t.test('the shared terms: the NLL is the token mean over the chosen completions, KTO’s KL is clamped at 0 and has no gradient', (t) => {
  const h = randomHost(7, 3)
  const { sums } = tensors(h, false)
  const cpo = cpoLoss(sums, { beta: 0.1, alpha: 1 })
  const k = BASELINE_RECORD_COLUMNS.length
  const nll = (cpo.record.toArray() as Float64Array)[BASELINE_RECORD_COLUMNS.indexOf('nll')]!
  t.ok(Math.abs(nll - -(h.S[0]! + h.S[1]! + h.S[2]!) / (h.n[0]! + h.n[1]! + h.n[2]!)) < 1e-12, 'nll')
  // A KL estimate below 0 counts as 0: the loss equals the one with z0 = 0 exactly.
  const negative = { policy: Tensor.from(Float64Array.from([-5, -6]), [2]), reference: Tensor.from(Float64Array.from([-1, -2]), [2]) }
  const zero = { policy: Tensor.from(Float64Array.from([-1]), [1]), reference: Tensor.from(Float64Array.from([-1]), [1]) }
  const o = { beta: 0.1, desirableWeight: 1, undesirableWeight: 1 }
  const a = ktoLoss(sums, negative, o)
  t.equal(a.loss.item(), ktoLoss(sums, zero, o).loss.item())
  t.equal((a.record.toArray() as Float64Array)[BASELINE_RECORD_COLUMNS.indexOf('kl')], 0)
  // The KL rows never receive a gradient, even when given as leaves with requiresGrad.
  const klLeaf = Tensor.from(Float64Array.from([-1, -2]), [2], { requiresGrad: true })
  const policy = Tensor.from(Float64Array.from(h.S), [h.S.length], { requiresGrad: true })
  ktoLoss({ ...sums, policy }, { policy: klLeaf, reference: Tensor.from(Float64Array.from([-3, -3]), [2]) }, o).loss.backward()
  t.equal(klLeaf.grad, undefined)
  t.ok(k > 0)
  t.end()
})

t.test('zero-token rows average to 0 and ORPO stays finite where the model is certain', (t) => {
  const h: Host = { S: [0, -2, 0, -3], n: [0, 4, 0, 5], R: [0, -1, 0, -2], klP: [-1], klR: [-1] }
  const { sums } = tensors(h, false)
  for (const c of cases) t.ok(Number.isFinite(c.run(sums, tensors(h, false).kl).loss.item()), `${c.name}: finite`)
  // Mean log-prob 0 (p = 1): the odds are capped, the loss and its gradient finite.
  const certain: Host = { S: [0, -2], n: [3, 4], R: [0, 0], klP: [0], klR: [0] }
  const x = tensors(certain, true)
  const out = orpoLoss(x.sums, { lambda: 0.1 })
  out.loss.backward()
  t.ok(Number.isFinite(out.loss.item()))
  t.ok(Array.from(x.leaf.grad!.toArray() as Float64Array).every(Number.isFinite))
  t.end()
})

t.test('bad inputs name the method and the argument', (t) => {
  const h = randomHost(5, 2)
  const { sums, kl } = tensors(h, false)
  t.throws(() => ipoLoss({ ...sums, reference: undefined }, { tau: 0.1 }), /ipo: needs the reference's sums/)
  t.throws(() => simpoLoss({ ...sums, policy: Tensor.zeros([3], { dtype: 'float64' }) }, { beta: 2, gamma: 1 }), /simpo: policy sums must be one \[2B\] vector/)
  t.throws(() => cpoLoss({ ...sums, tokens: Tensor.zeros([2]) }, { beta: 0.1, alpha: 1 }), /cpo: tokens must have shape \[4\]/)
  t.throws(() => simpoLoss(sums, { beta: 0, gamma: 1 }), /simpo: beta must be a finite number > 0; got 0/)
  t.throws(() => rrhfLoss(sums, { lambda: -1 }), /rrhf: lambda must be a finite number >= 0/)
  t.throws(() => slicHfLoss(sums, { beta: Number.NaN, lambda: 1 }), /slic-hf: beta/)
  t.throws(
    () => ktoLoss(sums, { policy: kl.policy, reference: Tensor.zeros([2], { dtype: 'float64' }) }, { beta: 0.1, desirableWeight: 1, undesirableWeight: 1 }),
    /kto: the KL rows/,
  )
  t.end()
})

// ---- End to end on the chunked per-sequence op, against materialised fp64 logits ----

interface Model {
  pairs: number
  T: number
  H: number
  V: number
  dtype: DType
  seed: number
}

function randomTensor(r: () => number, shape: number[], scale: number, dtype: DType, requiresGrad = false): Tensor {
  const data = Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (2 * r() - 1) * scale)
  return Tensor.from(data, shape, { dtype, requiresGrad })
}

function buildModel(m: Model) {
  const R = 2 * m.pairs
  const r = rng(m.seed)
  const labels = new BigInt64Array(R * m.T)
  const mask = new Float32Array(R * m.T)
  for (let row = 0; row < R; row++) {
    // A prompt prefix, the completion, then right padding: both ends masked.
    const start = 1 + Math.floor(r() * 2)
    const end = m.T - Math.floor(r() * 2)
    for (let k = 0; k < m.T; k++) {
      const on = k >= start && k < end
      mask[row * m.T + k] = on ? 1 : 0
      labels[row * m.T + k] = on ? BigInt(Math.floor(r() * m.V)) : -100n
    }
  }
  return {
    policyHidden: randomTensor(r, [R, m.T, m.H], 1, m.dtype, true),
    policyHead: randomTensor(r, [m.V, m.H], 0.5, m.dtype, true),
    referenceHidden: randomTensor(r, [R, m.T, m.H], 1, m.dtype),
    referenceHead: randomTensor(r, [m.V, m.H], 0.5, m.dtype),
    labels: Tensor.from(labels, [R, m.T]),
    lossMask: Tensor.from(mask, [R, m.T]),
  }
}

const models: Model[] = [
  { pairs: 3, T: 6, H: 8, V: 7, dtype: 'float32', seed: 11 },
  { pairs: 2, T: 7, H: 16, V: 301, dtype: 'float32', seed: 12 },
  { pairs: 2, T: 5, H: 16, V: 503, dtype: 'bfloat16', seed: 13 },
]

for (const m of models) {
  t.test(`chunked path, ${m.pairs} pairs T=${m.T} V=${m.V} ${m.dtype}: loss and gradients against materialised fp64 logits`, (t) => {
    const x = buildModel(m)
    // The reference: fp64 logits of the (rounded) inputs, per-row sums with autograd.
    const leaf = (v: Tensor, grad: boolean) => Tensor.from(v.to('float64').toArray() as Float64Array, v.shape, { requiresGrad: grad })
    const h = leaf(x.policyHidden, true)
    const w = leaf(x.policyHead, true)
    const mask = x.lossMask.to('float64')
    const labels = x.labels.where(x.lossMask.gt(0), Tensor.zeros(x.labels.shape, { dtype: 'int64' }))
    const rowSums = (hid: Tensor, head: Tensor) => hid.matmul(head.transpose(0, 1)).logSoftmax(-1).gather(2, labels.unsqueeze(-1)).squeeze(-1).mul(mask).sum(1)
    const S64 = rowSums(h, w)
    const R64 = rowSums(leaf(x.referenceHidden, false), leaf(x.referenceHead, false))
    const host: Host = {
      S: Array.from(S64.toArray() as Float64Array),
      n: Array.from(mask.sum(1).toArray() as Float64Array),
      R: Array.from(R64.toArray() as Float64Array),
      klP: [-7.5, -9],
      klR: [-8, -8.75],
    }
    // bf16 products are rounded before the fp32 accumulation (test/sequence-stats.test.ts).
    const tol = m.dtype === 'float32' ? 2e-5 : 2e-2
    for (const c of cases) {
      // dL/dθ = Σ_r (dL/dS_r)·(dS_r/dθ): the formula's fp64 differences through the fp64 sums.
      const g = fdGradient(c, host)
      for (const l of [h, w]) l.zeroGrad()
      // A fresh graph per case (a backward frees the saved tensors).
      rowSums(h, w)
        .mul(Tensor.from(Float64Array.from(g), [g.length]))
        .sum()
        .backward()
      const wantGrads = [h, w].map((l) => l.grad!.toArray() as Float64Array)
      const wantLoss = mean(c.want(host))
      for (const chunkTokens of [1, 4, undefined]) {
        for (const l of [x.policyHidden, x.policyHead]) l.zeroGrad()
        const stats = ops.sequenceStatsFromHidden({
          policyHidden: x.policyHidden,
          policyHead: x.policyHead,
          ...(c.reference ? { referenceHidden: x.referenceHidden, referenceHead: x.referenceHead } : {}),
          labels: x.labels,
          lossMask: x.lossMask,
          chunkTokens,
        })
        t.equal(stats.referenceLogps === undefined, !c.reference, `${c.name}: a reference only where the method has one`)
        const kl = { policy: Tensor.from(Float64Array.from(host.klP), [2]), reference: Tensor.from(Float64Array.from(host.klR), [2]) }
        const out = c.run({ policy: stats.logps, tokens: stats.tokenCount, reference: stats.referenceLogps }, kl)
        const got = out.loss.item()
        t.ok(Math.abs(got - wantLoss) <= tol * Math.max(1, Math.abs(wantLoss)), `${c.name} chunk ${chunkTokens}: loss ${got} vs ${wantLoss}`)
        out.loss.backward()
        ;[x.policyHidden, x.policyHead].forEach((l, i) => {
          const want = wantGrads[i]!
          const maxAbs = want.reduce((a, v) => Math.max(a, Math.abs(v)), 0)
          const cmp = close(l.grad!.to('float64').toArray() as Float64Array, want, tol, tol * maxAbs)
          t.ok(cmp.ok, `${c.name} chunk ${chunkTokens}: gradient ${i === 0 ? 'hidden' : 'head'}: ${describe(cmp)}`)
        })
      }
    }
    t.end()
  })
}
