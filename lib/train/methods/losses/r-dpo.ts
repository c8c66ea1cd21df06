// R-DPO (Park, Rafailov, Ermon and Finn 2024, "Disentangling Length from Quality in Direct
// Preference Optimization", eq. 9): DPO with a length regulariser inside the sigmoid,
//   L = −log σ(β·[(S_w − S_ref,w) − (S_l − S_ref,l)] + α·(|y_w| − |y_l|)).
// The term comes from the reward r − α|y|: a longer chosen completion already counts towards
// the margin, so the policy gains nothing by growing its answers. TRL has no R-DPO.
import { type BaselineLoss, checkOption, type PairSums, pairRecord, splitPairSums } from './pair-sums'

export interface RDpoOptions {
  beta: number
  /** α, the length regulariser's weight per token. */
  alpha: number
}

export function rDpoLoss(sums: PairSums, o: RDpoOptions): BaselineLoss {
  checkOption('r-dpo', 'beta', o.beta, 'positive')
  checkOption('r-dpo', 'alpha', o.alpha, 'nonnegative')
  const s = splitPairSums('r-dpo', sums, true)
  const rw = s.chosen.sub(s.refChosen!).mul(o.beta)
  const rl = s.rejected.sub(s.refRejected!).mul(o.beta)
  const losses = rw.sub(rl).add(s.chosenTokens.sub(s.rejectedTokens).mul(o.alpha)).logSigmoid().neg()
  return {
    loss: losses.mean(),
    record: pairRecord(s, { chosenLogps: s.chosen, rejectedLogps: s.rejected, chosenRewards: rw, rejectedRewards: rl, loss: losses }),
  }
}
