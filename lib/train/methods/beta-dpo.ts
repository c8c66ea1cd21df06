// β-DPO (Wu et al., NeurIPS 2024, "β-DPO: Direct Preference Optimization with Dynamic β"): the
// baseline ε-DPO's paper compares against. Per micro-batch, from the pairs' implicit-reward margins
// M_i (docs/beta-dpo.md has the formulas and where each comes from):
//   1. momentum statistics   M0 ← m·M0 + (1−m)·mean(M),  σ ← m·σ + (1−m)·std(M)
//   2. β-guided filtering    keep ⌊B·(1−ρ)⌋ pairs, drawn without replacement with probability
//                            ∝ exp(−(M_i − M0)² / (2σ²))
//   3. batch-level β         β = max(1e-3, β0·(1 + α·(mean of the kept M_i − M0)))
//   4. loss                  mean over the kept pairs of −log σ(β·z_i)   (z_i = M_i, with gradient)
// The margins must be known before the loss (sampling is on the host), so this method reads B·4
// floats back once per micro-batch; the fused ε-DPO path reads nothing until the step's end.
import { z } from 'zod'

import type { TokenizedPair } from '../../data'
import { EdpoInputError } from '../../core/errors'
import { PAIR_RECORD_COLUMNS } from '../../core/pair-record'
import { nextUniform } from '../../core/rng'
import { Tensor } from '../../core/tensor'
import type { DistGroup } from '../../distributed/group'
import type { BatchShare, MethodSpec } from '../method'
import type { Metrics } from '../metrics-log'
import type { Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import {
  BETA_STATE,
  type BetaState,
  loadPreferenceParts,
  type PairBatch,
  type PreferenceConfig,
  PreferenceMethod,
  type PreferenceParts,
  REFERENCE_OPTIONS,
  BETA_OPTIONS,
} from './preference'

export const BETA_DPO_OPTIONS = {
  ...BETA_OPTIONS,
  ...REFERENCE_OPTIONS,
  betaDpoAlpha: { schema: z.number().min(0).default(0.6), kind: 'number', help: 'beta-dpo: α, β = β0·(1 + α·(M̄ − M0)) per micro-batch (docs/beta-dpo.md)' },
  betaDpoRho: { schema: z.number().min(0).lt(1).default(0.2), kind: 'number', help: 'beta-dpo: ρ, the fraction of each micro-batch filtered out' },
  betaDpoMomentum: { schema: z.number().min(0).lt(1).default(0.9), kind: 'number', help: 'beta-dpo: m, momentum of the margin statistics M0 and σ' },
} satisfies OptionTable

/** The paper's hyperparameters: β0 (the base β), α (scale), ρ (filtered fraction), m (momentum). */
export interface BetaDpoOptions {
  beta0: number
  alpha: number
  rho: number
  momentum: number
}

/** What a checkpoint keeps for an exact resume: the momentum statistics and the sampler's state. */
export const BETA_DPO_STATE = z.object({ m0: z.number(), sigma: z.number().min(0), rng: z.number().int().min(0), batches: z.number().int().min(0) })
export type BetaDpoState = z.infer<typeof BETA_DPO_STATE>

/** One micro-batch's calibration. */
export interface BetaDpoCalibration {
  /** The batch-level β of this micro-batch. */
  beta: number
  /** Kept pairs (ascending indices). */
  kept: number[]
  /** The momentum statistics after this batch's update. */
  m0: number
  sigma: number
}

// β-DPO's own floor on β (the authors' clamp(min=1e-3)).
const MIN_BETA = 1e-3

/** `n` indices drawn without replacement with probabilities ∝ weights (as torch.multinomial). */
export function sampleWithoutReplacement(weights: readonly number[], n: number, uniform: () => number): number[] {
  const w = [...weights]
  const kept: number[] = []
  for (let k = 0; k < n; k++) {
    const total = w.reduce((a, b) => a + b, 0)
    let pick = -1
    if (total > 0) {
      let u = uniform() * total
      for (let i = 0; i < w.length; i++) {
        if (w[i]! <= 0) continue
        pick = i
        u -= w[i]!
        if (u < 0) break
      }
    } else {
      // Every remaining weight underflowed to 0 (a margin far from M0): draw uniformly among the rest.
      const rest = w.map((_, i) => i).filter((i) => !kept.includes(i))
      pick = rest[Math.min(rest.length - 1, Math.floor(uniform() * rest.length))]!
    }
    kept.push(pick)
    w[pick] = 0
  }
  return kept.sort((a, b) => a - b)
}

export class BetaDpoCalibrator {
  private readonly s: BetaDpoState

  constructor(
    readonly options: BetaDpoOptions,
    seed: number,
    state?: BetaDpoState,
  ) {
    // The authors start both statistics at 0: the first batches see M0 and σ shrunk towards 0.
    this.s = state ? { ...state } : { m0: 0, sigma: 0, rng: seed >>> 0, batches: 0 }
  }

  get state(): BetaDpoState {
    return { ...this.s }
  }

  /**
   * Training: updates M0 and σ with this batch, filters and calibrates β. Evaluation
   * (`training` false): keeps every pair and leaves the state alone (β from the current M0).
   */
  calibrate(margins: readonly number[], training: boolean): BetaDpoCalibration {
    const B = margins.length
    if (B === 0) throw new EdpoInputError('beta-dpo: a micro-batch needs at least one pair')
    const { beta0, alpha, rho, momentum: m } = this.options
    if (!training) {
      const kept = margins.map((_, i) => i)
      return { beta: batchBeta(beta0, alpha, mean(margins), this.s.m0), kept, m0: this.s.m0, sigma: this.s.sigma }
    }
    this.s.m0 = m * this.s.m0 + (1 - m) * mean(margins)
    this.s.sigma = m * this.s.sigma + (1 - m) * std(margins)
    this.s.batches += 1
    const { m0, sigma } = this.s
    // σ = 0 (one pair per batch, or identical margins): every pair is equally likely.
    const weights = margins.map((x) => (sigma > 0 ? Math.exp(-0.5 * ((x - m0) / sigma) ** 2) : 1))
    // At least one pair is kept (the authors' ⌊B·(1−ρ)⌋ can be 0 for tiny batches; they then train on nothing).
    const n = Math.max(1, Math.floor(B * (1 - rho)))
    const kept = sampleWithoutReplacement(weights, n, () => nextUniform(this.s))
    return { beta: batchBeta(beta0, alpha, mean(kept.map((i) => margins[i]!)), m0), kept, m0, sigma }
  }
}

/** β = max(1e-3, β0·(1 + α·(M̄ − M0))). */
export function batchBeta(beta0: number, alpha: number, keptMean: number, m0: number): number {
  return Math.max(MIN_BETA, beta0 * (1 + alpha * (keptMean - m0)))
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length
}

/** Unbiased standard deviation (torch.std's default), 0 for a single value. */
function std(xs: readonly number[]): number {
  if (xs.length < 2) return 0
  const mu = mean(xs)
  return Math.sqrt(xs.reduce((a, x) => a + (x - mu) ** 2, 0) / (xs.length - 1))
}

/** Host values of one micro-batch: per-sequence sums of the 2B stacked rows (chosen first). */
export interface BetaDpoSums {
  policy: Float64Array
  reference: Float64Array
  tokens: Float64Array
}

/** The implicit-reward margins M_i of the B pairs whose sums these are. */
export function pairMargins(sums: Pick<BetaDpoSums, 'policy' | 'reference'>): number[] {
  const B = sums.policy.length / 2
  return Array.from({ length: B }, (_, i) => sums.policy[i]! - sums.policy[B + i]! - (sums.reference[i]! - sums.reference[B + i]!))
}

/**
 * On several ranks: the global micro-batch's margins (every rank's, rank 0's first), where this
 * rank's pairs start in them, and how many of its B pairs are real (0 on a stand-in row).
 */
export interface GlobalMargins {
  margins: readonly number[]
  offset: number
  rows: number
}

/**
 * The micro-batch's loss and per-pair record (PAIR_RECORD_COLUMNS, on `device`). `policyLogps` is
 * the differentiable [2B] policy sums; `sums` their host copy with the reference's. With `global`
 * the statistics, the filtering and β are the global micro-batch's, as one process computes them.
 */
export function betaDpoLoss(
  policyLogps: Tensor,
  sums: BetaDpoSums,
  calibrator: BetaDpoCalibrator,
  training: boolean,
  inputError: number,
  device: string,
  global?: GlobalMargins,
): { loss: Tensor; record: Tensor; calibration: BetaDpoCalibration } {
  const B = sums.policy.length / 2
  const margins = pairMargins(sums)
  const all = global ?? { margins, offset: 0, rows: B }
  const cal = calibrator.calibrate(all.margins, training)
  // weight: each kept pair's share of the global mean (the record's loss column); the loss's
  // weights scale it by global/local pairs, because the engine weights this rank's mean loss by
  // its share of the global micro-batch (DataParallel.lossWeight).
  const kept = new Set(cal.kept)
  const weight = new Float64Array(B)
  for (let i = 0; i < all.rows; i++) if (kept.has(all.offset + i)) weight[i] = 1 / cal.kept.length
  const toLocal = all.rows > 0 ? all.margins.length / all.rows : 0
  // z_i with gradient: (S_c − S_r) − (S_ref,c − S_ref,r); loss = Σ_kept −log σ(β·z_i) / n.
  const refMargins = Tensor.from(
    Float64Array.from({ length: B }, (_, i) => sums.reference[i]! - sums.reference[B + i]!),
    [B],
    { device },
  )
  const zTensor = policyLogps
    .narrow(0, 0, B)
    .sub(policyLogps.narrow(0, B, B))
    .sub(refMargins)
  const w = Tensor.from(
    weight.map((x) => x * toLocal),
    [B],
    { device },
  )
  const loss = zTensor.mul(cal.beta).logSigmoid().neg().mul(w).sum()
  for (const t of [refMargins, zTensor, w]) t.dispose()

  const k = PAIR_RECORD_COLUMNS.length
  const record = new Float64Array(B * k)
  const col = Object.fromEntries(PAIR_RECORD_COLUMNS.map((name, c) => [name, c])) as Record<(typeof PAIR_RECORD_COLUMNS)[number], number>
  for (let i = 0; i < B; i++) {
    const row = (name: (typeof PAIR_RECORD_COLUMNS)[number], v: number) => (record[i * k + col[name]] = v)
    const lossI = Math.log1p(Math.exp(-cal.beta * margins[i]!))
    row('chosenLogps', sums.policy[i]!)
    row('rejectedLogps', sums.policy[B + i]!)
    row('refChosenLogps', sums.reference[i]!)
    row('refRejectedLogps', sums.reference[B + i]!)
    row('chosenRewards', cal.beta * (sums.policy[i]! - sums.reference[i]!))
    row('rejectedRewards', cal.beta * (sums.policy[B + i]! - sums.reference[B + i]!))
    row('step', 0)
    row('beta', cal.beta)
    // Filtered pairs add 0 and kept ones n/B times their loss (B the global micro-batch's pairs):
    // the step's mean over pairs is the trained loss.
    row('loss', weight[i]! * all.margins.length * (Number.isFinite(lossI) ? lossI : cal.beta * -margins[i]!))
    // The mean-logit metric needs the full vocabulary pass the fused op makes; not measured here.
    row('chosenLogitSum', 0)
    row('rejectedLogitSum', 0)
    row('chosenTokens', 0)
    row('rejectedTokens', 0)
    row('inputError', inputError)
  }
  return { loss, record: Tensor.from(record, [B, k], { device }), calibration: cal }
}

/** β-DPO's trainer_state.json: the (unchanging) β0 as every preference method keeps it, and the calibrator's state. */
export const BETA_DPO_SAVED = { ...BETA_STATE, betaDpo: BETA_DPO_STATE }
type BetaDpoSaved = BetaState & { betaDpo: BetaDpoState }

export class BetaDpoMethod extends PreferenceMethod {
  /** The batch β of each training micro-batch of the current step. */
  private stepBetas: number[] = []
  /** Their mean over the last step (kl/beta). */
  private lastStepBeta: number | undefined

  /** On several ranks the calibration is the global micro-batch's: every rank joins its all-gather. */
  readonly collectiveLoss: boolean

  constructor(
    parts: PreferenceParts,
    private readonly calibrator: BetaDpoCalibrator,
    private readonly dist?: DistGroup,
  ) {
    super(parts)
    this.collectiveLoss = dist !== undefined
  }

  /** Sequence sums of both models, one read of them (its filtering samples on the host from the margins), then the loss. */
  protected async pairLoss(batch: PairBatch): Promise<{ loss: Tensor; record: Tensor }> {
    const seq = await this.sequenceStats({ ...batch, heads: this.withReference(batch.heads) })
    const rows = 2 * batch.pairs
    const both = Tensor.cat([seq.logps.detach(), seq.referenceLogps!, seq.tokenCount.to('float64'), seq.inputError.reshape([1]).to('float64')])
    const host = both.toArray() as Float64Array
    const sums = { policy: host.slice(0, rows), reference: host.slice(rows, 2 * rows), tokens: host.slice(2 * rows, 3 * rows) }
    const global = batch.share && this.dist ? await this.globalMargins(pairMargins(sums), batch.share) : undefined
    const out = betaDpoLoss(seq.logps, sums, this.calibrator, batch.grad, host[3 * rows]!, this.config.device, global)
    if (batch.grad) this.stepBetas.push(out.calibration.beta)
    for (const t of [both, seq.correct, seq.tokenCount, seq.referenceLogps!, seq.kl, seq.inputError]) t?.dispose()
    return { loss: out.loss, record: out.record }
  }

  /** Every rank's margins of this micro-batch, in the global order (one all-gather of B·world floats, padded to the largest share). */
  private async globalMargins(local: readonly number[], share: BatchShare): Promise<GlobalMargins> {
    const width = Math.max(...share.counts)
    const mine = share.standIn ? 0 : share.counts[share.rank]!
    const payload = new Float64Array(width)
    payload.set(local.slice(0, mine))
    const sent = Tensor.from(payload, [width], { dtype: 'float64', device: this.config.device })
    const all = await this.dist!.allgather(sent)
    const host = all.toArray() as Float64Array
    for (const t of [sent, all]) t.dispose()
    const margins = share.counts.flatMap((n, r) => Array.from(host.subarray(r * width, r * width + n)))
    const offset = share.counts.slice(0, share.rank).reduce((a, b) => a + b, 0)
    return { margins, offset, rows: mine }
  }

  /** The step's mean batch β and the momentum statistics. */
  override afterStep(): Metrics {
    this.beta.finishStep()
    const s = this.calibrator.state
    const betas = this.stepBetas
    this.stepBetas = []
    this.lastStepBeta = betas.reduce((a, b) => a + b, 0) / Math.max(1, betas.length)
    return { 'kl/beta': this.lastStepBeta, 'beta_dpo/m0': s.m0, 'beta_dpo/sigma': s.sigma }
  }

  /** β-DPO's β is per batch: the last step's mean (β0 before any step). */
  override get currentBeta(): number {
    return this.lastStepBeta ?? this.beta.beta
  }

  override savedState(): BetaDpoSaved {
    return { beta: this.beta.beta, betaDpo: this.calibrator.state }
  }
}

type BetaDpoConfig = PreferenceConfig & OptionValues<typeof BETA_DPO_OPTIONS>

export const BETA_DPO = {
  title: 'β-DPO',
  about: 'β-DPO: a batch-level β and β-guided filtering of the pairs (--beta-dpo-alpha, --beta-dpo-rho, --beta-dpo-momentum)',
  data: 'pairs',
  reference: 'frozen',
  options: BETA_DPO_OPTIONS,
  state: BETA_DPO_SAVED,
  async load(run: Run<BetaDpoConfig, BetaDpoSaved>) {
    const c = run.config
    const calibrator = new BetaDpoCalibrator(
      { beta0: c.beta, alpha: c.betaDpoAlpha, rho: c.betaDpoRho, momentum: c.betaDpoMomentum },
      c.seed,
      run.resumed?.file.betaDpo,
    )
    return new BetaDpoMethod(await loadPreferenceParts(run, { reference: 'frozen' }), calibrator, run.dist)
  },
} satisfies MethodSpec<PreferenceConfig, TokenizedPair, typeof BETA_DPO_OPTIONS, typeof BETA_DPO_SAVED>
