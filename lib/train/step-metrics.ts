// Per-step preference metrics (spec §7, names as TRL logs them), from the host values of the
// micro-batches of one optimizer step (or of an evaluation pass), read back once per step.
import type { Metrics } from './metrics-log'

/** One micro-batch on the host: per-pair values, and the op's scalars. */
export interface PairStats {
  chosenLogps: ArrayLike<number>
  rejectedLogps: ArrayLike<number>
  chosenRewards: ArrayLike<number>
  rejectedRewards: ArrayLike<number>
  /** s_i ∈ {-1, 0, +1}. */
  steps: ArrayLike<number>
  /** The micro-batch's mean loss over its pairs. */
  loss: number
  meanChosenLogits: number
  meanRejectedLogits: number
}

/** loss and logits/* average the micro-batches (each already a mean); the rest average all pairs. */
export function preferenceMetrics(batches: readonly PairStats[]): Metrics & { loss: number } {
  const all = (key: 'chosenLogps' | 'rejectedLogps' | 'chosenRewards' | 'rejectedRewards' | 'steps') => batches.flatMap((b) => Array.from(b[key]))
  const chosen = all('chosenRewards')
  const rejected = all('rejectedRewards')
  const margins = chosen.map((c, i) => c - rejected[i]!)
  const steps = all('steps')
  const n = steps.length
  return {
    loss: mean(batches.map((b) => b.loss)),
    'rewards/chosen': mean(chosen),
    'rewards/rejected': mean(rejected),
    'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
    'rewards/margins': mean(margins),
    'logps/chosen': mean(all('chosenLogps')),
    'logps/rejected': mean(all('rejectedLogps')),
    'logits/chosen': mean(batches.map((b) => b.meanChosenLogits)),
    'logits/rejected': mean(batches.map((b) => b.meanRejectedLogits)),
    'kl/p_epsilon_steps': n > 0 ? steps.filter((s) => s > 0).length / n : 0,
    'kl/n_epsilon_steps': n > 0 ? steps.filter((s) => s < 0).length / n : 0,
  }
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length
}
