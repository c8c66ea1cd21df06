// SLiC-HF (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
// eq. 1, with the chosen completion as its regularisation target): a hinge on the summed
// log-probs plus the chosen completions' NLL,
//   L = mean_i max(0, δ − (S_w,i − S_l,i)) + λ·NLL,  NLL = −Σ_i S_w,i / Σ_i |y_w,i|.
// TRL's loss_type 'hinge' with reference_free is β·max(0, 1/β − (S_w − S_l)), without the NLL.
import { type BaselineLoss, checkOption, chosenNll, type PairSums, pairRecord, relu, splitPairSums } from './pair-sums'

export interface SlicHfOptions {
  /** δ, the hinge's margin. */
  delta: number
  /** λ, the weight of the chosen completions' NLL. */
  lambda: number
}

export function slicHfLoss(sums: PairSums, o: SlicHfOptions): BaselineLoss {
  checkOption('slic-hf', 'delta', o.delta, 'positive')
  checkOption('slic-hf', 'lambda', o.lambda, 'nonnegative')
  const s = splitPairSums('slic-hf', sums, false)
  const hinge = relu(s.rejected.sub(s.chosen).add(o.delta))
  const nll = chosenNll(s)
  const shared = nll.mul(o.lambda)
  return {
    loss: hinge.mean().add(shared),
    record: pairRecord(s, { chosenLogps: s.chosen, rejectedLogps: s.rejected, chosenRewards: s.chosen, rejectedRewards: s.rejected, loss: hinge.add(shared), nll }),
  }
}
