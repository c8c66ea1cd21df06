// The one row collator, for preference and SFT batches (a preference batch is 2B rows).
// Pairs → one batch in the layout of docs/epsilon-dpo.md §1: rows 0..B-1 chosen, B..2B-1 the
// rejected of the same pairs; each row is prompt then completion, right-padded to the longest row
// of this batch. labels[r,t] is the token at t+1 (already shifted) and -100 where lossMask is 0;
// lossMask is 1 exactly where labels[r,t] is a completion token.
import { EdpoInputError } from '../core/errors'
import { Tensor } from '../core/tensor'
import type { TokenizedPair } from './tokenize-pairs'

export const IGNORE_INDEX = -100

/** Prompt + completion rows as host arrays, row-major [rows, T], right-padded. */
export interface HostRows {
  /** Columns: the longest prompt + completion row. */
  length: number
  inputIds: BigInt64Array
  attentionMask: BigInt64Array
  labels: BigInt64Array
  lossMask: Float32Array
  /** Completion tokens per row (the number of 1s in lossMask). */
  completionTokens: Int32Array
  /** Tokens per row before its padding (prompt + completion). */
  rowLengths: Int32Array
  /** Some row is shorter than `length` (attentionMask has a 0). */
  padded: boolean
}

/** A preference batch as host arrays: 2B rows, chosen then rejected. */
export interface HostBatch extends HostRows {
  /** Pairs B; the batch has 2B rows. */
  pairs: number
  sources: string[]
}

/** Rows as tensors on the run's device (the layout every forward and chunked op reads). */
export interface RowTensors {
  length: number
  /** int64 [rows, T]. */
  inputIds: Tensor
  /** int64 [rows, T]: 1 on tokens, 0 on padding. */
  attentionMask: Tensor
  /** int64 [rows, T]: the token at t+1; the masked label (-100, or a pad id) where lossMask is 0. */
  labels: Tensor
  /** float32 [rows, T]: 1 where labels[t] is a completion token. */
  lossMask: Tensor
  /** int64 [n] on the CPU: the flat indices where lossMask is 1, ascending, from the host mask (spares the chunked ops a device read). */
  activeRows: Tensor
  /** Completion tokens per row, i.e. lossMask's row sums (host copy, for metrics). */
  completionTokens: Int32Array
  /** Tokens per row before its padding (host copy: a padding-free forward packs the rows by it). */
  rowLengths: Int32Array
  /** Some row is shorter than `length`. When none is, the mask says nothing and forwards leave it out (paddingLayout). */
  padded: boolean
}

/** A preference batch: rows 0..B-1 chosen, B..2B-1 the rejected of the same pairs. */
export interface Batch extends RowTensors {
  pairs: number
  sources: string[]
}

/** An SFT (or scoring) batch: one row per example. */
export interface SequenceBatch extends RowTensors {
  rows: number
  /** Completion tokens in the batch (lossMask's sum). */
  tokens: number
}

/** The one row collator: prompt + completion rows, right-padded, labels shifted, the loss mask on completion labels only. */
export function collateHostRows(rows: readonly { prompt: Int32Array; completion: Int32Array }[], padTokenId: number, maskedLabel: number): HostRows {
  const T = Math.max(...rows.map((r) => r.prompt.length + r.completion.length))
  const n = rows.length * T
  const inputIds = new BigInt64Array(n).fill(BigInt(padTokenId))
  const attentionMask = new BigInt64Array(n)
  const labels = new BigInt64Array(n).fill(BigInt(maskedLabel))
  const lossMask = new Float32Array(n)
  const completionTokens = new Int32Array(rows.length)
  const rowLengths = new Int32Array(rows.length)
  rows.forEach(({ prompt, completion }, r) => {
    const base = r * T
    const P = prompt.length
    const L = P + completion.length
    for (let t = 0; t < L; t++) {
      inputIds[base + t] = BigInt(t < P ? prompt[t]! : completion[t - P]!)
      attentionMask[base + t] = 1n
    }
    // Position t predicts token t+1; it counts when that token is a completion token (with no
    // prompt, the first completion token has nothing to be predicted from).
    for (let t = Math.max(P - 1, 0); t < L - 1; t++) {
      labels[base + t] = BigInt(completion[t + 1 - P]!)
      lossMask[base + t] = 1
    }
    completionTokens[r] = Math.max(L - Math.max(P, 1), 0)
    rowLengths[r] = L
  })
  return { length: T, inputIds, attentionMask, labels, lossMask, completionTokens, rowLengths, padded: rowLengths.some((L) => L < T) }
}

/** The pairs' 2B rows (chosen, then rejected), collated on the host; masked labels are -100. */
export function collateHost(pairs: readonly TokenizedPair[], padTokenId: number): HostBatch {
  if (pairs.length === 0) throw new EdpoInputError('collate: a batch needs at least one pair')
  const rows = [...pairs.map((p) => ({ prompt: p.prompt, completion: p.chosen })), ...pairs.map((p) => ({ prompt: p.prompt, completion: p.rejected }))]
  return { pairs: pairs.length, ...collateHostRows(rows, padTokenId, IGNORE_INDEX), sources: pairs.map((p) => p.source) }
}

/** Host rows → tensors on `device` (default cpu). */
function toDevice(h: HostRows, device: string | undefined): RowTensors {
  const shape = [h.rowLengths.length, h.length]
  // activeRows stays on the host: the ops copy it to the device themselves, and the chunked ops
  // plan their chunks from it with no device read.
  const active = activeRows(h.lossMask)
  return {
    length: h.length,
    inputIds: Tensor.from(h.inputIds, shape, { device }),
    attentionMask: Tensor.from(h.attentionMask, shape, { device }),
    labels: Tensor.from(h.labels, shape, { device }),
    lossMask: Tensor.from(h.lossMask, shape, { device }),
    activeRows: Tensor.from(active, [active.length]),
    completionTokens: h.completionTokens,
    rowLengths: h.rowLengths,
    padded: h.padded,
  }
}

/** Collates pairs into tensors on `device` (default cpu). */
export function collate(pairs: readonly TokenizedPair[], padTokenId: number, opts: { device?: string } = {}): Batch {
  const h = collateHost(pairs, padTokenId)
  return { pairs: h.pairs, ...toDevice(h, opts.device), sources: h.sources }
}

/** Prompt + completion rows (SFT, scoring), right-padded; masked labels are `padTokenId` (any valid id will do). */
export function collateSequences(
  rows: readonly { prompt: Int32Array; completion: Int32Array }[],
  padTokenId: number,
  opts: { device?: string } = {},
): SequenceBatch {
  if (rows.length === 0) throw new EdpoInputError('collateSequences: a batch needs at least one row')
  const h = collateHostRows(rows, padTokenId, padTokenId)
  return { rows: rows.length, ...toDevice(h, opts.device), tokens: h.completionTokens.reduce((a, b) => a + b, 0) }
}

/**
 * The attention layout of a forward over a collated batch: its mask only when some row is padded.
 * A mask of ones adds nothing, and without one libtorch ≥ 2.1 runs SDPA's causal (flash) kernels
 * instead of the masked ones (the same values: the mask would only repeat "causal").
 */
export function paddingLayout(batch: { attentionMask: Tensor; padded?: boolean }): { attentionMask?: Tensor } {
  // A batch that does not say (a caller's own LabelledRows) keeps its mask.
  return batch.padded === false ? {} : { attentionMask: batch.attentionMask }
}

/** The flat indices where `mask` is non-zero, ascending (what the chunked ops' activeRows expects). */
export function activeRows(mask: ArrayLike<number>): BigInt64Array {
  const out: bigint[] = []
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) out.push(BigInt(i))
  return BigInt64Array.from(out)
}
