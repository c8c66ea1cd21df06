// KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", eq. 7)
// on paired data as TRL's KTOTrainer treats it: each pair is one desirable example (prompt,
// chosen) and one undesirable one (prompt, rejected), and the reference point z₀ is the batch's
// KL estimate from mismatched completions (each prompt with another example's completion),
//   z₀ = max(0, mean_j (S_KL,j − S_ref,KL,j))            (no gradient)
//   L  = mean over the 2B examples of  λ_D·(1 − σ(β·(r_w − z₀)))  and  λ_U·(1 − σ(β·(z₀ − r_l))),
// r = S − S_ref (summed log-ratios).
import { EdpoInputError } from '../../../core/errors'
import type { Tensor } from '../../../core/tensor'
import { type BaselineLoss, checkOption, type PairSums, pairRecord, splitPairSums } from './pair-sums'

export interface KtoOptions {
  beta: number
  /** λ_D (TRL: desirable_weight). */
  desirableWeight: number
  /** λ_U (TRL: undesirable_weight). */
  undesirableWeight: number
}

/** The mismatched rows' sums under the policy and the reference, any number of rows (both alike). */
export interface KtoKlSums {
  policy: Tensor
  reference: Tensor
}

export function ktoLoss(sums: PairSums, kl: KtoKlSums, o: KtoOptions): BaselineLoss {
  checkOption('kto', 'beta', o.beta, 'positive')
  checkOption('kto', 'desirableWeight', o.desirableWeight, 'nonnegative')
  checkOption('kto', 'undesirableWeight', o.undesirableWeight, 'nonnegative')
  const s = splitPairSums('kto', sums, true)
  const n = kl.policy.shape
  if (n.length !== 1 || n[0]! < 1 || kl.reference.shape.length !== 1 || kl.reference.shape[0] !== n[0])
    throw new EdpoInputError(
      `kto: the KL rows' policy and reference sums must be two [n] vectors (n >= 1) alike; got [${n.join(', ')}] and [${kl.reference.shape.join(', ')}]`,
    )
  const z0 = kl.policy.detach().sub(kl.reference.detach()).mean()
  const zero = z0.maskedFill(z0.lt(0), 0)
  const rw = s.chosen.sub(s.refChosen!)
  const rl = s.rejected.sub(s.refRejected!)
  const desirable = rw.sub(zero).mul(o.beta).sigmoid().neg().add(1).mul(o.desirableWeight)
  const undesirable = rl.neg().add(zero).mul(o.beta).sigmoid().neg().add(1).mul(o.undesirableWeight)
  // The mean over 2B examples is the mean over pairs of each pair's two halves.
  const losses = desirable.add(undesirable).div(2)
  return {
    loss: losses.mean(),
    record: pairRecord(s, {
      chosenLogps: s.chosen,
      rejectedLogps: s.rejected,
      chosenRewards: rw.mul(o.beta),
      rejectedRewards: rl.mul(o.beta),
      loss: losses,
      kl: zero,
    }),
  }
}
