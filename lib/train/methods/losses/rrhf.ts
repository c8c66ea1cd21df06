// RRHF (Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback
// without tears", eqs. 1–3) for two ranked responses: a hinge on the length-normalised scores
// p = S/|y| (its length_penalty 1) plus fine-tuning on the better response,
//   L = mean_i max(0, p_l,i − p_w,i) + λ·NLL,  NLL = −Σ_i S_w,i / Σ_i |y_w,i|.
// TRL has no RRHF.
import { type BaselineLoss, checkOption, chosenNll, type PairSums, pairRecord, perTokenMean, relu, splitPairSums } from './pair-sums'

export interface RrhfOptions {
  /** λ, the weight of the fine-tuning term (the paper's L = L_rank + L_ft is λ = 1). */
  lambda: number
}

export function rrhfLoss(sums: PairSums, o: RrhfOptions): BaselineLoss {
  checkOption('rrhf', 'lambda', o.lambda, 'nonnegative')
  const s = splitPairSums('rrhf', sums, false)
  const w = perTokenMean(s.chosen, s.chosenTokens)
  const l = perTokenMean(s.rejected, s.rejectedTokens)
  const rank = relu(l.sub(w))
  const nll = chosenNll(s)
  const shared = nll.mul(o.lambda)
  return {
    loss: rank.mean().add(shared),
    record: pairRecord(s, { chosenLogps: w, rejectedLogps: l, chosenRewards: w, rejectedRewards: l, loss: rank.add(shared), nll }),
  }
}
