// Per-step metrics (spec §7, names as TRL logs them), gathered over the micro-batches of one
// optimizer step (or over an evaluation pass) from the fused op's per-pair records. The records
// stay on the device until the step ends; then one read brings them all to the host.
import { checkInputErrors, type PairRecordColumns, pairRecordColumns } from '../pair-record'
import { Tensor } from '../tensor'
import type { Metrics } from './metrics-log'

export class StepMetrics {
  private records: Tensor[] = []
  private batchPairs: number[] = []
  tokens = 0

  /** One micro-batch's record ([B, k], kept as is: no host read) and its number of input tokens. */
  add(record: Tensor, tokens: number): void {
    this.records.push(record)
    this.batchPairs.push(record.shape[0]!)
    this.tokens += tokens
  }

  /**
   * Every kept record, read to the host at once (the step's one sync), its input-error flags
   * checked; the device copies are freed. Undefined when nothing was added.
   */
  read(): PairRecordColumns | undefined {
    if (this.records.length === 0) return undefined
    const all = this.records.length === 1 ? this.records[0]! : Tensor.cat(this.records, 0)
    const host = pairRecordColumns(Float64Array.from(all.toArray() as Float64Array))
    if (all !== this.records[0]) all.dispose()
    for (const r of this.records) r.dispose()
    this.records = []
    checkInputErrors(host.inputError)
    return host
  }

  /** Metrics of a host copy from read(): the loss is the mean of the micro-batches' mean losses. */
  summary(r: PairRecordColumns | undefined, prefix = ''): Metrics {
    const n = r?.pairs ?? 0
    const losses: number[] = []
    let start = 0
    for (const b of this.batchPairs) {
      losses.push(mean(r!.loss.subarray(start, start + b)))
      start += b
    }
    const margins = r ? r.chosenRewards.map((c, i) => c - r.rejectedRewards[i]!) : new Float64Array()
    const out: Metrics = {
      loss: mean(losses),
      'rewards/chosen': mean(r?.chosenRewards),
      'rewards/rejected': mean(r?.rejectedRewards),
      'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
      'rewards/margins': mean(margins),
      'logps/chosen': mean(r?.chosenLogps),
      'logps/rejected': mean(r?.rejectedLogps),
      // Token-weighted over every pair of the step: Σ per-token mean logits / Σ tokens.
      'logits/chosen': ratio(sum(r?.chosenLogitSum), sum(r?.chosenTokens)),
      'logits/rejected': ratio(sum(r?.rejectedLogitSum), sum(r?.rejectedTokens)),
      'kl/p_epsilon_steps': n > 0 ? r!.step.filter((s) => s > 0).length / n : 0,
      'kl/n_epsilon_steps': n > 0 ? r!.step.filter((s) => s < 0).length / n : 0,
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [prefix + k, v]))
  }
}

function sum(xs: ArrayLike<number> | undefined): number {
  let s = 0
  for (let i = 0; i < (xs?.length ?? 0); i++) s += xs![i]!
  return s
}

function mean(xs: ArrayLike<number> | undefined): number {
  return xs && xs.length > 0 ? sum(xs) / xs.length : 0
}

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : 0
}
