// What the baseline preference losses (ipo.ts, simpo.ts, …) read and return. Each loss is a pure
// function of per-sequence sums, as ops.sequenceStatsFromHidden gives them on the chunked path (no
// [B, T, V] logits): the 2B stacked rows of B pairs, chosen rows first. docs/methods.md writes
// each formula out.
import { EdpoInputError } from '../../../core/errors'
import { Tensor } from '../../../core/tensor'

/** One micro-batch's per-sequence statistics, all [2B] and on one device, chosen rows first. */
export interface PairSums {
  /** Σ_t log π_θ(y_t) over each row's completion tokens (float64, differentiable). */
  policy: Tensor
  /** Completion tokens per row (any real dtype). */
  tokens: Tensor
  /** Σ_t log π_ref(y_t): the frozen reference's (never differentiated); for the methods that use one. */
  reference?: Tensor
  /** The per-sequence op's input-error flag (a scalar), copied into the record's inputError column. */
  inputError?: Tensor
  /**
   * What the chosen completions' NLL divides by (a scalar): by default Σ of these rows' chosen
   * tokens. On several ranks, the global micro-batch's chosen tokens × this rank's share of its
   * pairs, so that the ranks' weighted losses add up to the global micro-batch's NLL.
   */
  nllTokens?: Tensor
}

/** Columns of a baseline's per-pair record (float64 [B, k]); a method leaves the ones it has not at 0. */
export const BASELINE_RECORD_COLUMNS = [
  // The log-probs the formula compares (sums, or per-token means for the length-normalised methods).
  'chosenLogps',
  'rejectedLogps',
  // The implicit rewards, as TRL logs them for that method.
  'chosenRewards',
  'rejectedRewards',
  // The pair's loss: its pairwise term plus the micro-batch's shared terms (the NLL), so the
  // mean over the micro-batch's pairs is the micro-batch's loss.
  'loss',
  // The micro-batch's NLL of the chosen completions (CPO, ORPO, SLiC-HF, RRHF).
  'nll',
  // ORPO: log odds(chosen) − log odds(rejected), and its log σ.
  'logOdds',
  'logOddsRatio',
  // KTO: the micro-batch's KL estimate z₀.
  'kl',
  'chosenTokens',
  'rejectedTokens',
  // The per-sequence op's device-side input-error flag (INPUT_ERRORS), the same on every pair.
  'inputError',
] as const
export type BaselineRecordColumn = (typeof BASELINE_RECORD_COLUMNS)[number]

/** The loss of one micro-batch and its per-pair record. */
export interface BaselineLoss {
  /** Scalar mean loss (float64), differentiable w.r.t. `policy`. */
  loss: Tensor
  /** [B, BASELINE_RECORD_COLUMNS.length] float64, detached, on the sums' device. */
  record: Tensor
}

/** The sums split by side: [B] views, tokens as float64. */
export interface SplitSums {
  pairs: number
  chosen: Tensor
  rejected: Tensor
  chosenTokens: Tensor
  rejectedTokens: Tensor
  refChosen?: Tensor
  refRejected?: Tensor
  inputError?: Tensor
  nllTokens?: Tensor
}

/** Checks the shapes (one even-length vector each) and splits the rows into chosen and rejected. */
export function splitPairSums(method: string, s: PairSums, needsReference: boolean): SplitSums {
  const rows = s.policy.shape
  if (rows.length !== 1 || rows[0]! < 2 || rows[0]! % 2 !== 0)
    throw new EdpoInputError(`${method}: policy sums must be one [2B] vector (B >= 1 pairs, chosen rows first); got shape [${rows.join(', ')}]`)
  const n = rows[0]!
  const same = (name: string, x: Tensor) => {
    if (x.shape.length !== 1 || x.shape[0] !== n)
      throw new EdpoInputError(`${method}: ${name} must have shape [${n}] like the policy sums; got [${x.shape.join(', ')}]`)
  }
  same('tokens', s.tokens)
  if (needsReference && s.reference === undefined) throw new EdpoInputError(`${method}: needs the reference's sums`)
  if (s.reference) same('reference', s.reference)
  const B = n / 2
  const tokens = s.tokens.to('float64')
  const ref = s.reference?.detach()
  return {
    pairs: B,
    chosen: s.policy.narrow(0, 0, B),
    rejected: s.policy.narrow(0, B, B),
    chosenTokens: tokens.narrow(0, 0, B),
    rejectedTokens: tokens.narrow(0, B, B),
    refChosen: ref?.narrow(0, 0, B),
    refRejected: ref?.narrow(0, B, B),
    inputError: s.inputError,
    nllTokens: s.nllTokens,
  }
}

/** Per-token mean log-prob S/n (n clamped to 1: a completion without tokens averages to 0). */
export function perTokenMean(sums: Tensor, tokens: Tensor): Tensor {
  return sums.div(tokens.maskedFill(tokens.lt(1), 1))
}

/**
 * The micro-batch's NLL of the chosen completions, −Σ_i S_w,i / Σ_i |y_w,i| (the token mean TRL's
 * cross-entropy takes over the batch's chosen completion tokens, or over s.nllTokens); 0 without any token.
 */
export function chosenNll(s: SplitSums): Tensor {
  const n = s.nllTokens ?? s.chosenTokens.sum()
  // Without any token the sum is 0 too; a scaled divisor (nllTokens) may lie below 1.
  return s.chosen
    .sum()
    .neg()
    .div(n.maskedFill(n.eq(0), 1))
}

/** max(0, x), with gradient 0 where x < 0. */
export function relu(x: Tensor): Tensor {
  return x.maskedFill(x.lt(0), 0)
}

/**
 * log(1 − e^x) for x < 0, accurate near 0 as well: with t = tanh(x/2), 1 − e^x = −2t/(1 − t)
 * (libtorch's log1p/expm1 are not among the Tensor ops).
 */
export function log1mExp(x: Tensor): Tensor {
  const t = x.div(2).tanh()
  return t.mul(-2).log().sub(t.neg().add(1).log())
}

/** The record from named [B] columns (missing ones are 0), detached, as float64 [B, k]. */
export function pairRecord(s: SplitSums, columns: Partial<Record<BaselineRecordColumn, Tensor | number>>): Tensor {
  const device = s.chosen.device
  const cols = BASELINE_RECORD_COLUMNS.map((name) => {
    const own = { chosenTokens: s.chosenTokens, rejectedTokens: s.rejectedTokens, inputError: s.inputError?.reshape([]) } as Partial<
      Record<BaselineRecordColumn, Tensor>
    >
    const v = name in own ? own[name] : columns[name]
    if (v === undefined) return Tensor.zeros([s.pairs], { dtype: 'float64', device })
    if (typeof v === 'number') return Tensor.full([s.pairs], v, { dtype: 'float64', device })
    const d = v.detach().to('float64')
    // A micro-batch scalar (the NLL, KTO's KL) goes to every pair's row.
    return d.shape.length === 0 ? Tensor.zeros([s.pairs], { dtype: 'float64', device }).add(d) : d
  })
  return Tensor.stack(cols, 1)
}

/** A hyperparameter the loss functions check themselves (they are public API as well as the trainer's). */
export function checkOption(method: string, name: string, value: number, rule: 'positive' | 'nonnegative'): void {
  const ok = Number.isFinite(value) && (rule === 'positive' ? value > 0 : value >= 0)
  if (!ok) throw new EdpoInputError(`${method}: ${name} must be a finite number ${rule === 'positive' ? '> 0' : '>= 0'}; got ${value}`)
}
