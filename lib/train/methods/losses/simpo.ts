// SimPO (Meng, Xia and Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free
// Reward", eq. 6): reference-free, length-normalised, with a target margin γ,
//   L = −log σ(β·ℓ_w − β·ℓ_l − γ),  ℓ = S/|y| (per-token mean log-prob),
// as TRL's CPOTrainer computes it for loss_type 'simpo' with cpo_alpha 0.
import { type BaselineLoss, checkOption, type PairSums, pairRecord, perTokenMean, splitPairSums } from './pair-sums'

export interface SimpoOptions {
  /** β, the reward scale. */
  beta: number
  /** γ, the target reward margin (TRL: simpo_gamma). */
  gamma: number
}

export function simpoLoss(sums: PairSums, o: SimpoOptions): BaselineLoss {
  checkOption('simpo', 'beta', o.beta, 'positive')
  checkOption('simpo', 'gamma', o.gamma, 'nonnegative')
  const s = splitPairSums('simpo', sums, false)
  const w = perTokenMean(s.chosen, s.chosenTokens)
  const l = perTokenMean(s.rejected, s.rejectedTokens)
  const losses = w.sub(l).mul(o.beta).sub(o.gamma).logSigmoid().neg()
  return {
    loss: losses.mean(),
    record: pairRecord(s, { chosenLogps: w, rejectedLogps: l, chosenRewards: w.mul(o.beta), rejectedRewards: l.mul(o.beta), loss: losses }),
  }
}
