// Per-step metrics (spec §7, names as TRL logs them), gathered over the micro-batches of one
// optimizer step (or over an evaluation pass) from the fused op's outputs.
import type { EpsilonDpoLossResult } from '../ops'
import type { Metrics } from './metrics-log'

function values(t: { toArray(): ArrayLike<number | bigint> }): number[] {
  return Array.from(t.toArray() as ArrayLike<number | bigint>, Number)
}

export class StepMetrics {
  private chosen: number[] = []
  private rejected: number[] = []
  private chosenLogps: number[] = []
  private rejectedLogps: number[] = []
  private steps: number[] = []
  private losses: number[] = []
  private chosenLogits: number[] = []
  private rejectedLogits: number[] = []
  tokens = 0

  /** One micro-batch's outputs and its number of input tokens (both models' inputs count once). */
  add(out: EpsilonDpoLossResult, tokens: number): void {
    this.chosen.push(...values(out.chosenRewards))
    this.rejected.push(...values(out.rejectedRewards))
    this.chosenLogps.push(...values(out.chosenLogps))
    this.rejectedLogps.push(...values(out.rejectedLogps))
    this.steps.push(...values(out.steps))
    this.losses.push(out.loss.item())
    this.chosenLogits.push(out.meanChosenLogits.item())
    this.rejectedLogits.push(out.meanRejectedLogits.item())
    this.tokens += tokens
  }

  get pairs(): number {
    return this.chosen.length
  }

  /** Mean loss over micro-batches (each already a mean over its pairs). */
  get loss(): number {
    return mean(this.losses)
  }

  summary(prefix = ''): Metrics {
    const margins = this.chosen.map((c, i) => c - this.rejected[i]!)
    const n = this.steps.length
    const out: Metrics = {
      loss: this.loss,
      'rewards/chosen': mean(this.chosen),
      'rewards/rejected': mean(this.rejected),
      'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
      'rewards/margins': mean(margins),
      'logps/chosen': mean(this.chosenLogps),
      'logps/rejected': mean(this.rejectedLogps),
      'logits/chosen': mean(this.chosenLogits),
      'logits/rejected': mean(this.rejectedLogits),
      'kl/p_epsilon_steps': n > 0 ? this.steps.filter((s) => s > 0).length / n : 0,
      'kl/n_epsilon_steps': n > 0 ? this.steps.filter((s) => s < 0).length / n : 0,
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [prefix + k, v]))
  }
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length
}
