// ops: the fused ε-DPO loss and its lower-level pieces, validated here before native code runs.
import { z } from 'zod'

import { EdpoInputError, native, nativeAsync } from './errors'
import { type NativeHiddenLossArgs, type NativeLossArgs, type NativeLossResult, type NativeStatsArgs, type NativeStatsResult, nativeAddon } from './native'
import { liveTensorSchema, Tensor } from './tensor'
import { formatZodError } from './validate'

export interface EpsilonDpoLossArgs {
  /** [2B,T,V] policy logits, chosen rows first; float32, bfloat16, float16 or float64. */
  policyLogits: Tensor
  /** [2B,T,V] reference logits, same dtype and device; never receives gradients. */
  referenceLogits: Tensor
  /** [2B,T] int64 next-token labels (already shifted); ignored where lossMask is 0. */
  labels: Tensor
  /** [2B,T] 1 on completion tokens, 0 elsewhere (bool, integer or float). */
  lossMask: Tensor
  /** KL coefficient β > 0 (the current global value; see spec §6 for its update). */
  beta: number
  /** Perturbation size ε in [0, 1); 0 gives exactly DPO. */
  epsilon: number
  /** Conservative label smoothing ℓ in [0, 0.5]; default 0. */
  labelSmoothing?: number
}

/** Outputs of ops.epsilonDpoLoss; per-pair tensors are [B]. */
export interface EpsilonDpoLossResult {
  /** Mean loss over pairs, differentiable w.r.t. policyLogits. */
  loss: Tensor
  /** s_i ∈ {-1, 0, +1} (int64): +1 relaxes the KL penalty for pair i, −1 tightens it. */
  steps: Tensor
  /** β_i = β / (1 + ε·s_i). */
  betas: Tensor
  chosenLogps: Tensor
  rejectedLogps: Tensor
  refChosenLogps: Tensor
  refRejectedLogps: Tensor
  chosenRewards: Tensor
  rejectedRewards: Tensor
  /** Mean raw policy logit over chosen completion tokens × vocabulary (a scalar; 0 without tokens). */
  meanChosenLogits: Tensor
  meanRejectedLogits: Tensor
}

export interface EpsilonDpoLossFromHiddenArgs {
  /** [2B,T,H] final hidden states of the policy (after the final norm), chosen rows first. */
  policyHidden: Tensor
  /** [V,H] the policy's lm_head weight (Hugging Face layout). */
  policyHead: Tensor
  policyBias?: Tensor
  /** [2B,T,H'] and [V,H'] for the reference; never receive gradients. */
  referenceHidden: Tensor
  referenceHead: Tensor
  referenceBias?: Tensor
  labels: Tensor
  lossMask: Tensor
  beta: number
  epsilon: number
  labelSmoothing?: number
  /** Gemma-2's final logit soft-capping c: logits = c·tanh(z/c). 0 or absent: none. */
  finalLogitSoftcap?: number
  /** Completion tokens per chunk; default ≈ 2^25 / V (128 MiB of fp32 logits per model). */
  chunkTokens?: number
}

export interface SequenceLogpsResult {
  /** Σ_t mask·log π(y_t) per row [2B] float64, differentiable w.r.t. policyLogits. */
  policy: Tensor
  reference: Tensor
  /** Sums under the perturbed logits (1+ε)·a − ε·b and (1−ε)·a + ε·b. */
  plus: Tensor
  minus: Tensor
  logitSum: Tensor
  tokenCount: Tensor
}

// A disposed or handle-less Tensor is rejected by name (an absent bias must be undefined, not a dead Tensor).
const tensor = liveTensorSchema
const finite = z.number({ error: 'must be a finite number' }).refine(Number.isFinite, 'must be a finite number')
const epsilonSchema = finite.refine((v) => v >= 0 && v < 1, 'must be in [0, 1)')
const tensorsSchema = z.object({
  policyLogits: tensor,
  referenceLogits: tensor,
  labels: tensor,
  lossMask: tensor,
})
const lossSchema = tensorsSchema
  .extend({
    beta: finite.refine((v) => v > 0, 'must be > 0'),
    epsilon: epsilonSchema,
    labelSmoothing: finite.refine((v) => v >= 0 && v <= 0.5, 'must be in [0, 0.5]').optional(),
  })
  .strict()
const sequenceSchema = tensorsSchema.extend({ epsilon: epsilonSchema }).strict()
const hiddenSchema = z
  .object({
    policyHidden: tensor,
    policyHead: tensor,
    policyBias: tensor.optional(),
    referenceHidden: tensor,
    referenceHead: tensor,
    referenceBias: tensor.optional(),
    labels: tensor,
    lossMask: tensor,
  })
  .extend({
    beta: finite.refine((v) => v > 0, 'must be > 0'),
    epsilon: epsilonSchema,
    labelSmoothing: finite.refine((v) => v >= 0 && v <= 0.5, 'must be in [0, 0.5]').optional(),
    finalLogitSoftcap: finite.refine((v) => v >= 0, 'must be >= 0').optional(),
    chunkTokens: z.number().int('must be an integer').min(1, 'must be >= 1').optional(),
  })
  .strict()

function parseArgs<T>(schema: z.ZodType<T>, args: unknown, op: string): T {
  const r = schema.safeParse(args)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, op))
  return r.data
}

function toNative(a: EpsilonDpoLossArgs): NativeLossArgs {
  return {
    policyLogits: a.policyLogits.handle,
    referenceLogits: a.referenceLogits.handle,
    labels: a.labels.handle,
    lossMask: a.lossMask.handle,
    beta: a.beta,
    epsilon: a.epsilon,
    labelSmoothing: a.labelSmoothing ?? 0,
  }
}

function fromNative(r: NativeLossResult): EpsilonDpoLossResult {
  return {
    loss: new Tensor(r.loss),
    steps: new Tensor(r.steps),
    betas: new Tensor(r.betas),
    chosenLogps: new Tensor(r.chosenLogps),
    rejectedLogps: new Tensor(r.rejectedLogps),
    refChosenLogps: new Tensor(r.refChosenLogps),
    refRejectedLogps: new Tensor(r.refRejectedLogps),
    chosenRewards: new Tensor(r.chosenRewards),
    rejectedRewards: new Tensor(r.rejectedRewards),
    meanChosenLogits: new Tensor(r.meanChosenLogits),
    meanRejectedLogits: new Tensor(r.meanRejectedLogits),
  }
}

/**
 * The ε-DPO loss (spec §2–§5) from full logits, in one fused pass per token row.
 * With `epsilon: 0` it is exactly DPO.
 */
export function epsilonDpoLoss(args: EpsilonDpoLossArgs): EpsilonDpoLossResult {
  const a = parseArgs(lossSchema, args, 'epsilonDpoLoss')
  return fromNative(native(() => nativeAddon().epsilonDpoLoss(toNative(a))))
}

/** epsilonDpoLoss on the thread pool: the JS thread stays free while it runs. */
export async function epsilonDpoLossAsync(args: EpsilonDpoLossArgs): Promise<EpsilonDpoLossResult> {
  const a = parseArgs(lossSchema, args, 'epsilonDpoLoss')
  return fromNative(await nativeAsync(() => nativeAddon().epsilonDpoLossAsync(toNative(a))))
}

function hiddenToNative(a: EpsilonDpoLossFromHiddenArgs): NativeHiddenLossArgs {
  return {
    policyHidden: a.policyHidden.handle,
    policyHead: a.policyHead.handle,
    policyBias: a.policyBias?.handle,
    referenceHidden: a.referenceHidden.handle,
    referenceHead: a.referenceHead.handle,
    referenceBias: a.referenceBias?.handle,
    labels: a.labels.handle,
    lossMask: a.lossMask.handle,
    beta: a.beta,
    epsilon: a.epsilon,
    labelSmoothing: a.labelSmoothing ?? 0,
    finalLogitSoftcap: a.finalLogitSoftcap ?? 0,
    chunkTokens: a.chunkTokens ?? 0,
  }
}

/**
 * The ε-DPO loss from hidden states and lm_head weights, chunk by chunk: neither model's [N,V]
 * logits exist in memory at once (peak extra memory O(chunkTokens·V + N)). Same outputs as
 * epsilonDpoLoss; the loss is differentiable w.r.t. policyHidden, policyHead and policyBias.
 * Prompt tokens (lossMask 0) are skipped before the matmul.
 */
export function epsilonDpoLossFromHidden(args: EpsilonDpoLossFromHiddenArgs): EpsilonDpoLossResult {
  const a = parseArgs(hiddenSchema, args, 'epsilonDpoLossFromHidden')
  return fromNative(native(() => nativeAddon().epsilonDpoLossFromHidden(hiddenToNative(a))))
}

/** epsilonDpoLossFromHidden on the thread pool. */
export async function epsilonDpoLossFromHiddenAsync(args: EpsilonDpoLossFromHiddenArgs): Promise<EpsilonDpoLossResult> {
  const a = parseArgs(hiddenSchema, args, 'epsilonDpoLossFromHidden')
  return fromNative(await nativeAsync(() => nativeAddon().epsilonDpoLossFromHiddenAsync(hiddenToNative(a))))
}

/** Per-sequence masked log-prob sums (spec §3) under the policy, reference and both perturbations. */
export function sequenceLogps(args: Omit<EpsilonDpoLossArgs, 'beta' | 'labelSmoothing'>): SequenceLogpsResult {
  const a = parseArgs(sequenceSchema, args, 'sequenceLogps')
  const r = native(() =>
    nativeAddon().sequenceLogps({
      policyLogits: a.policyLogits.handle,
      referenceLogits: a.referenceLogits.handle,
      labels: a.labels.handle,
      lossMask: a.lossMask.handle,
      epsilon: a.epsilon,
    }),
  )
  return {
    policy: new Tensor(r.policy),
    reference: new Tensor(r.reference),
    plus: new Tensor(r.plus),
    minus: new Tensor(r.minus),
    logitSum: new Tensor(r.logitSum),
    tokenCount: new Tensor(r.tokenCount),
  }
}

export interface SequenceStatsFromHiddenArgs {
  /** [R,T,H] final hidden states (any number of rows R: SFT examples, samples, or 2B stacked pairs). */
  policyHidden: Tensor
  /** [V,H] lm_head weight; receives gradients through `logps`. */
  policyHead: Tensor
  policyBias?: Tensor
  /** A reference model's hidden states and head (never differentiated): adds referenceLogps and kl. */
  referenceHidden?: Tensor
  referenceHead?: Tensor
  referenceBias?: Tensor
  /** [R,T] int64 next-token labels; ignored where lossMask is 0. */
  labels: Tensor
  /** [R,T] per-token weight (any real dtype). */
  lossMask: Tensor
  finalLogitSoftcap?: number
  chunkTokens?: number
}

/** Per-sequence sums [R] (float64) over the masked tokens. */
export interface SequenceStatsResult {
  /** Σ_t mask·log π(y_t), differentiable w.r.t. policyHidden/policyHead/policyBias (−SFT loss × tokens). */
  logps: Tensor
  /** Σ_t mask·[argmax π = y_t]: token accuracy numerator. */
  correct: Tensor
  tokenCount: Tensor
  /** With a reference: Σ_t mask·log π_ref(y_t). */
  referenceLogps?: Tensor
  /** With a reference: Σ_t mask·KL(π(·|t) ‖ π_ref(·|t)), exact over the vocabulary. */
  kl?: Tensor
}

const statsSchema = z
  .object({
    policyHidden: tensor,
    policyHead: tensor,
    policyBias: tensor.optional(),
    referenceHidden: tensor.optional(),
    referenceHead: tensor.optional(),
    referenceBias: tensor.optional(),
    labels: tensor,
    lossMask: tensor,
    finalLogitSoftcap: finite.optional(),
    chunkTokens: z.number().int('must be an integer').min(1, 'must be >= 1').optional(),
  })
  .strict()

function statsToNative(a: SequenceStatsFromHiddenArgs): NativeStatsArgs {
  return {
    policyHidden: a.policyHidden.handle,
    policyHead: a.policyHead.handle,
    policyBias: a.policyBias?.handle,
    referenceHidden: a.referenceHidden?.handle,
    referenceHead: a.referenceHead?.handle,
    referenceBias: a.referenceBias?.handle,
    labels: a.labels.handle,
    lossMask: a.lossMask.handle,
    finalLogitSoftcap: a.finalLogitSoftcap ?? 0,
    chunkTokens: a.chunkTokens ?? 0,
  }
}

function statsFromNative(r: NativeStatsResult): SequenceStatsResult {
  return {
    logps: new Tensor(r.logps),
    correct: new Tensor(r.correct),
    tokenCount: new Tensor(r.tokenCount),
    ...(r.referenceLogps ? { referenceLogps: new Tensor(r.referenceLogps) } : {}),
    ...(r.kl ? { kl: new Tensor(r.kl) } : {}),
  }
}

/**
 * Per-sequence log-probs from hidden states and the lm_head, chunk by chunk (no [R,T,V] logits):
 * SFT's loss is −Σ logps / Σ tokenCount; with a reference it also gives the reference's log-probs
 * and the exact token KL, for evaluation.
 */
export function sequenceStatsFromHidden(args: SequenceStatsFromHiddenArgs): SequenceStatsResult {
  const a = parseArgs(statsSchema, args, 'sequenceStatsFromHidden')
  return statsFromNative(native(() => nativeAddon().sequenceStatsFromHidden(statsToNative(a))))
}

/** sequenceStatsFromHidden on the thread pool. */
export async function sequenceStatsFromHiddenAsync(args: SequenceStatsFromHiddenArgs): Promise<SequenceStatsResult> {
  const a = parseArgs(statsSchema, args, 'sequenceStatsFromHidden')
  return statsFromNative(await nativeAsync(() => nativeAddon().sequenceStatsFromHiddenAsync(statsToNative(a))))
}
