// --criterion-precision bf16 (op argument bf16Criterion): the step decisions equal those of an
// eager bf16 composition of the authors' trainer.py on random logits, as a GPU runs it: each op in
// fp32 (CUDA's opmath, Python-float scalars kept in fp32) with its output rounded to bf16. The
// loss's gradient path stays exact; only `step` (and so β_i, rewards, loss) follow the decision.
import t from 'tap'

import { ops, Tensor } from '../lib/index'
import { type Case, makeCase } from './helpers/reference'

const f32 = (x: Tensor) => x.to('float32')
const bf16 = (x: Tensor) => x.to('bfloat16')

/** trainer.py's decision, op by op: mixtures, log_softmax, gather, masked sum(-1), log-ratios. */
function eagerBf16Steps(c: Case, epsilon: number): number[] {
  const a = bf16(c.policy)
  const b = bf16(c.reference)
  const labels = c.labels.maskedFill(c.labels.lt(0), 0).unsqueeze(2)
  const mask = c.mask.to('float32')
  // (1 + ε) * logits, ε * ref_logits, (1 − ε) * logits: python-float scalars, fp32 math, bf16 out.
  const scaled = (x: Tensor, s: number) => bf16(f32(x).mul(s))
  const plus = bf16(f32(scaled(a, 1 + epsilon)).sub(f32(scaled(b, epsilon))))
  const minus = bf16(f32(scaled(a, 1 - epsilon)).add(f32(scaled(b, epsilon))))
  const sums = (logits: Tensor) => {
    // log_softmax(-1) of bf16 logits (fp32 inside, bf16 out), then the label's entry.
    const perToken = bf16(f32(logits).logSoftmax(-1).gather(2, labels).squeeze(2))
    // per_token_logps[~loss_mask] = 0; .sum(-1): fp32 accumulation, bf16 result.
    return bf16(f32(perToken).mul(mask).sum(1))
  }
  const B = c.pairs
  const ratio = (s: Tensor) =>
    Array.from(
      bf16(f32(s.narrow(0, 0, B)).sub(f32(s.narrow(0, B, B))))
        .to('float64')
        .toArray() as Float64Array,
    )
  const rho = ratio(sums(a))
  const rhoPlus = ratio(sums(plus))
  const rhoMinus = ratio(sums(minus))
  return rho.map((r, i) => (rhoPlus[i]! > r && r > rhoMinus[i]! ? 1 : rhoMinus[i]! > r && r > rhoPlus[i]! ? -1 : 0))
}

const steps = (out: { steps: Tensor }) => Array.from(out.steps.toArray() as BigInt64Array, Number)

const cases = [
  { pairs: 24, steps: 48, vocab: 1000, seed: 1, epsilon: 0.01 },
  { pairs: 16, steps: 8, vocab: 257, seed: 2, epsilon: 0.02, spread: 8 },
  { pairs: 12, steps: 3, vocab: 99, seed: 3, epsilon: 0.005, maskedLabel: -100 },
  { pairs: 8, steps: 20, vocab: 5000, seed: 4, epsilon: 0.2, emptyRows: [0, 9] },
  { pairs: 6, steps: 12, vocab: 300, seed: 5, epsilon: 0.01, dtype: 'bfloat16' as const },
  { pairs: 40, steps: 2, vocab: 50, seed: 6, epsilon: 0.1 },
]

for (const spec of cases) {
  t.test(`B=${spec.pairs} T=${spec.steps} V=${spec.vocab} ε=${spec.epsilon} ${spec.dtype ?? 'float32'}`, (t) => {
    const c = makeCase(spec)
    const args = { policyLogits: c.policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.1, epsilon: spec.epsilon }
    const got = steps(ops.epsilonDpoLoss({ ...args, bf16Criterion: true }))
    t.same(got, eagerBf16Steps(c, spec.epsilon), `every pair decides as eager bf16 (${got.filter((s) => s !== 0).length} of ${spec.pairs} move β)`)
    // The flag only moves the decision: with it off, the fp32 path is unchanged.
    const exact = ops.epsilonDpoLoss(args)
    const offAgain = ops.epsilonDpoLoss({ ...args, bf16Criterion: false })
    t.same(steps(offAgain), steps(exact))
    t.end()
  })
}

t.test('long sequences: bf16 rounding ties most pairs that fp32 separates (spec §8)', (t) => {
  const c = makeCase({ pairs: 48, steps: 96, vocab: 2000, seed: 11 })
  const args = { policyLogits: c.policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta: 0.1, epsilon: 0.01 }
  const moved = (s: number[]) => s.filter((x) => x !== 0).length
  const exact = moved(steps(ops.epsilonDpoLoss(args)))
  const rounded = moved(steps(ops.epsilonDpoLoss({ ...args, bf16Criterion: true })))
  t.ok(exact >= 40, `fp32: ${exact} of 48 pairs move β`)
  t.ok(rounded < exact / 2, `bf16: only ${rounded} of 48 pairs move β`)
  t.end()
})

t.test('the chunked op on hidden states decides as the op on their logits', (t) => {
  const B = 10,
    T = 16,
    H = 12,
    V = 321
  Tensor.manualSeed(7)
  const hidden = Tensor.randn([2 * B, T, H]).to('float64')
  const refHidden = Tensor.randn([2 * B, T, H]).to('float64')
  const head = Tensor.randn([V, H]).to('float64').mul(0.8)
  const refHead = Tensor.randn([V, H]).to('float64').mul(0.8)
  const c = makeCase({ pairs: B, steps: T, vocab: V, seed: 8 })
  const fromHidden = ops.epsilonDpoLossFromHidden({
    policyHidden: hidden,
    policyHead: head,
    referenceHidden: refHidden,
    referenceHead: refHead,
    labels: c.labels,
    lossMask: c.mask,
    beta: 0.1,
    epsilon: 0.05,
    bf16Criterion: true,
    chunkTokens: 37,
  })
  const logits = { ...c, policy: hidden.matmul(head.transpose(0, 1)), reference: refHidden.matmul(refHead.transpose(0, 1)) }
  t.same(steps(fromHidden), eagerBf16Steps(logits, 0.05))
  t.end()
})
