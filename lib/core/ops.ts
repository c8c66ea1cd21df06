// ops: the native ops as typed functions. Each op is declared once, in C++ (csrc/js_op_table.h:
// arguments, results, docs); lib/core/ops-generated.ts is generated from that table, and one wrapper
// turns a declaration into `op(args)` and `opAsync(args)`. The ops check every argument themselves
// (errors name the argument: EdpoInputError for what the caller passed).
import { native, nativeAsync } from './errors'
import { nativeAddon, type NativeTensor } from './native'
import type * as generated from './ops-generated'
import { pairColumn, type PairRecordColumn } from './pair-record'
import { Tensor } from './tensor'

/** Arguments of ops.adamwStep. */
export type AdamwStepArgs = generated.AdamwStepArgs<Tensor>
/** Arguments of ops.epsilonDpoLoss. */
export type EpsilonDpoLossArgs = generated.EpsilonDpoLossArgs<Tensor>
/** Arguments of ops.epsilonDpoLossFromHidden. */
export type EpsilonDpoLossFromHiddenArgs = generated.EpsilonDpoLossFromHiddenArgs<Tensor>
/** What the native ε-DPO ops return (ops wraps it in EpsilonDpoLossResult). */
export type EpsilonDpoLossOutputs = generated.EpsilonDpoLossOutputs<Tensor>
/** Arguments of ops.sequenceLogps. */
export type SequenceLogpsArgs = generated.SequenceLogpsArgs<Tensor>
/** Outputs of ops.sequenceLogps. */
export type SequenceLogpsOutputs = generated.SequenceLogpsOutputs<Tensor>
/** Arguments of ops.sequenceStatsFromHidden. */
export type SequenceStatsFromHiddenArgs = generated.SequenceStatsFromHiddenArgs<Tensor>
/** Outputs of ops.sequenceStatsFromHidden. */
export type SequenceStatsFromHiddenOutputs = generated.SequenceStatsFromHiddenOutputs<Tensor>
export {
  checkInputErrors,
  INPUT_ERRORS,
  PAIR_RECORD_COLUMNS,
  pairColumn,
  type PairRecordColumn,
  type PairRecordColumns,
  pairRecordColumns,
} from './pair-record'
/** Outputs of ops.sequenceLogps: per-row [2B] float64 sums. */
export type SequenceLogpsResult = SequenceLogpsOutputs
/** Outputs of ops.sequenceStatsFromHidden: per-sequence sums [R] (float64) over the masked tokens. */
export type SequenceStatsResult = SequenceStatsFromHiddenOutputs

/** Every object-call op's arguments and outputs, with Tensors. @internal */
export type OpTypes = generated.OpTypes<Tensor>
type OpName = keyof OpTypes
type RawOutputs = Record<string, NativeTensor | NativeTensor[] | undefined>

// Tensors travel as their handles; anything else (a number, a fake or foreign Tensor, a wrong
// type, a non-object in place of the argument object) goes as it is, for the op's reader to
// accept or reject by name.
function toHandles(args: unknown): unknown {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return args
  const handle = (v: unknown) => (v instanceof Tensor && (v as { handle?: unknown }).handle !== undefined ? v.handle : v)
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k, Array.isArray(v) ? v.map(handle) : handle(v)]))
}

function toTensors<N extends OpName>(raw: RawOutputs): OpTypes[N]['outputs'] {
  const out: Record<string, Tensor | Tensor[]> = {}
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) out[k] = Array.isArray(v) ? v.map((h) => new Tensor(h)) : new Tensor(v)
  return out as unknown as OpTypes[N]['outputs']
}

/** 'sync' runs an op on the JS thread, 'async' on the thread pool. @internal */
export type OpMode = 'sync' | 'async'
/** What runOp returns in a mode: the op's outputs, or a promise of them. @internal */
export type OpReturn<N extends OpName, M extends OpMode> = M extends 'sync' ? OpTypes[N]['outputs'] : Promise<OpTypes[N]['outputs']>

/**
 * Runs one declared op (`name` or `nameAsync` on the addon) with Tensors in and out; the library's
 * own plumbing (the model and safetensors call it).
 * @internal
 */
export function runOp<N extends OpName, M extends OpMode>(name: N, args: OpTypes[N]['args'], mode: M): OpReturn<N, M> {
  const call = (suffix: string) => (nativeAddon() as unknown as Record<string, (args: unknown) => unknown>)[name + suffix]!(toHandles(args))
  if (mode === 'sync') return toTensors<N>(native(() => call('') as RawOutputs)) as OpReturn<N, M>
  return nativeAsync(() => call('Async') as Promise<RawOutputs>).then((raw) => toTensors<N>(raw)) as OpReturn<N, M>
}

/** One declared op as a synchronous function and an Async one (on the thread pool). */
function defineOp<N extends OpName, R>(name: N, wrap: (outputs: OpTypes[N]['outputs']) => R) {
  return {
    sync: (args: OpTypes[N]['args']): R => wrap(runOp(name, args, 'sync')),
    async: async (args: OpTypes[N]['args']): Promise<R> => wrap(await runOp(name, args, 'async')),
  }
}

/** The per-pair fields of an ε-DPO result: each a [B] view of one record column, in the loss dtype. */
export interface EpsilonDpoLossResult {
  /** β_i = β / (1 + ε·s_i). */
  readonly betas: Tensor
  /** S(chosen): the policy's summed completion log-probs. */
  readonly chosenLogps: Tensor
  readonly rejectedLogps: Tensor
  /** S_ref(chosen): the reference's. */
  readonly refChosenLogps: Tensor
  readonly refRejectedLogps: Tensor
  /** β_i·(S − S_ref) of the chosen completion. */
  readonly chosenRewards: Tensor
  readonly rejectedRewards: Tensor
  /** L_i per pair. */
  readonly losses: Tensor
}

// Field name → record column, for the views above (defined once on the prototype, below the class).
const COLUMN_VIEWS = {
  betas: 'beta',
  chosenLogps: 'chosenLogps',
  rejectedLogps: 'rejectedLogps',
  refChosenLogps: 'refChosenLogps',
  refRejectedLogps: 'refRejectedLogps',
  chosenRewards: 'chosenRewards',
  rejectedRewards: 'rejectedRewards',
  losses: 'loss',
} as const satisfies Record<string, PairRecordColumn>

/**
 * Outputs of the ε-DPO ops: the loss and the per-pair `record` ([B, k] float64 on the op's
 * device, columns PAIR_RECORD_COLUMNS). The per-pair fields are views of the record, computed when
 * read (each a new Tensor; nothing is copied to the host): keep `record` to read a step at once.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface types the column views that COLUMN_VIEWS defines on the prototype below
export class EpsilonDpoLossResult {
  /** Mean loss over pairs, differentiable w.r.t. the policy's inputs. */
  readonly loss: Tensor
  /** [B, k] float64, one row per pair: see PAIR_RECORD_COLUMNS. */
  readonly record: Tensor

  /** @internal */
  constructor(outputs: EpsilonDpoLossOutputs) {
    this.loss = outputs.loss
    this.record = outputs.record
  }

  /** One record column [B], in the loss dtype. */
  column(name: PairRecordColumn): Tensor {
    const c = pairColumn(name)
    return this.record.narrow(1, c, 1).squeeze(1).to(this.loss.dtype)
  }

  /** s_i ∈ {-1, 0, +1} (int64): +1 relaxes the KL penalty for pair i, −1 tightens it. */
  get steps(): Tensor {
    return this.record.narrow(1, pairColumn('step'), 1).squeeze(1).to('int64')
  }
  /** Mean raw policy logit over chosen completion tokens × vocabulary (a scalar; 0 without tokens). */
  get meanChosenLogits(): Tensor {
    return this.meanLogits('chosenLogitSum', 'chosenTokens')
  }
  /** The same over the rejected completions. */
  get meanRejectedLogits(): Tensor {
    return this.meanLogits('rejectedLogitSum', 'rejectedTokens')
  }

  /** Frees the loss and the record now rather than at garbage collection. */
  dispose(): void {
    this.loss.dispose()
    this.record.dispose()
  }

  private meanLogits(sums: PairRecordColumn, tokens: PairRecordColumn): Tensor {
    const col = (name: PairRecordColumn) => this.record.narrow(1, pairColumn(name), 1).sum()
    const n = col(tokens)
    // Σ sums is 0 when there are no tokens, so dividing by max(n, 1) gives 0 there.
    return col(sums)
      .div(n.maskedFill(n.eq(0), 1))
      .to(this.loss.dtype)
  }
}

for (const [field, column] of Object.entries(COLUMN_VIEWS)) {
  Object.defineProperty(EpsilonDpoLossResult.prototype, field, {
    get(this: EpsilonDpoLossResult) {
      return this.column(column)
    },
  })
}

const lossOp = defineOp('epsilonDpoLoss', (o) => new EpsilonDpoLossResult(o))
const hiddenLossOp = defineOp('epsilonDpoLossFromHidden', (o) => new EpsilonDpoLossResult(o))
const sequenceLogpsOp = defineOp('sequenceLogps', (o) => o)
const statsOp = defineOp('sequenceStatsFromHidden', (o) => o)
const adamwOp = defineOp('adamwStep', () => undefined)

/**
 * The ε-DPO loss (spec §2–§5) from full logits, in one fused pass per token row.
 * With `epsilon: 0` it is exactly DPO.
 */
export const epsilonDpoLoss: (args: EpsilonDpoLossArgs) => EpsilonDpoLossResult = lossOp.sync
/** epsilonDpoLoss on the thread pool: the JS thread stays free while it runs. */
export const epsilonDpoLossAsync: (args: EpsilonDpoLossArgs) => Promise<EpsilonDpoLossResult> = lossOp.async

/**
 * The ε-DPO loss from hidden states and lm_head weights, chunk by chunk: neither model's [N,V]
 * logits exist in memory at once (peak extra memory O(chunkTokens·V + N)). Same outputs as
 * epsilonDpoLoss; the loss is differentiable w.r.t. policyHidden, policyHead and policyBias.
 * Prompt tokens (lossMask 0) are skipped before the matmul (pass `activeRows` to skip the device read that finds them).
 */
export const epsilonDpoLossFromHidden: (args: EpsilonDpoLossFromHiddenArgs) => EpsilonDpoLossResult = hiddenLossOp.sync
/** epsilonDpoLossFromHidden on the thread pool. */
export const epsilonDpoLossFromHiddenAsync: (args: EpsilonDpoLossFromHiddenArgs) => Promise<EpsilonDpoLossResult> = hiddenLossOp.async

/**
 * The completion tokens per chunk that the chunked ops (epsilonDpoLossFromHidden,
 * sequenceStatsFromHidden) take when `chunkTokens` is absent, for vocabulary `vocab` on `device`:
 * about 2^25 logits per chunk and model on the CPU, 2^28 on a GPU (where chunks cost launches, not
 * cache misses). With pairs longer than a chunk, the op may shrink it to make room for ∂W.
 */
export function chunkTokensDefault(vocab: number, device = 'cpu'): number {
  return native(() => nativeAddon().chunkTokensDefault(vocab, device))
}

/** Per-sequence masked log-prob sums (spec §3) under the policy, reference and both perturbations. */
export const sequenceLogps: (args: SequenceLogpsArgs) => SequenceLogpsResult = sequenceLogpsOp.sync
/** sequenceLogps on the thread pool. */
export const sequenceLogpsAsync: (args: SequenceLogpsArgs) => Promise<SequenceLogpsResult> = sequenceLogpsOp.async

/**
 * Per-sequence log-probs from hidden states and the lm_head, chunk by chunk (no [R,T,V] logits):
 * SFT's loss is −Σ logps / Σ tokenCount; with a reference it also gives the reference's log-probs
 * and the exact token KL, for evaluation. Off the CPU, invalid label/mask values come back in
 * `inputError` (see checkInputErrors) instead of a device read.
 */
export const sequenceStatsFromHidden: (args: SequenceStatsFromHiddenArgs) => SequenceStatsResult = statsOp.sync
/** sequenceStatsFromHidden on the thread pool. */
export const sequenceStatsFromHiddenAsync: (args: SequenceStatsFromHiddenArgs) => Promise<SequenceStatsResult> = statsOp.async

/**
 * One AdamW step (as torch.optim.AdamW), in place, over every parameter with a gradient; what
 * lib/train's AdamW runs. `master` holds fp32 copies of bf16/fp16 parameters (null elsewhere).
 */
export const adamwStep: (args: AdamwStepArgs) => void = adamwOp.sync
/** adamwStep on the thread pool. */
export const adamwStepAsync: (args: AdamwStepArgs) => Promise<void> = adamwOp.async
