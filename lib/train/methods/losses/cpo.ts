// CPO (Xu et al. 2024, "Contrastive Preference Optimization", eq. 3 with its NLL term):
// reference-free DPO on summed log-probs plus behaviour cloning of the chosen completions,
//   L = mean_i −log σ(β·(S_w,i − S_l,i)) + λ·NLL,  NLL = −Σ_i S_w,i / Σ_i |y_w,i|,
// as TRL's CPOTrainer computes it for loss_type 'sigmoid' (λ is its cpo_alpha).
import { type BaselineLoss, checkOption, chosenNll, type PairSums, pairRecord, splitPairSums } from './pair-sums'

export interface CpoOptions {
  beta: number
  /** λ, the weight of the chosen completions' NLL (TRL: cpo_alpha). */
  alpha: number
}

export function cpoLoss(sums: PairSums, o: CpoOptions): BaselineLoss {
  checkOption('cpo', 'beta', o.beta, 'positive')
  checkOption('cpo', 'alpha', o.alpha, 'nonnegative')
  const s = splitPairSums('cpo', sums, false)
  const pairwise = s.chosen.sub(s.rejected).mul(o.beta).logSigmoid().neg()
  const nll = chosenNll(s)
  const shared = nll.mul(o.alpha)
  return {
    loss: pairwise.mean().add(shared),
    record: pairRecord(s, {
      chosenLogps: s.chosen,
      rejectedLogps: s.rejected,
      chosenRewards: s.chosen.mul(o.beta),
      rejectedRewards: s.rejected.mul(o.beta),
      loss: pairwise.add(shared),
      nll,
    }),
  }
}
