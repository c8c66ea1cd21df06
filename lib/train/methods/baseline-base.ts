// What the paper's comparison set (IPO, SimPO, CPO, ORPO, R-DPO, SLiC-HF, RRHF, KTO) shares on
// top of the preference base: the per-sequence sums of the 2B rows from the chunked op (no
// [B, T, V] logits; the reference's only where the method has one), one loss of losses/, and
// metrics in TRL's names from its per-pair record (BASELINE_RECORD_COLUMNS). β stays as given.
import type { TokenizedPair } from '../../data'
import type { DistGroup } from '../../distributed/group'
import { checkInputErrors } from '../../core/pair-record'
import { Tensor } from '../../core/tensor'
import type { MicroBatchOptions, MicroBatchOutput, StepSummary } from '../method'
import type { Metrics } from '../metrics-log'
import { BASELINE_RECORD_COLUMNS, type BaselineLoss, type BaselineRecordColumn, type PairSums } from './losses'
import { type BetaState, type PairBatch, PreferenceMethod, type PreferenceParts } from './preference'

/** The TRL metrics a method adds to the common ones (rewards/*, logps/*, loss). */
export type BaselineMetric = 'nll_loss' | 'log_odds_ratio' | 'log_odds_chosen' | 'kl'

const METRIC_COLUMN: Record<BaselineMetric, BaselineRecordColumn> = {
  nll_loss: 'nll',
  log_odds_ratio: 'logOddsRatio',
  log_odds_chosen: 'logOdds',
  kl: 'kl',
}

/** What a loss may read besides the sums: the micro-batch and its rows (KTO's KL rows), the method's models, the ranks' group. */
export interface BaselineContext {
  batch: PairBatch
  rows: readonly TokenizedPair[]
  method: BaselineMethod
  /** Several ranks: the group a collective loss reduces its batch statistic over (batch.share says where this rank's rows sit). */
  dist?: DistGroup
}

export interface BaselineSpec {
  /** The loss of one micro-batch's sums, with the run's β. */
  loss(sums: PairSums, beta: number, ctx: BaselineContext): Promise<BaselineLoss> | BaselineLoss
  metrics: readonly BaselineMetric[]
  /** The loss takes a statistic of the global micro-batch (KTO's z₀): on several ranks every rank joins every micro-batch's collective. */
  collective?: boolean
  /**
   * The loss has the chosen completions' NLL, a token mean over the micro-batch (CPO, ORPO,
   * SLiC-HF, RRHF): on several ranks its tokens are the global micro-batch's (one all-reduce).
   */
  chosenNll?: boolean
}

export class BaselineMethod extends PreferenceMethod {
  constructor(
    parts: PreferenceParts,
    private readonly spec: BaselineSpec,
    /** Whether the method reads β (RRHF does not: nothing of it is saved). */
    private readonly hasBeta: boolean,
    private readonly dist?: DistGroup,
  ) {
    super(parts)
    this.collectiveLoss = (spec.collective === true || spec.chosenNll === true) && dist !== undefined
  }

  readonly collectiveLoss: boolean

  private rows: readonly TokenizedPair[] = []

  override microBatch(rows: readonly TokenizedPair[], o: MicroBatchOptions<TokenizedPair>): Promise<MicroBatchOutput> {
    this.rows = rows
    return super.microBatch(rows, o)
  }

  protected async pairLoss(batch: PairBatch): Promise<{ loss: Tensor; record: Tensor }> {
    const stats = await this.sequenceStats(batch)
    const nllTokens = this.spec.chosenNll ? await this.globalNllTokens(stats.tokenCount, batch) : undefined
    const sums = { policy: stats.logps, tokens: stats.tokenCount, reference: stats.referenceLogps, inputError: stats.inputError, nllTokens }
    const out = await this.spec.loss(sums, this.beta.beta, { batch, rows: this.rows, method: this, dist: this.dist })
    nllTokens?.dispose()
    // The loss's graph keeps what its backward needs: every handle here can go (logps's would keep that graph, and the parameters, until a collection).
    for (const t of [stats.logps, stats.correct, stats.kl, stats.tokenCount, stats.referenceLogps, stats.inputError]) t?.dispose()
    return out
  }

  /**
   * On several ranks, the NLL's divisor (PairSums.nllTokens): the global micro-batch's chosen tokens
   * (an all-reduce on the device) × this rank's share of its pairs, as the engine weights each
   * rank's loss by that share. A stand-in rank (weighted 0) adds no tokens and divides by them all.
   */
  private async globalNllTokens(tokenCount: Tensor, batch: PairBatch): Promise<Tensor | undefined> {
    const share = batch.share
    if (!share || !this.dist) return undefined
    const pairs = share.standIn ? 0 : share.counts[share.rank]!
    const total = share.counts.reduce((a, b) => a + b, 0)
    const tokens = Tensor.tidy(() =>
      tokenCount
        .narrow(0, 0, tokenCount.shape[0]! / 2)
        .to('float64')
        .sum()
        .mul(pairs > 0 ? 1 : 0)
        .reshape([1]),
    )
    await this.dist.allreduce([tokens], { op: 'sum' })
    const divisor = Tensor.tidy(() => tokens.mul(pairs > 0 ? pairs / total : 1).reshape([]))
    tokens.dispose()
    return divisor
  }

  /** Metrics of the step's pairs, as TRL names them; every one a mean over the pairs. */
  override summarize(stats: readonly Float64Array[], _training: boolean): StepSummary {
    const k = BASELINE_RECORD_COLUMNS.length
    const rows = stats.flatMap((s) => Array.from({ length: s.length / k }, (_, i) => s.subarray(i * k, (i + 1) * k)))
    const col = (name: BaselineRecordColumn) => rows.map((r) => r[BASELINE_RECORD_COLUMNS.indexOf(name)]!)
    checkInputErrors(col('inputError'))
    const chosen = col('chosenRewards')
    const rejected = col('rejectedRewards')
    const margins = chosen.map((v, i) => v - rejected[i]!)
    const out: Metrics & { loss: number } = {
      loss: mean(col('loss')),
      'rewards/chosen': mean(chosen),
      'rewards/rejected': mean(rejected),
      'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
      'rewards/margins': mean(margins),
      'logps/chosen': mean(col('chosenLogps')),
      'logps/rejected': mean(col('rejectedLogps')),
    }
    for (const m of this.spec.metrics) out[m] = mean(col(METRIC_COLUMN[m]))
    return out
  }

  /** β is fixed for these methods: nothing moves after a step. */
  override afterStep(): Metrics {
    return {}
  }

  /** No β field for a method without β; baseline-specs.ts types that spec's state as empty. */
  override savedState(): BetaState {
    return this.hasBeta ? super.savedState() : ({} as BetaState)
  }
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length
}
