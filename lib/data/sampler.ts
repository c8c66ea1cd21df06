// A deterministic, resumable batch sampler. Each epoch is a fresh permutation of 0..size-1 drawn
// from (seed, epoch) alone (and the examples' lengths, when grouping by length), so the state
// {epoch, position, seed} is enough to resume: a sampler built from a saved state and the same
// data yields exactly the batches the original would have yielded next.
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { formatZodError } from '../core/validate'

export interface SamplerState {
  epoch: number
  /** Indices of this epoch's permutation already handed out. */
  position: number
  seed: number
}

export interface SamplerOptions {
  /** Pairs per batch. */
  batchSize: number
  seed?: number
  /** Default true; false keeps the file order. */
  shuffle?: boolean
  /** Drop the last, smaller batch of each epoch. Default false. */
  dropLast?: boolean
  /** Resume from a saved state. */
  state?: SamplerState
  /**
   * Group by length (Hugging Face's group_by_length): each example's length in tokens. Batches
   * then hold examples of similar lengths (less padding), in an order still shuffled per epoch.
   */
  lengths?: readonly number[]
}

const int = z.number().int().nonnegative()
const optionsSchema = z
  .object({
    batchSize: z.number().int().positive(),
    seed: z.number().int().optional(),
    shuffle: z.boolean().optional(),
    dropLast: z.boolean().optional(),
    state: z.object({ epoch: int, position: int, seed: z.number().int() }).strict().optional(),
    lengths: z.array(z.number().int().nonnegative()).optional(),
  })
  .strict()

// splitmix32: a small, well-mixed generator; the sequence is part of the resume contract.
function splitmix32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x9e3779b9) >>> 0
    let z = a
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** The permutation of epoch `epoch` (Fisher–Yates driven by splitmix32 of seed and epoch). */
export function epochPermutation(size: number, seed: number, epoch: number): Uint32Array {
  const perm = new Uint32Array(size)
  for (let i = 0; i < size; i++) perm[i] = i
  const next = splitmix32(Math.imul(seed >>> 0, 0x27d4eb2d) ^ Math.imul(epoch + 1, 0x165667b1))
  for (let i = size - 1; i > 0; i--) {
    // Rejection sampling keeps the draw unbiased.
    const bound = i + 1
    const limit = 0x100000000 - (0x100000000 % bound)
    let r = next()
    while (r >= limit) r = next()
    const j = r % bound
    const tmp = perm[i]!
    perm[i] = perm[j]!
    perm[j] = tmp
  }
  return perm
}

/**
 * The permutation of epoch `epoch` grouped by length, as Hugging Face's LengthGroupedSampler
 * orders it: the epoch's random permutation is cut into mega-batches of
 * min(⌊n / (4·batchSize)⌋, 50)·batchSize examples (at least one batch), each sorted by
 * decreasing length (ties keep the permutation's order), and the longest example overall is
 * swapped to the front so an out-of-memory shows on the first batch.
 */
export function lengthGroupedPermutation(lengths: readonly number[], batchSize: number, seed: number, epoch: number): Uint32Array {
  const perm = epochPermutation(lengths.length, seed, epoch)
  const mega = Math.max(1, Math.min(Math.floor(lengths.length / (batchSize * 4)), 50)) * batchSize
  const out = new Uint32Array(perm.length)
  let longest = 0
  for (let start = 0; start < perm.length; start += mega) {
    const group = Array.from(perm.subarray(start, start + mega)).sort((a, b) => lengths[b]! - lengths[a]!)
    out.set(group, start)
    if (lengths[group[0]!]! > lengths[out[longest]!]!) longest = start
  }
  const first = out[0]!
  out[0] = out[longest]!
  out[longest] = first
  return out
}

export class PairSampler {
  readonly size: number
  readonly batchSize: number
  readonly shuffle: boolean
  readonly dropLast: boolean
  private epoch: number
  private position: number
  private readonly seed: number
  private readonly lengths: readonly number[] | undefined
  private perm: Uint32Array | undefined

  constructor(size: number, opts: SamplerOptions) {
    const r = optionsSchema.safeParse(opts)
    if (!r.success) throw new EdpoInputError(formatZodError(r.error, 'sampler'))
    const o = r.data
    if (!Number.isInteger(size) || size <= 0) throw new EdpoInputError(`sampler: the dataset is empty (size ${size})`)
    this.size = size
    this.batchSize = o.batchSize
    this.shuffle = o.shuffle ?? true
    this.dropLast = o.dropLast ?? false
    if (this.dropLast && size < o.batchSize) throw new EdpoInputError(`sampler: dropLast with batchSize ${o.batchSize} leaves no batch of ${size} pairs`)
    this.seed = o.state?.seed ?? o.seed ?? 0
    if (o.seed !== undefined && o.state !== undefined && o.seed !== o.state.seed)
      throw new EdpoInputError(`sampler.state.seed: ${o.state.seed} differs from sampler.seed ${o.seed}`)
    this.epoch = o.state?.epoch ?? 0
    this.position = o.state?.position ?? 0
    if (this.position > size) throw new EdpoInputError(`sampler.state.position: ${this.position} is past the dataset's ${size} pairs`)
    if (o.lengths !== undefined && o.lengths.length !== size)
      throw new EdpoInputError(`sampler.lengths: ${o.lengths.length} lengths for a dataset of ${size} pairs`)
    if (o.lengths !== undefined && !this.shuffle) throw new EdpoInputError('sampler.lengths: grouping by length needs shuffle (it orders each shuffled epoch)')
    this.lengths = o.lengths
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize)
  }

  /** The state to save; JSON-serialisable. */
  state(): SamplerState {
    return { epoch: this.epoch, position: this.position, seed: this.seed }
  }

  /** True when the current epoch has no batch left (next() would start the next epoch). */
  get epochDone(): boolean {
    const left = this.size - this.position
    return left === 0 || (this.dropLast && left < this.batchSize)
  }

  /** The current epoch (the one next() draws from, after rolling over a finished one). */
  get currentEpoch(): number {
    return this.epochDone ? this.epoch + 1 : this.epoch
  }

  /** The next batch of pair indices; rolls over into the next epoch when this one is done. */
  next(): { epoch: number; indices: number[] } {
    if (this.epochDone) {
      this.epoch++
      this.position = 0
      this.perm = undefined
    }
    this.perm ??= this.lengths
      ? lengthGroupedPermutation(this.lengths, this.batchSize, this.seed, this.epoch)
      : this.shuffle
        ? epochPermutation(this.size, this.seed, this.epoch)
        : Uint32Array.from({ length: this.size }, (_, i) => i)
    const end = Math.min(this.position + this.batchSize, this.size)
    const indices = Array.from(this.perm.subarray(this.position, end))
    this.position = end
    return { epoch: this.epoch, indices }
  }
}
