// Per-sequence masked log-probabilities, log π(y_t | y_<t) summed over the completion tokens.
// `modelSequenceStats` runs a model (and a reference) to its final hidden states and reduces them
// through the chunked lm_head op, so no [B,T,V] logits exist: what SFT, evaluation and the gold
// KL use. The logits forms stay for callers that already hold logits.
import { paddingLayout, type SequenceBatch } from '../data'
import { EdpoInputError } from '../core/errors'
import type { CausalLM } from '../model'
import { type SequenceStatsResult, sequenceStatsFromHiddenAsync } from '../core/ops'
import type { Tensor } from '../core/tensor'

/** What the op needs of a collated batch (pairs or SFT rows): ids, attention mask, labels, mask. */
export type LabelledRows = Pick<SequenceBatch, 'inputIds' | 'attentionMask' | 'labels' | 'lossMask'> &
  Partial<Pick<SequenceBatch, 'padded'>> & {
    /** The flat indices where lossMask is non-zero (collate gives them): spares the op a device read. */
    activeRows?: Tensor
  }

/**
 * Per-row sums [R] of `model`'s label log-probs (differentiable when `grad`), argmax hits and token
 * counts; with `reference`, also its log-probs and the exact token KL(π‖π_ref). Hidden states are
 * disposed before returning.
 */
export async function modelSequenceStats(model: CausalLM, batch: LabelledRows, o: { reference?: CausalLM; grad?: boolean } = {}): Promise<SequenceStatsResult> {
  const forward = paddingLayout(batch)
  const hidden = await model.forwardHiddenAsync(batch.inputIds, { ...forward, grad: o.grad ?? false })
  const referenceHidden = o.reference ? await o.reference.forwardHiddenAsync(batch.inputIds, { ...forward, grad: false }) : undefined
  const head = model.lmHead()
  const referenceHead = o.reference?.lmHead()
  try {
    if (referenceHead && referenceHead.finalLogitSoftcap !== head.finalLogitSoftcap) {
      throw new EdpoInputError(
        `reference model: final_logit_softcapping ${referenceHead.finalLogitSoftcap} differs from the policy's ${head.finalLogitSoftcap}`,
      )
    }
    return await sequenceStatsFromHiddenAsync({
      policyHidden: hidden,
      policyHead: head.weight,
      policyBias: head.bias,
      referenceHidden,
      referenceHead: referenceHead?.weight,
      referenceBias: referenceHead?.bias,
      labels: batch.labels,
      lossMask: batch.lossMask,
      activeRows: batch.activeRows,
      finalLogitSoftcap: head.finalLogitSoftcap,
    })
  } finally {
    // With grad, the autograd graph keeps what the backward needs; the handles can go.
    hidden.dispose()
    referenceHidden?.dispose()
    // At ZeRO-3 the heads' handles own their gathered units.
    head.weight.dispose()
    referenceHead?.weight.dispose()
  }
}

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
