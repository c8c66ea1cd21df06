// ops.epsilonDpoLoss against the fp64 eager reference (test/helpers/reference.ts), over random
// shapes, odd vocabularies, empty rows, bf16/fp16 inputs and a ±30 logit spread.
import t from 'tap'

import { type DType, ops } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type CaseOptions, makeCase, referenceLoss } from './helpers/reference'

const TIE = 1e-9 // below this even fp64 sums of different order may disagree

interface Spec extends CaseOptions {
  beta: number
  epsilon: number
  labelSmoothing?: number
}

const specs: Spec[] = [
  { pairs: 1, steps: 1, vocab: 7, seed: 1, beta: 0.1, epsilon: 0.01 },
  { pairs: 3, steps: 5, vocab: 7, seed: 2, beta: 0.5, epsilon: 0.02, emptyRows: [1] },
  { pairs: 8, steps: 64, vocab: 7, seed: 3, beta: 0.01, epsilon: 0.005, maskedLabel: -100 },
  { pairs: 2, steps: 33, vocab: 1000, seed: 4, beta: 0.1, epsilon: 0.01, spread: 30 },
  { pairs: 5, steps: 17, vocab: 1000, seed: 5, beta: 0.05, epsilon: 0.01, labelSmoothing: 0.1 },
  { pairs: 4, steps: 12, vocab: 1000, seed: 6, beta: 0.1, epsilon: 0.01, dtype: 'bfloat16' },
  { pairs: 2, steps: 9, vocab: 1000, seed: 7, beta: 0.1, epsilon: 0.01, dtype: 'float16', emptyRows: [0, 3] },
  { pairs: 2, steps: 6, vocab: 50257, seed: 8, beta: 0.1, epsilon: 0.01 },
  { pairs: 1, steps: 4, vocab: 50257, seed: 9, beta: 0.1, epsilon: 0.01, dtype: 'bfloat16', spread: 30 },
  { pairs: 1, steps: 3, vocab: 128256, seed: 10, beta: 0.01, epsilon: 0.01 },
  { pairs: 2, steps: 7, vocab: 7, seed: 11, beta: 0.1, epsilon: 0.01, dtype: 'float64' },
  // Logits of ±300 overflow a single pass against the first element: the kernel must rebase.
  { pairs: 2, steps: 6, vocab: 5000, seed: 12, beta: 0.1, epsilon: 0.2, spread: 300 },
  { pairs: 1, steps: 4, vocab: 9000, seed: 13, beta: 0.1, epsilon: 0.01, spread: 300, dtype: 'bfloat16' },
]

// Random extra shapes: B in 1..8, T in 1..64, V in {7, 1000}.
for (let k = 0; k < 6; k++) {
  const r = (n: number) => 1 + ((k * 7919 + n * 104729) % n)
  specs.push({ pairs: r(8), steps: r(64), vocab: k % 2 ? 7 : 1000, seed: 100 + k, beta: 0.1, epsilon: 0.01 })
}

function f64(x: ArrayLike<number> | BigInt64Array): number[] {
  return Array.from(x as ArrayLike<number | bigint>, Number)
}

for (const spec of specs) {
  const dtype: DType = spec.dtype ?? 'float32'
  const name = `B=${spec.pairs} T=${spec.steps} V=${spec.vocab} ${dtype} seed=${spec.seed}`
  t.test(name, (t) => {
    const c = makeCase(spec)
    const want = referenceLoss(c, spec.beta, spec.epsilon, spec.labelSmoothing ?? 0)
    const seq = ops.sequenceLogps({
      policyLogits: c.policy,
      referenceLogits: c.reference,
      labels: c.labels,
      lossMask: c.mask,
      epsilon: spec.epsilon,
    })
    // Per-sequence sums: 1e-5 relative (fp64 inputs: 1e-12).
    const rtol = dtype === 'float64' ? 1e-12 : 1e-5
    for (const [key, ref] of [
      ['policy', want.S],
      ['reference', want.Sref],
      ['plus', want.Splus],
      ['minus', want.Sminus],
    ] as const) {
      const got = seq[key].toArray() as Float64Array
      const cmp = close(got, ref, rtol, rtol)
      t.ok(cmp.ok, `S ${key}: ${describe(cmp)}`)
    }

    const out = ops.epsilonDpoLoss({
      policyLogits: c.policy,
      referenceLogits: c.reference,
      labels: c.labels,
      lossMask: c.mask,
      beta: spec.beta,
      epsilon: spec.epsilon,
      labelSmoothing: spec.labelSmoothing,
    })
    const steps = f64(out.steps.toArray())
    t.equal(out.steps.dtype, 'int64')
    t.same(out.steps.shape, [spec.pairs])
    for (let i = 0; i < spec.pairs; i++) {
      // A margin is a difference of four per-sequence sums, each within rtol·(1 + |S|) of the fp64
      // value: below that bound the kernel may break the tie either way.
      const sums = [want.S, want.Splus, want.Sminus].reduce((a, S) => a + Math.abs(S[i]!) + Math.abs(S[spec.pairs + i]!) + 2, 0)
      const tieBound = Math.max(TIE, rtol * sums)
      const tie = Math.abs(want.plusMargin[i]!) < tieBound || Math.abs(want.minusMargin[i]!) < tieBound
      if (!tie) t.equal(steps[i], want.steps[i], `step of pair ${i} (margins ${want.plusMargin[i]}, ${want.minusMargin[i]})`)
    }
    const outDtype = dtype === 'float64' ? 'float64' : 'float32'
    t.equal(out.loss.dtype, outDtype)
    t.same(out.loss.shape, [])
    const lossCmp = close([out.loss.item()], [want.loss], 1e-5, 1e-7)
    t.ok(lossCmp.ok, `loss: ${describe(lossCmp)}`)
    const B = spec.pairs
    const pairs = (x: Float64Array, from: number) => Array.from(x.subarray(from, from + B))
    for (const [key, ref] of [
      ['betas', want.betas],
      ['chosenLogps', pairs(want.S, 0)],
      ['rejectedLogps', pairs(want.S, B)],
      ['refChosenLogps', pairs(want.Sref, 0)],
      ['refRejectedLogps', pairs(want.Sref, B)],
      ['chosenRewards', want.chosenRewards],
      ['rejectedRewards', want.rejectedRewards],
    ] as const) {
      const cmp = close(f64(out[key].toArray() as Float32Array), ref, dtype === 'float64' ? 1e-12 : 1e-5, 1e-6)
      t.ok(cmp.ok, `${key}: ${describe(cmp)}`)
    }
    const logitCmp = close([out.meanChosenLogits.item(), out.meanRejectedLogits.item()], [want.meanChosenLogits, want.meanRejectedLogits], 1e-4, 1e-5)
    t.ok(logitCmp.ok, `mean logits: ${describe(logitCmp)}`)
    t.end()
  })
}

t.test('epsilon 0 is exactly DPO: no steps, constant beta', (t) => {
  const c = makeCase({ pairs: 6, steps: 10, vocab: 100, seed: 42 })
  const out = ops.epsilonDpoLoss({
    policyLogits: c.policy,
    referenceLogits: c.reference,
    labels: c.labels,
    lossMask: c.mask,
    beta: 0.2,
    epsilon: 0,
  })
  t.same(f64(out.steps.toArray()), [0, 0, 0, 0, 0, 0])
  t.same(f64(out.betas.toArray()), Array(6).fill(Math.fround(0.2)))
  const want = referenceLoss(c, 0.2, 0)
  t.ok(close([out.loss.item()], [want.loss], 1e-5).ok)
  t.end()
})

t.test('fp32 accumulation resolves the perturbation where bf16 arithmetic would tie (spec §8)', (t) => {
  // Long completions put S near −250 where bf16 spacing is ~1 nat; the op must still see ±1 steps.
  const c = makeCase({ pairs: 8, steps: 64, vocab: 500, seed: 77, dtype: 'bfloat16' })
  const out = ops.epsilonDpoLoss({
    policyLogits: c.policy,
    referenceLogits: c.reference,
    labels: c.labels,
    lossMask: c.mask,
    beta: 0.1,
    epsilon: 0.01,
  })
  const want = referenceLoss(c, 0.1, 0.01)
  const nonzero = want.steps.filter((s) => s !== 0).length
  t.ok(nonzero >= 6, `reference has ${nonzero}/8 non-zero steps`)
  t.same(f64(out.steps.toArray()), want.steps)
  t.end()
})
