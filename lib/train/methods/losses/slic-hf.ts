// SLiC-HF (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
// eq. 1, with the chosen completion as its regularisation target): a hinge on the summed
// log-probs plus the chosen completions' NLL. The hinge is written as TRL's loss_type 'hinge'
// (reference-free) writes it, max(0, 1 − β·Δ) = β·max(0, δ − Δ) with the paper's margin δ = 1/β:
//   L = mean_i max(0, 1 − β·(S_w,i − S_l,i)) + λ·NLL,  NLL = −Σ_i S_w,i / Σ_i |y_w,i|.
import { type BaselineLoss, checkOption, chosenNll, type PairSums, pairRecord, relu, splitPairSums } from './pair-sums'

export interface SlicHfOptions {
  /** β, the hinge's scale: the paper's margin δ is 1/β (TRL's hinge β). */
  beta: number
  /** λ, the weight of the chosen completions' NLL. */
  lambda: number
}

export function slicHfLoss(sums: PairSums, o: SlicHfOptions): BaselineLoss {
  checkOption('slic-hf', 'beta', o.beta, 'positive')
  checkOption('slic-hf', 'lambda', o.lambda, 'nonnegative')
  const s = splitPairSums('slic-hf', sums, false)
  const hinge = relu(s.rejected.sub(s.chosen).mul(o.beta).add(1))
  const nll = chosenNll(s)
  const shared = nll.mul(o.lambda)
  return {
    loss: hinge.mean().add(shared),
    record: pairRecord(s, {
      chosenLogps: s.chosen,
      rejectedLogps: s.rejected,
      chosenRewards: s.chosen.mul(o.beta),
      rejectedRewards: s.rejected.mul(o.beta),
      loss: hinge.add(shared),
      nll,
    }),
  }
}
