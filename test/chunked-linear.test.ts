// ops.epsilonDpoLossFromHidden against the materialised path (logits = h·Wᵀ + b, then
// ops.epsilonDpoLoss) for several chunk sizes, including chunks that split sequences; gradients
// w.r.t. hidden states, head and bias; Gemma-2 soft-capping; bad input.
import t from 'tap'

import { type DType, EdpoInputError, ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { rng } from './helpers/reference'

interface Setup {
  B: number
  T: number
  H: number
  V: number
  seed: number
  dtype: DType
  bias: boolean
  softcap?: number
}

function randomTensor(r: () => number, shape: number[], scale: number, dtype: DType, requiresGrad = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const data = new Float64Array(n)
  for (let i = 0; i < n; i++) data[i] = (2 * r() - 1) * scale
  return Tensor.from(data, shape, { dtype, requiresGrad })
}

function build(s: Setup) {
  const r = rng(s.seed)
  const rows = 2 * s.B
  const labels = new BigInt64Array(rows * s.T)
  const mask = new Float32Array(rows * s.T)
  for (let row = 0; row < rows; row++) {
    const start = Math.floor(r() * s.T)
    for (let k = 0; k < s.T; k++) {
      const on = k >= start && row !== 1 // row 1 has no completion tokens at all
      mask[row * s.T + k] = on ? 1 : 0
      labels[row * s.T + k] = on ? BigInt(Math.floor(r() * s.V)) : -100n
    }
  }
  return {
    policyHidden: randomTensor(r, [rows, s.T, s.H], 1, s.dtype, true),
    policyHead: randomTensor(r, [s.V, s.H], 0.5, s.dtype, true),
    policyBias: s.bias ? randomTensor(r, [s.V], 0.5, s.dtype, true) : undefined,
    referenceHidden: randomTensor(r, [rows, s.T, s.H], 1, s.dtype),
    referenceHead: randomTensor(r, [s.V, s.H], 0.5, s.dtype),
    referenceBias: s.bias ? randomTensor(r, [s.V], 0.5, s.dtype) : undefined,
    labels: Tensor.from(labels, [rows, s.T]),
    lossMask: Tensor.from(mask, [rows, s.T]),
  }
}

type Inputs = ReturnType<typeof build>

function logits(hidden: Tensor, head: Tensor, bias: Tensor | undefined, softcap?: number): Tensor {
  let z = hidden.matmul(head.transpose(0, 1))
  if (bias) z = z.add(bias)
  return softcap ? z.div(softcap).tanh().mul(softcap) : z
}

function grads(x: Inputs): Float64Array[] {
  const out = [x.policyHidden.grad!, x.policyHead.grad!, ...(x.policyBias ? [x.policyBias.grad!] : [])]
  return out.map((g) => g.to('float64').toArray() as Float64Array)
}

function zeroGrads(x: Inputs) {
  x.policyHidden.zeroGrad()
  x.policyHead.zeroGrad()
  x.policyBias?.zeroGrad()
}

/** Pairs whose step margins (ρ± − ρ) are within the tolerance of the sums they are made of. */
function nearTies(x: Inputs, s: Setup, epsilon: number, tol: number): boolean[] {
  const seq = ops.sequenceLogps({
    policyLogits: logits(x.policyHidden, x.policyHead, x.policyBias, s.softcap).detach(),
    referenceLogits: logits(x.referenceHidden, x.referenceHead, x.referenceBias, s.softcap).detach(),
    labels: x.labels,
    lossMask: x.lossMask,
    epsilon,
  })
  const [S, plus, minus] = [seq.policy, seq.plus, seq.minus].map((v) => v.to('float64').toArray() as Float64Array) as [Float64Array, Float64Array, Float64Array]
  return Array.from({ length: s.B }, (_, i) => {
    const rho = (v: Float64Array) => v[i]! - v[s.B + i]!
    const bound = tol * [S, plus, minus].reduce((a, v) => a + Math.abs(v[i]!) + Math.abs(v[s.B + i]!) + 2, 0)
    return Math.abs(rho(plus) - rho(S)) < bound || Math.abs(rho(S) - rho(minus)) < bound
  })
}

const setups: Setup[] = [
  { B: 2, T: 5, H: 8, V: 7, seed: 1, dtype: 'float64', bias: false },
  { B: 3, T: 6, H: 16, V: 301, seed: 2, dtype: 'float64', bias: true, softcap: 3 },
  { B: 2, T: 9, H: 32, V: 1000, seed: 3, dtype: 'float32', bias: true },
  { B: 1, T: 7, H: 24, V: 5003, seed: 4, dtype: 'float32', bias: false, softcap: 30 },
]

for (const s of setups) {
  t.test(`B=${s.B} T=${s.T} H=${s.H} V=${s.V} ${s.dtype}${s.bias ? ' +bias' : ''}${s.softcap ? ` softcap=${s.softcap}` : ''}`, (t) => {
    const x = build(s)
    const beta = 0.5
    const epsilon = 0.05
    const materialised = ops.epsilonDpoLoss({
      policyLogits: logits(x.policyHidden, x.policyHead, x.policyBias, s.softcap),
      referenceLogits: logits(x.referenceHidden, x.referenceHead, x.referenceBias, s.softcap).detach(),
      labels: x.labels,
      lossMask: x.lossMask,
      beta,
      epsilon,
    })
    materialised.loss.backward()
    const want = grads(x)
    const tol = s.dtype === 'float64' ? 1e-10 : 1e-5
    const nearTie = nearTies(x, s, epsilon, tol)
    t.ok(
      nearTie.some((tie) => !tie),
      'some pairs are clear of ties',
    )
    // 1 and 3 split sequences across chunks; 1000 holds everything in one chunk; undefined = default.
    for (const chunkTokens of [1, 3, 1000, undefined]) {
      zeroGrads(x)
      const chunked = ops.epsilonDpoLossFromHidden({ ...x, beta, epsilon, finalLogitSoftcap: s.softcap, chunkTokens })
      for (const key of [
        'loss',
        'betas',
        'chosenLogps',
        'rejectedLogps',
        'refChosenLogps',
        'refRejectedLogps',
        'chosenRewards',
        'rejectedRewards',
        'meanChosenLogits',
        'meanRejectedLogits',
      ] as const) {
        const cmp = close(chunked[key].to('float64').toArray() as Float64Array, materialised[key].to('float64').toArray() as Float64Array, tol, tol)
        t.ok(cmp.ok, `chunk ${chunkTokens}: ${key}: ${describe(cmp)}`)
      }
      const chunkedSteps = chunked.steps.toArray() as BigInt64Array
      const materialisedSteps = materialised.steps.toArray() as BigInt64Array
      for (let i = 0; i < s.B; i++) {
        // Logits from chunked and whole matmuls differ in rounding, so a near-tie may go either way.
        if (!nearTie[i]) t.equal(chunkedSteps[i], materialisedSteps[i], `chunk ${chunkTokens}: step of pair ${i}`)
      }
      chunked.loss.backward()
      const got = grads(x)
      got.forEach((g, i) => {
        const cmp = close(g, want[i]!, s.dtype === 'float64' ? 1e-9 : 1e-4, s.dtype === 'float64' ? 1e-12 : 1e-7)
        t.ok(cmp.ok, `chunk ${chunkTokens}: gradient ${['hidden', 'head', 'bias'][i]}: ${describe(cmp)}`)
      })
    }
    t.end()
  })
}

t.test('bf16 hidden states and heads match the materialised bf16 path', (t) => {
  const x = build({ B: 2, T: 6, H: 32, V: 500, seed: 9, dtype: 'bfloat16', bias: false })
  const materialised = ops.epsilonDpoLoss({
    policyLogits: logits(x.policyHidden, x.policyHead, undefined),
    referenceLogits: logits(x.referenceHidden, x.referenceHead, undefined).detach(),
    labels: x.labels,
    lossMask: x.lossMask,
    beta: 0.1,
    epsilon: 0.01,
  })
  const chunked = ops.epsilonDpoLossFromHidden({ ...x, beta: 0.1, epsilon: 0.01, chunkTokens: 4 })
  // Same bf16 matmuls, same fp32 reductions: the per-sequence sums agree to fp32 accuracy.
  const cmp = close(chunked.chosenLogps.toArray() as Float32Array, materialised.chosenLogps.toArray() as Float32Array, 1e-4, 1e-4)
  t.ok(cmp.ok, describe(cmp))
  chunked.loss.backward()
  t.equal(x.policyHead.grad!.dtype, 'bfloat16')
  t.ok(Array.from(x.policyHead.grad!.isfinite().toArray() as Uint8Array).every((v) => v === 1))
  t.end()
})

t.test('a frozen head gets no gradient; the hidden states still do', (t) => {
  const x = build({ B: 1, T: 4, H: 8, V: 50, seed: 5, dtype: 'float32', bias: false })
  x.policyHead.requiresGrad = false
  ops.epsilonDpoLossFromHidden({ ...x, beta: 0.1, epsilon: 0.01 }).loss.backward()
  t.equal(x.policyHead.grad, undefined)
  t.ok(x.policyHidden.grad)
  t.end()
})

t.test('bad input names the argument', (t) => {
  const x = build({ B: 1, T: 4, H: 8, V: 50, seed: 6, dtype: 'float32', bias: false })
  const args = { ...x, beta: 0.1, epsilon: 0.01 }
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, policyHead: Tensor.zeros([50, 9]) }), /policyHead: expected shape \[V, 8\]/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, referenceHead: Tensor.zeros([51, 8]) }), /referenceHead: vocabulary 51 does not match policyHead 50/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, policyHead: Tensor.zeros([50, 8], { dtype: 'float64' }) }), /policyHead: dtype/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, policyBias: Tensor.zeros([49]) }), /policyBias: expected shape \[50\]/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, referenceHidden: Tensor.zeros([2, 5, 8]) }), /referenceHidden: shape/)
  t.throws(
    () => ops.epsilonDpoLossFromHidden({ ...args, labels: Tensor.full([2, 4], 50, { dtype: 'int64' }) }),
    /labels: values at unmasked positions must lie in \[0, 50\)/,
  )
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, chunkTokens: 0 }), /chunkTokens: must be >= 1, got 0/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, chunkTokens: 1.5 }), /chunkTokens: expected an integer, got 1.5/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, finalLogitSoftcap: -1 }), /finalLogitSoftcap: must be 0 \(off\) or a number in/)
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, policyHidden: Tensor.zeros([2, 4]) }), EdpoInputError)
  t.end()
})
