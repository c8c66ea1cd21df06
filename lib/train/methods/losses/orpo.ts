// ORPO (Hong, Lee and Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference
// Model", eqs. 6–7): the chosen completions' NLL plus a log odds-ratio term on per-token mean
// log-probs ℓ = S/|y|, odds(y) = p/(1 − p) with p = e^ℓ,
//   L = NLL − λ·mean_i log σ(log odds(y_w,i) − log odds(y_l,i)),
// as TRL's ORPOTrainer computes it (λ is its beta; NLL the token mean over the chosen completions).
import { Tensor } from '../../../core/tensor'
import { type BaselineLoss, checkOption, chosenNll, log1mExp, type PairSums, pairRecord, perTokenMean, splitPairSums } from './pair-sums'

export interface OrpoOptions {
  /** λ, the weight of the odds-ratio term (TRL: beta). */
  lambda: number
}

/**
 * ℓ is capped just below 0 (p < 1) before the odds: a completion the model already emits with
 * certainty has infinite odds, where TRL's loss becomes NaN; here its odds term is constant instead.
 */
export const ORPO_MAX_MEAN_LOGP = -1e-6

export function orpoLoss(sums: PairSums, o: OrpoOptions): BaselineLoss {
  checkOption('orpo', 'lambda', o.lambda, 'positive')
  const s = splitPairSums('orpo', sums, false)
  const capped = (x: Tensor) => x.where(x.lt(ORPO_MAX_MEAN_LOGP), Tensor.full(x.shape, ORPO_MAX_MEAN_LOGP, { dtype: 'float64', device: x.device }))
  const w = perTokenMean(s.chosen, s.chosenTokens)
  const l = perTokenMean(s.rejected, s.rejectedTokens)
  const wc = capped(w)
  const lc = capped(l)
  const logOdds = wc.sub(log1mExp(wc)).sub(lc.sub(log1mExp(lc)))
  const ratio = logOdds.logSigmoid()
  const nll = chosenNll(s)
  const losses = ratio.mul(-o.lambda).add(nll)
  return {
    loss: losses.mean(),
    record: pairRecord(s, {
      chosenLogps: w,
      rejectedLogps: l,
      chosenRewards: w.mul(o.lambda),
      rejectedRewards: l.mul(o.lambda),
      loss: losses,
      nll,
      logOdds,
      logOddsRatio: ratio,
    }),
  }
}
