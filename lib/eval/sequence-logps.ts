// Per-row masked log-probabilities from full logits: log π(y_t | y_<t) gathered at the labels,
// masked to the completion. SFT's cross-entropy is its negative token mean; the demo's sampled
// KL estimate uses its per-sequence sums under the policy and the reference.
import type { Tensor } from '../tensor'

/** [B, T] log-probabilities of `labels` (int64 [B, T]) under `logits` [B, T, V], times `lossMask`. */
export function maskedTokenLogps(logits: Tensor, labels: Tensor, lossMask: Tensor): Tensor {
  const lp = logits.logSoftmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
  return lp.mul(lossMask)
}

/** Per-row sums [B] (host, float64) of the masked label log-probabilities. */
export function sequenceLogpSums(logits: Tensor, labels: Tensor, lossMask: Tensor): Float64Array {
  const sums = maskedTokenLogps(logits.to('float32'), labels, lossMask).sum(1)
  return Float64Array.from(sums.toArray() as Float32Array)
}
