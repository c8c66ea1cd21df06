// Pairs → one batch in the layout of docs/epsilon-dpo.md §1: rows 0..B-1 chosen, B..2B-1 the
// rejected of the same pairs; each row is prompt then completion, right-padded to the longest row
// of this batch. labels[r,t] is the token at t+1 (already shifted) and -100 where lossMask is 0;
// lossMask is 1 exactly where labels[r,t] is a completion token.
import { EdpoInputError } from '../core/errors'
import { Tensor } from '../core/tensor'
import type { TokenizedPair } from './tokenize-pairs'

export const IGNORE_INDEX = -100

/** The batch as host arrays, row-major [2B, T]. */
export interface HostBatch {
  /** Pairs B; the batch has 2B rows. */
  pairs: number
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
  sources: string[]
}

export interface Batch {
  pairs: number
  length: number
  /** int64 [2B, T]. */
  inputIds: Tensor
  /** int64 [2B, T]: 1 on tokens, 0 on padding. */
  attentionMask: Tensor
  /** int64 [2B, T]: next token, -100 where lossMask is 0. */
  labels: Tensor
  /** float32 [2B, T]. */
  lossMask: Tensor
  /** int64 [n] on the CPU: the flat indices (into the 2B·T rows) where lossMask is 1, ascending; lets the chunked ops skip a device read. */
  activeRows: Tensor
  /** Completion tokens per row, i.e. lossMask's row sums (host copy, for metrics). */
  completionTokens: Int32Array
  /** Tokens per row before its padding (host copy: a padding-free forward packs the rows by it). */
  rowLengths: Int32Array
  /** Some row is shorter than `length`. When none is, the mask says nothing and forwards leave it out (paddingLayout). */
  padded: boolean
  sources: string[]
}

export function collateHost(pairs: readonly TokenizedPair[], padTokenId: number): HostBatch {
  if (pairs.length === 0) throw new EdpoInputError('collate: a batch needs at least one pair')
  const B = pairs.length
  const rows: [Int32Array, Int32Array][] = [...pairs.map((p) => [p.prompt, p.chosen] as [Int32Array, Int32Array]),
    ...pairs.map((p) => [p.prompt, p.rejected] as [Int32Array, Int32Array])]
  const T = Math.max(...rows.map(([p, c]) => p.length + c.length))
  const n = 2 * B * T
  const inputIds = new BigInt64Array(n).fill(BigInt(padTokenId))
  const attentionMask = new BigInt64Array(n)
  const labels = new BigInt64Array(n).fill(BigInt(IGNORE_INDEX))
  const lossMask = new Float32Array(n)
  const completionTokens = new Int32Array(2 * B)
  const rowLengths = new Int32Array(2 * B)
  rows.forEach(([prompt, completion], r) => {
    const base = r * T
    const P = prompt.length
    const L = P + completion.length
    for (let t = 0; t < L; t++) {
      inputIds[base + t] = BigInt(t < P ? prompt[t]! : completion[t - P]!)
      attentionMask[base + t] = 1n
    }
    // Position t predicts token t+1; it counts when that token is a completion token.
    for (let t = Math.max(P - 1, 0); t < L - 1; t++) {
      labels[base + t] = BigInt(completion[t + 1 - P]!)
      lossMask[base + t] = 1
    }
    completionTokens[r] = L - Math.max(P, 1)
    rowLengths[r] = L
  })
  const padded = rowLengths.some((L) => L < T)
  return { pairs: B, length: T, inputIds, attentionMask, labels, lossMask, completionTokens, rowLengths, padded, sources: pairs.map((p) => p.source) }
}

/** Collates pairs into tensors on `device` (default cpu). */
export function collate(pairs: readonly TokenizedPair[], padTokenId: number, opts: { device?: string } = {}): Batch {
  const h = collateHost(pairs, padTokenId)
  const shape = [2 * h.pairs, h.length]
  const device = opts.device
  return {
    pairs: h.pairs,
    length: h.length,
    inputIds: Tensor.from(h.inputIds, shape, { device }),
    attentionMask: Tensor.from(h.attentionMask, shape, { device }),
    labels: Tensor.from(h.labels, shape, { device }),
    lossMask: Tensor.from(h.lossMask, shape, { device }),
    activeRows: (() => {
      const rows = activeRows(h.lossMask)
      // On the host: the ops copy it to the device themselves, and the chunked ε-DPO op plans its
      // chunks from it with no device read.
      return Tensor.from(rows, [rows.length])
    })(),
    completionTokens: h.completionTokens,
    rowLengths: h.rowLengths,
    padded: h.padded,
    sources: h.sources,
  }
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
