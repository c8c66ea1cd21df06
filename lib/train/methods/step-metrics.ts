// Per-step preference metrics (spec §7, names as TRL logs them), from host copies of the ε-DPO
// op's per-pair records (lib/pair-record.ts) of the micro-batches of one optimizer step, or of an
// evaluation pass. The records stay on the device until the step ends; one read brings them all.
import type { PairRecordColumns } from '../../core/pair-record'
import type { Metrics } from '../metrics-log'

/**
 * Every metric is a mean over all pairs of the step, so batches of different sizes weigh by their
 * pairs (Hugging Face's eval_loss does the same); logits/* are token-weighted.
 */
export function preferenceMetrics(batches: readonly PairRecordColumns[]): Metrics & { loss: number } {
  const all = (key: keyof Omit<PairRecordColumns, 'pairs'>) => batches.flatMap((b) => Array.from(b[key]))
  const chosen = all('chosenRewards')
  const rejected = all('rejectedRewards')
  const margins = chosen.map((c, i) => c - rejected[i]!)
  const steps = all('step')
  const n = steps.length
  return {
    loss: mean(all('loss')),
    'rewards/chosen': mean(chosen),
    'rewards/rejected': mean(rejected),
    'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
    'rewards/margins': mean(margins),
    'logps/chosen': mean(all('chosenLogps')),
    'logps/rejected': mean(all('rejectedLogps')),
    'logits/chosen': ratio(sum(all('chosenLogitSum')), sum(all('chosenTokens'))),
    'logits/rejected': ratio(sum(all('rejectedLogitSum')), sum(all('rejectedTokens'))),
    'kl/p_epsilon_steps': n > 0 ? steps.filter((s) => s > 0).length / n : 0,
    'kl/n_epsilon_steps': n > 0 ? steps.filter((s) => s < 0).length / n : 0,
  }
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : sum(xs) / xs.length
}

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : 0
}
