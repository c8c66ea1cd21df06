// Per-row masked log-probabilities from full logits: log π(y_t | y_<t) gathered at the labels,
// masked to the completion. SFT's cross-entropy is its negative token mean; the demo's sampled
// KL estimate uses its per-sequence sums under the policy and the reference.
import type { Tensor } from '../tensor'

/**
 * [B, T] log-probabilities of `labels` (int64 [B, T]) under `logits` [B, T, V], times `lossMask`.
 * bf16/fp16 logits are widened to fp32 first (differentiably): a log-softmax in bf16 loses the
 * small differences the loss is made of.
 */
export function maskedTokenLogps(logits: Tensor, labels: Tensor, lossMask: Tensor): Tensor {
  const wide = logits.dtype === 'float32' || logits.dtype === 'float64' ? logits : logits.to('float32')
  const lp = wide.logSoftmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
  return lp.mul(lossMask)
}

/** Per-row sums [B] (host, float64) of the masked label log-probabilities. */
export function sequenceLogpSums(logits: Tensor, labels: Tensor, lossMask: Tensor): Float64Array {
  // Summed in float64: long sequences add up many small terms.
  const sums = maskedTokenLogps(logits, labels, lossMask).to('float64').sum(1)
  return Float64Array.from(sums.toArray() as Float64Array)
}
