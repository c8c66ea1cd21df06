// IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
// Preferences", eq. 17): squared distance of the log-ratio margin from 1/(2τ),
//   L = (h − 1/(2τ))²,  h = (ℓ_w − ℓ_ref,w) − (ℓ_l − ℓ_ref,l),
// with ℓ the per-token mean log-prob, as TRL's DPOTrainer computes it for loss_type 'ipo'.
import { type BaselineLoss, checkOption, type PairSums, pairRecord, perTokenMean, splitPairSums } from './pair-sums'

export interface IpoOptions {
  /** τ, the regularisation strength (TRL: beta). */
  tau: number
}

export function ipoLoss(sums: PairSums, o: IpoOptions): BaselineLoss {
  checkOption('ipo', 'tau', o.tau, 'positive')
  const s = splitPairSums('ipo', sums, true)
  const w = perTokenMean(s.chosen, s.chosenTokens)
  const l = perTokenMean(s.rejected, s.rejectedTokens)
  const rw = w.sub(perTokenMean(s.refChosen!, s.chosenTokens))
  const rl = l.sub(perTokenMean(s.refRejected!, s.rejectedTokens))
  const losses = rw
    .sub(rl)
    .sub(1 / (2 * o.tau))
    .pow(2)
  return {
    loss: losses.mean(),
    record: pairRecord(s, { chosenLogps: w, rejectedLogps: l, chosenRewards: rw.mul(o.tau), rejectedRewards: rl.mul(o.tau), loss: losses }),
  }
}
