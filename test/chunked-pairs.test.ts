// ops.epsilonDpoLossFromHidden makes its gradient in the forward, over chunks of whole pairs
// (the chunk plan of csrc/ops/chunked_linear.cc). Pairs longer than a chunk take one of two exact
// routes: a unit-scale accumulator (the chunk's logits can hold it) or a recompute once the pair
// ends (they cannot). Both, against the materialised op in float64 and fp64 finite differences,
// with prompts, right padding, an empty completion, odd vocabularies, bias, soft-capping, label
// smoothing and the bf16 criterion; the upstream gradient scales the result; a host-side activeRows.
import t from 'tap'

import { ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { rng } from './helpers/reference'

interface Case {
  B: number
  T: number
  H: number
  V: number
  seed: number
  bias?: boolean
  softcap?: number
  labelSmoothing?: number
  bf16Criterion?: boolean
  epsilon?: number
}

interface Raw {
  c: Case
  ph: Float64Array
  pw: Float64Array
  pb?: Float64Array
  rh: Float64Array
  rw: Float64Array
  rb?: Float64Array
  labels: BigInt64Array
  mask: Float64Array
}

function draw(r: () => number, n: number, scale: number): Float64Array {
  return Float64Array.from({ length: n }, () => (2 * r() - 1) * scale)
}

/** Each row: a prompt (mask 0), a completion, then right padding (mask 0); row 1 has no completion. */
function raw(c: Case): Raw {
  const r = rng(c.seed)
  const rows = 2 * c.B
  const labels = new BigInt64Array(rows * c.T).fill(-100n)
  const mask = new Float64Array(rows * c.T)
  for (let row = 0; row < rows; row++) {
    const prompt = 1 + Math.floor(r() * 2)
    const completion = row === 1 ? 0 : 1 + Math.floor(r() * (c.T - prompt - 1))
    for (let k = prompt; k < prompt + completion; k++) {
      mask[row * c.T + k] = 1
      labels[row * c.T + k] = BigInt(Math.floor(r() * c.V))
    }
  }
  return {
    c,
    ph: draw(r, rows * c.T * c.H, 1),
    pw: draw(r, c.V * c.H, 0.7),
    pb: c.bias ? draw(r, c.V, 0.5) : undefined,
    rh: draw(r, rows * c.T * c.H, 1),
    rw: draw(r, c.V * c.H, 0.7),
    rb: c.bias ? draw(r, c.V, 0.5) : undefined,
    labels,
    mask,
  }
}

function tensors(x: Raw) {
  const { B, T, H, V } = x.c
  const f = (d: Float64Array, shape: number[], requiresGrad = false) => Tensor.from(d, shape, { dtype: 'float64', requiresGrad })
  return {
    policyHidden: f(x.ph, [2 * B, T, H], true),
    policyHead: f(x.pw, [V, H], true),
    policyBias: x.pb ? f(x.pb, [V], true) : undefined,
    referenceHidden: f(x.rh, [2 * B, T, H]),
    referenceHead: f(x.rw, [V, H]),
    referenceBias: x.rb ? f(x.rb, [V]) : undefined,
    labels: Tensor.from(x.labels, [2 * B, T]),
    lossMask: Tensor.from(x.mask, [2 * B, T]),
  }
}

type Inputs = ReturnType<typeof tensors>

function options(c: Case) {
  return { beta: 0.5, epsilon: c.epsilon ?? 0.05, finalLogitSoftcap: c.softcap, labelSmoothing: c.labelSmoothing, bf16Criterion: c.bf16Criterion }
}

function logits(hidden: Tensor, head: Tensor, bias: Tensor | undefined, softcap?: number): Tensor {
  let z = hidden.matmul(head.transpose(0, 1))
  if (bias) z = z.add(bias)
  return softcap ? z.div(softcap).tanh().mul(softcap) : z
}

function materialised(x: Inputs, c: Case) {
  return ops.epsilonDpoLoss({
    policyLogits: logits(x.policyHidden, x.policyHead, x.policyBias, c.softcap),
    referenceLogits: logits(x.referenceHidden, x.referenceHead, x.referenceBias, c.softcap).detach(),
    labels: x.labels,
    lossMask: x.lossMask,
    beta: 0.5,
    epsilon: c.epsilon ?? 0.05,
    labelSmoothing: c.labelSmoothing,
    bf16Criterion: c.bf16Criterion,
  })
}

function gradients(x: Inputs): Float64Array[] {
  return [x.policyHidden.grad!, x.policyHead.grad!, ...(x.policyBias ? [x.policyBias.grad!] : [])].map((g) => g.toArray() as Float64Array)
}

const names = ['hidden', 'head', 'bias']
const keys = [
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
] as const

// chunk rows vs held = H/2 rows (an fp64 accumulator of ∂W's shape, in rows of both models' fp64
// logits): chunk ≥ held takes the accumulator, chunk < held recomputes; 1000 is one chunk.
const cases: Array<{ c: Case; chunks: number[] }> = [
  { c: { B: 3, T: 8, H: 4, V: 7, seed: 11 }, chunks: [2, 3, 5, 1000] },
  { c: { B: 3, T: 8, H: 12, V: 7, seed: 12, bias: true }, chunks: [1, 3, 5, 1000] },
  { c: { B: 2, T: 7, H: 4, V: 50257, seed: 13, labelSmoothing: 0.2 }, chunks: [2, 4, 1000] },
  { c: { B: 2, T: 7, H: 10, V: 50257, seed: 14, bias: true, softcap: 2 }, chunks: [3, 1000] },
  { c: { B: 3, T: 9, H: 2, V: 301, seed: 15, bf16Criterion: true, labelSmoothing: 0.1, epsilon: 0.5 }, chunks: [1, 4, 1000] },
]

for (const { c, chunks } of cases) {
  t.test(
    `B=${c.B} T=${c.T} H=${c.H} V=${c.V}${c.bias ? ' +bias' : ''}${c.softcap ? ` softcap ${c.softcap}` : ''}${c.labelSmoothing ? ` ℓ=${c.labelSmoothing}` : ''}${c.bf16Criterion ? ' bf16 criterion' : ''}`,
    (t) => {
      const x = tensors(raw(c))
      const want = materialised(x, c)
      want.loss.backward()
      const wantGrads = gradients(x)
      const wantSteps = want.steps.toArray() as BigInt64Array
      t.ok(
        Array.from(wantSteps).some((s) => s !== 0n),
        'some pairs take a step (the criterion is exercised)',
      )
      for (const chunkTokens of chunks) {
        for (const g of [x.policyHidden, x.policyHead, x.policyBias]) g?.zeroGrad()
        const got = ops.epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens })
        for (const key of keys) {
          const cmp = close(got[key].toArray() as Float64Array, want[key].toArray() as Float64Array, 1e-10, 1e-12)
          t.ok(cmp.ok, `chunk ${chunkTokens}: ${key}: ${describe(cmp)}`)
        }
        t.same(Array.from(got.steps.toArray() as BigInt64Array), Array.from(wantSteps), `chunk ${chunkTokens}: steps`)
        got.loss.backward()
        gradients(x).forEach((g, i) => {
          const cmp = close(g, wantGrads[i]!, 1e-9, 1e-12)
          t.ok(cmp.ok, `chunk ${chunkTokens}: gradient w.r.t. ${names[i]}: ${describe(cmp)}`)
        })
      }
      t.end()
    },
  )
}

t.test('the gradient matches fp64 finite differences of the loss, on both routes for long pairs', (t) => {
  for (const { c, chunkTokens } of [
    { c: { B: 2, T: 8, H: 4, V: 11, seed: 21, bias: true }, chunkTokens: 2 }, // accumulator
    { c: { B: 2, T: 8, H: 12, V: 11, seed: 22, bias: true }, chunkTokens: 2 }, // recompute
  ]) {
    const base = raw(c)
    const x = tensors(base)
    ops.epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens }).loss.backward()
    const [gh, gw, gb] = gradients(x)
    const loss = (patch: (r: Raw) => void): number => {
      const copy: Raw = { ...base, ph: base.ph.slice(), pw: base.pw.slice(), pb: base.pb!.slice() }
      patch(copy)
      return ops.epsilonDpoLossFromHidden({ ...tensors(copy), ...options(c), chunkTokens }).loss.item()
    }
    const h = 1e-5
    const probes: Array<[string, keyof Raw, number, Float64Array]> = [
      ...[3, 17, 40, 61].map((i): [string, keyof Raw, number, Float64Array] => ['hidden', 'ph', i * 2 + 1, gh!]),
      ...[0, 5, 22, 43].map((i): [string, keyof Raw, number, Float64Array] => ['head', 'pw', i, gw!]),
      ...[1, 7].map((i): [string, keyof Raw, number, Float64Array] => ['bias', 'pb', i, gb!]),
    ]
    for (const [name, field, i, grad] of probes) {
      const at = (d: number) => loss((r) => ((r[field] as Float64Array)[i]! += d))
      const fd = (at(h) - at(-h)) / (2 * h)
      // Central differences: error O(h²·|f'''|) plus rounding ~1e-16/h.
      t.ok(Math.abs(fd - grad[i]!) <= 1e-7 + 1e-6 * Math.abs(fd), `chunk ${chunkTokens}, H ${c.H}: ∂L/∂${name}[${i}] = ${grad[i]} vs finite difference ${fd}`)
    }
  }
  t.end()
})

t.test('the gradient made in the forward takes the upstream gradient (accumulation scaling)', (t) => {
  for (const { H, chunkTokens } of [
    { H: 4, chunkTokens: 2 },
    { H: 12, chunkTokens: 2 },
    { H: 4, chunkTokens: 1000 },
  ]) {
    const c: Case = { B: 2, T: 8, H, V: 13, seed: 31, bias: true }
    const x = tensors(raw(c))
    ops.epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens }).loss.backward()
    const unit = gradients(x)
    for (const g of [x.policyHidden, x.policyHead, x.policyBias]) g?.zeroGrad()
    ops
      .epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens })
      .loss.mul(-0.3)
      .backward()
    gradients(x).forEach((g, i) => {
      const cmp = close(
        g,
        unit[i]!.map((v) => -0.3 * v),
        1e-12,
        1e-15,
      )
      t.ok(cmp.ok, `H ${H}, chunk ${chunkTokens}: ${names[i]}: ${describe(cmp)}`)
    })
  }
  t.end()
})

t.test('activeRows may be the host list; a wrong one is rejected', (t) => {
  const c: Case = { B: 2, T: 8, H: 4, V: 13, seed: 41 }
  const base = raw(c)
  const x = tensors(base)
  const rows = BigInt64Array.from(
    Array.from(base.mask.entries())
      .filter(([, m]) => m !== 0)
      .map(([i]) => BigInt(i)),
  )
  const without = ops.epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens: 3 })
  const withRows = ops.epsilonDpoLossFromHidden({ ...x, ...options(c), chunkTokens: 3, activeRows: Tensor.from(rows, [rows.length]) })
  t.equal(withRows.loss.item(), without.loss.item())
  const reversed = rows.slice().reverse()
  t.throws(() => ops.epsilonDpoLossFromHidden({ ...x, ...options(c), activeRows: Tensor.from(reversed, [rows.length]) }), /activeRows/)
  t.end()
})
