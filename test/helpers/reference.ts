// The fp64 reference for the ε-DPO op: eager libtorch ops written straight from the spec
// (§2–§5), materialising every [2B,T,V] intermediate. Only tests and benches use it.
import { type DType, Tensor } from '../../lib/index'

export interface Case {
  pairs: number // B
  steps: number // T
  vocab: number // V
  policy: Tensor // [2B,T,V]
  reference: Tensor
  labels: Tensor // [2B,T] int64
  mask: Tensor // [2B,T] float32
}

export interface Reference {
  S: Float64Array
  Sref: Float64Array
  Splus: Float64Array
  Sminus: Float64Array
  /** Per pair: ρ⁺ − ρ and ρ − ρ⁻, the margins the step decision compares with 0. */
  plusMargin: Float64Array
  minusMargin: Float64Array
  steps: number[]
  betas: number[]
  loss: number
  chosenRewards: number[]
  rejectedRewards: number[]
  meanChosenLogits: number
  meanRejectedLogits: number
}

/** Small deterministic PRNG (mulberry32): every case is reproducible from its seed. The demo's, reused. */
import { rng } from '../../lib/demo/task'

export { rng }

export interface CaseOptions {
  pairs: number
  steps: number
  vocab: number
  seed: number
  dtype?: DType
  /** Logits are uniform in ±spread (default 4). */
  spread?: number
  /** Rows whose mask is all zero (indices into the 2B rows). */
  emptyRows?: number[]
  /** Label written at masked positions (TRL writes -100). */
  maskedLabel?: number
  /** Vocabulary id ranges [from, to) whose policy logits are −inf in every row (a vocabulary mask);
   *  labels are drawn outside them. */
  policyNegInf?: Array<[number, number]>
}

/** Random logits, labels and a prompt/completion mask: each row's completion starts at a random step. */
export function makeCase(o: CaseOptions): Case {
  const r = rng(o.seed)
  const rows = 2 * o.pairs
  const n = rows * o.steps * o.vocab
  const spread = o.spread ?? 4
  const policy = new Float32Array(n)
  const reference = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    policy[i] = (2 * r() - 1) * spread
    // The reference stays near the policy, as after SFT, so the perturbation signal is realistic.
    reference[i] = policy[i]! + (2 * r() - 1) * spread * 0.5
  }
  const labels = new BigInt64Array(rows * o.steps)
  const mask = new Float32Array(rows * o.steps)
  for (let row = 0; row < rows; row++) {
    const start = Math.floor(r() * o.steps)
    for (let t = 0; t < o.steps; t++) {
      const on = t >= start && !(o.emptyRows ?? []).includes(row)
      mask[row * o.steps + t] = on ? 1 : 0
      labels[row * o.steps + t] = on ? BigInt(allowedLabel(Math.floor(r() * o.vocab), o)) : BigInt(o.maskedLabel ?? 0)
    }
  }
  for (const [from, to] of o.policyNegInf ?? []) {
    for (let i = 0; i < n; i += o.vocab) policy.fill(-Infinity, i + from, i + to)
  }
  const dtype = o.dtype ?? 'float32'
  return {
    pairs: o.pairs,
    steps: o.steps,
    vocab: o.vocab,
    policy: Tensor.from(policy, [rows, o.steps, o.vocab], { dtype }),
    reference: Tensor.from(reference, [rows, o.steps, o.vocab], { dtype }),
    labels: Tensor.from(labels, [rows, o.steps]),
    mask: Tensor.from(mask, [rows, o.steps]),
  }
}

/** The first id at or after `id` (cyclically) outside every −inf range. */
function allowedLabel(id: number, o: CaseOptions): number {
  for (let k = 0; k < o.vocab; k++) {
    const y = (id + k) % o.vocab
    if (!(o.policyNegInf ?? []).some(([from, to]) => y >= from && y < to)) return y
  }
  throw new Error('makeCase: every vocabulary id is masked to −inf')
}

function f64(t: Tensor): Float64Array {
  return t.to('float64').toArray() as Float64Array
}

/** Zeros where the mask is 0, so a −inf log-prob at a masked position (a masked-out label) adds 0. */
function maskedOut(lp: Tensor, mask: Tensor): Tensor {
  return lp.where(mask.gt(0), Tensor.zeros(lp.shape, { dtype: lp.dtype }))
}

/** Masked per-row sums of log-softmax(logits)[label], in fp64. */
function sequenceSums(logits: Tensor, labels: Tensor, mask: Tensor): Float64Array {
  const lp = logits.logSoftmax(-1).gather(2, labels.unsqueeze(-1)).squeeze(-1)
  return f64(maskedOut(lp, mask).mul(mask).sum(1))
}

export function referenceLoss(c: Case, beta: number, epsilon: number, labelSmoothing = 0): Reference {
  const a = c.policy.to('float64')
  const b = c.reference.to('float64')
  const mask = c.mask.to('float64')
  // Masked positions may hold any label (e.g. -100): gather needs a valid index there.
  const labels = c.labels.where(c.mask.gt(0), Tensor.zeros(c.labels.shape, { dtype: 'int64' }))
  const S = sequenceSums(a, labels, mask)
  const Sref = sequenceSums(b, labels, mask)
  const Splus = sequenceSums(a.mul(1 + epsilon).sub(b.mul(epsilon)), labels, mask)
  const Sminus = sequenceSums(a.mul(1 - epsilon).add(b.mul(epsilon)), labels, mask)
  const logitSums = f64(a.sum(2).mul(mask).sum(1))
  const counts = f64(mask.sum(1))

  const B = c.pairs
  const ratio = (s: Float64Array, i: number) => s[i]! - s[B + i]!
  const out: Reference = {
    S,
    Sref,
    Splus,
    Sminus,
    plusMargin: new Float64Array(B),
    minusMargin: new Float64Array(B),
    steps: [],
    betas: [],
    loss: 0,
    chosenRewards: [],
    rejectedRewards: [],
    meanChosenLogits: 0,
    meanRejectedLogits: 0,
  }
  const logSigmoid = (x: number) => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)))
  for (let i = 0; i < B; i++) {
    const rho = ratio(S, i)
    const rhoPlus = ratio(Splus, i)
    const rhoMinus = ratio(Sminus, i)
    out.plusMargin[i] = rhoPlus - rho
    out.minusMargin[i] = rho - rhoMinus
    const s = rhoPlus > rho && rho > rhoMinus ? 1 : rhoMinus > rho && rho > rhoPlus ? -1 : 0
    const betaI = beta / (1 + epsilon * s)
    const z = rho - ratio(Sref, i)
    out.steps.push(s)
    out.betas.push(betaI)
    out.loss += (-(1 - labelSmoothing) * logSigmoid(betaI * z) - labelSmoothing * logSigmoid(-betaI * z)) / B
    out.chosenRewards.push(betaI * (S[i]! - Sref[i]!))
    out.rejectedRewards.push(betaI * (S[B + i]! - Sref[B + i]!))
  }
  const mean = (from: number) => {
    let sum = 0
    let n = 0
    for (let i = from; i < from + B; i++) {
      sum += logitSums[i]!
      n += counts[i]!
    }
    return n > 0 ? sum / (n * c.vocab) : 0
  }
  out.meanChosenLogits = mean(0)
  out.meanRejectedLogits = mean(B)
  return out
}

/** dL/dS per row (chosen rows, then rejected) from the reference's per-pair β_i (no gradient through s_i). */
export function sequenceGradients(ref: Reference, B: number, labelSmoothing = 0): Float64Array {
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
  const dS = new Float64Array(2 * B)
  for (let i = 0; i < B; i++) {
    const betaI = ref.betas[i]!
    const m = betaI * (ref.S[i]! - ref.S[B + i]! - (ref.Sref[i]! - ref.Sref[B + i]!))
    const dm = ((-(1 - labelSmoothing) * sigmoid(-m) + labelSmoothing * sigmoid(m)) * betaI) / B
    dS[i] = dm
    dS[B + i] = -dm
  }
  return dS
}

/** Gradient of the reference loss w.r.t. the policy logits, by fp64 autograd through log-softmax. */
export function referenceGradient(c: Case, beta: number, epsilon: number, labelSmoothing = 0): Float64Array {
  const ref = referenceLoss(c, beta, epsilon, labelSmoothing)
  const a = Tensor.from(c.policy.to('float64').toArray() as Float64Array, c.policy.shape, { requiresGrad: true })
  const labels = c.labels.where(c.mask.gt(0), Tensor.zeros(c.labels.shape, { dtype: 'int64' }))
  const S = maskedOut(a.logSoftmax(-1).gather(2, labels.unsqueeze(-1)).squeeze(-1), c.mask)
    .mul(c.mask.to('float64'))
    .sum(1)
  const B = c.pairs
  const dS = sequenceGradients(ref, B, labelSmoothing)
  S.mul(Tensor.from(dS, [2 * B]))
    .sum()
    .backward()
  return a.grad!.toArray() as Float64Array
}
