// What the one engine (lib/train/engine.ts) does differently on several ranks, in one place:
//   - data: each global micro-batch (batch × world rows, one deterministic order for any world
//     size) is cut into contiguous per-rank blocks, and each rank's mean loss is weighted by its
//     share of the global count (pairs, or completion tokens for SFT), so the average over ranks
//     is the global batch's mean exactly as one process would compute it;
//   - gradients: averaged over ranks in ~25 MB buckets (ZeRO 0/1), or reduced onto the rank that
//     owns each parameter (ZeRO-2, DeepSpeed's reduce-scatter of gradients); by default during the
//     last micro-batch's backward, bucket by bucket as autograd produces them (GradReducer), with
//     --no-grad-overlap after it;
//   - optimizer: ZeRO-1/2 give each rank the AdamW state (fp32 master, m, v) of a contiguous,
//     size-balanced slice of the parameters; owners broadcast their updated parameters;
//   - ZeRO-3 (zero3.ts): each parameter is this rank's shard of a gather unit, whose gradient
//     arrives reduce-scattered during every backward; every rank owns all of its shards, and every
//     rank runs every forward (its gathers are collectives), a rank without rows on a stand-in row
//     weighted 0;
//   - statistics: every rank's per-example stats are gathered, in the global order, so the
//     method's summarize (β's s̄, metrics) sees exactly one process's step on every rank, and a
//     stop request (Ctrl-C) on any rank stops all of them after the same step.
// With one process (no group) every hook is the identity, so single-process runs are unchanged.
import { nativeAsync } from '../core/errors'
import { nativeAddon } from '../core/native'
import { Tensor } from '../core/tensor'
import type { ReducerStats } from '../core/native'
import type { CausalLM } from '../model/causal-lm'
import { BUCKET_BYTES, type DistGroup, type GradReducer } from './group'

export type ZeroStage = 0 | 1 | 2 | 3

/** Row counts of `n` rows split into `world` contiguous blocks (the first n % world get one more). */
export function shardSizes(n: number, world: number): number[] {
  const base = Math.floor(n / world)
  return Array.from({ length: world }, (_, r) => base + (r < n % world ? 1 : 0))
}

/** Rank `rank`'s contiguous block of `items`. */
export function shardOf<T>(items: readonly T[], rank: number, world: number): T[] {
  const sizes = shardSizes(items.length, world)
  const start = sizes.slice(0, rank).reduce((a, b) => a + b, 0)
  return items.slice(start, start + sizes[rank]!)
}

/** The owner rank of each parameter: contiguous runs balanced by element count (ZeRO-1/2). */
export function partitionOwners(numels: readonly number[], world: number): number[] {
  const total = numels.reduce((a, b) => a + b, 0)
  const owners: number[] = []
  let done = 0
  for (const n of numels) {
    // The rank whose equal share the parameter's midpoint falls in.
    owners.push(Math.min(world - 1, Math.floor(((done + n / 2) * world) / Math.max(1, total))))
    done += n
  }
  return owners
}

/** The step's statistics as one process would see them, and whether any rank asked to stop. */
export interface GatheredStats {
  views: Float64Array[]
  stop: boolean
  /** Input tokens of every rank together. */
  tokens: number
}

/** How gradients travel between ranks. */
export interface GradientSync {
  /** Reduce during the backward, bucket by bucket (default true); false: after it. */
  overlap?: boolean
  /** Bytes per bucket (default BUCKET_BYTES, DDP's 25 MB); ZeRO-3 caps its reduce-scatters in flight with it when sharding. */
  bucketBytes?: number
  /** ZeRO-3: the sharded model whose reduce-scatters syncGradients waits for. */
  shardedModel?: CausalLM
}

export class DataParallel {
  readonly rank: number
  readonly world: number
  /** Owner rank of each parameter, in model order (all 0 without ZeRO). */
  private readonly owners: number[]
  private columns: number | undefined
  private readonly bucketBytes: number
  private readonly shardedModel: CausalLM | undefined
  /** With overlap: the hooks that reduce gradients during the last micro-batch's backward. */
  private readonly reducer: GradReducer | undefined
  /** What the last step's reducer (with overlap) or ZeRO-3 reduce-scatters did. */
  lastReduction: ReducerStats | undefined

  constructor(
    readonly group: DistGroup | undefined,
    readonly zeroStage: ZeroStage,
    private readonly params: readonly Tensor[],
    sync: GradientSync = {},
  ) {
    this.rank = group?.rank ?? 0
    this.world = group?.worldSize ?? 1
    // ZeRO-3: the parameters are this rank's shards already.
    const sharded = group !== undefined && zeroStage > 0 && zeroStage < 3
    this.owners = sharded
      ? partitionOwners(
          params.map((p) => p.numel),
          this.world,
        )
      : params.map(() => this.rank)
    this.bucketBytes = Math.max(1, Math.round(sync.bucketBytes ?? BUCKET_BYTES))
    this.shardedModel = zeroStage === 3 ? sync.shardedModel : undefined
    if (group && zeroStage < 3 && (sync.overlap ?? true) && params.length > 0)
      this.reducer = group.gradReducer(params, { bucketBytes: this.bucketBytes, ...(zeroStage >= 2 ? { owners: this.owners } : {}) })
  }

  /** Frees the reducer's hooks and buckets (the group stays its owner's). */
  dispose(): void {
    this.reducer?.release()
  }

  /** Whether gradients are reduced during the backward. */
  get overlapped(): boolean {
    return this.reducer !== undefined
  }

  /**
   * Before the last micro-batch of a step, whether or not this rank has rows in it: that backward
   * reduces as it goes (the earlier ones accumulate locally, like DDP's no_sync).
   */
  beforeLastBackward(): void {
    this.reducer?.arm()
  }

  get isMain(): boolean {
    return this.rank === 0
  }
  get sharded(): boolean {
    return this.group !== undefined && this.zeroStage > 0
  }

  /** ZeRO-3 on several ranks: every rank must run every forward, with rows or without. */
  get forwardsEveryBatch(): boolean {
    return this.group !== undefined && this.zeroStage === 3
  }

  /** The named parameters whose optimizer state this rank holds (all of them without ZeRO). */
  owned<T>(named: readonly T[]): T[] {
    return named.filter((_, i) => this.owners[i] === this.rank)
  }

  /** Rows of each rank in a global micro-batch of n rows. */
  counts(n: number): number[] {
    return this.group ? shardSizes(n, this.world) : [n]
  }

  /** This rank's rows of a global micro-batch. */
  shard<T>(global: readonly T[]): T[] {
    return this.group ? shardOf(global, this.rank, this.world) : [...global]
  }

  /** The factor on this rank's mean loss so the mean over ranks is the global mean (1 for one process). */
  lossWeight(localCount: number, globalCount: number): number {
    return this.group && globalCount > 0 ? (this.world * localCount) / globalCount : 1
  }

  /**
   * After the backward passes of a step: gradients averaged (ZeRO 0/1) or reduced onto their
   * owners (ZeRO-2, the other ranks' copies freed). With overlap this only waits for what the
   * last backward started.
   */
  async syncGradients(): Promise<void> {
    const g = this.group
    if (!g) return
    // ZeRO-3: the gather units' backward started the reduce-scatters; they finish here.
    if (this.zeroStage === 3) {
      if (this.shardedModel) this.lastReduction = await g.finishShards(this.shardedModel)
      return
    }
    if (this.reducer) {
      // The buckets the backward started, and any it did not reach, waited for.
      this.lastReduction = await this.reducer.finish()
      return
    }
    if (this.zeroStage < 2) return g.averageGradients(this.params, this.bucketBytes)
    for (let r = 0; r < this.world; r++) await g.reduceGradients(this.byOwner(r), r, this.bucketBytes)
    // Another rank owns these: what is left here is a partial sum; free it.
    for (let i = 0; i < this.params.length; i++) if (this.owners[i] !== this.rank) this.params[i]!.zeroGrad()
  }

  /**
   * With overlap (and at ZeRO-3), what the step's reduction did, on this rank: its buckets (ZeRO-3:
   * unit reduce-scatters), how many the backward started, how many had started when its last
   * gradient arrived (> 0: communication ran while the backward computed), and the peak bytes of
   * collectives in flight.
   */
  reductionMetrics(): Record<string, number> {
    const r = this.lastReduction
    if (!r) return {}
    return {
      'dist/buckets': r.buckets,
      'dist/buckets_started_in_backward': r.startedInBackward,
      'dist/buckets_started_before_last_hook': r.startedBeforeLastHook,
      'dist/peak_in_flight_bytes': r.peakInFlightBytes,
    }
  }

  /** The global gradient norm, clipped to maxNorm; `local` clips what this process holds (one process, ZeRO 0). */
  async clipGradNorm(maxNorm: number, local: () => number): Promise<number> {
    if (!this.group || this.zeroStage === 0) return local()
    if (this.zeroStage === 1)
      return nativeAsync(async () =>
        nativeAddon().clipGradNorm(
          this.params.map((p) => p.handle),
          maxNorm,
        ),
      )
    return this.group.clipGradNorm(this.byOwner(this.rank), maxNorm)
  }

  /** After the optimizer step: ZeRO-1/2 owners send their updated parameters to every rank. */
  async afterOptimizerStep(): Promise<void> {
    const g = this.group
    // ZeRO-3: each rank updated its own shards, and the forward gathers them.
    if (!g || !this.sharded || this.zeroStage === 3) return
    for (let r = 0; r < this.world; r++) await g.broadcast(this.byOwner(r), r)
    for (let i = 0; i < this.params.length; i++) if (this.owners[i] !== this.rank) this.params[i]!.zeroGrad()
  }

  /**
   * Every rank's per-example stats of a step, in the global order: micro-batch by micro-batch,
   * rank 0's rows first. `local` are this rank's host views (one per micro-batch it ran, empty for
   * an empty shard); `counts[j][r]` the rows rank r had in micro-batch j (known to every rank).
   */
  async gatherStats(local: readonly Float64Array[], counts: readonly number[][], stop: boolean, tokens = 0): Promise<GatheredStats> {
    const g = this.group
    if (!g) return { views: [...local], stop, tokens }
    const mine = counts.map((c) => c[this.rank]!)
    const myRows = mine.reduce((a, b) => a + b, 0)
    const perRank = Array.from({ length: this.world }, (_, r) => counts.reduce((a, c) => a + c[r]!, 0))
    if (myRows > 0) this.columns = local.reduce((a, v) => a + v.length, 0) / myRows
    if (this.columns === undefined || perRank.some((n) => n === 0)) {
      // A rank without rows does not know the stats' width: agree on it first (epoch ends only).
      const k = Tensor.from(new Float64Array([this.columns ?? 0]), [1], { dtype: 'float64', device: this.device() })
      await g.allreduce([k], { op: 'max' })
      this.columns = (k.toArray() as Float64Array)[0]!
      k.dispose()
    }
    const k = this.columns
    // [stop, tokens, this rank's rows…, padding to the longest rank's]
    const width = 2 + Math.max(...perRank) * k
    const payload = new Float64Array(width)
    payload[0] = stop ? 1 : 0
    payload[1] = tokens
    let at = 2
    for (const v of local) {
      payload.set(v, at)
      at += v.length
    }
    const sent = Tensor.from(payload, [width], { dtype: 'float64', device: this.device() })
    const all = await g.allgather(sent)
    sent.dispose()
    const host = all.toArray() as Float64Array
    all.dispose()
    const offsets = Array.from({ length: this.world }, (_, r) => r * width + 2)
    const views = counts.map((c) => {
      const out = new Float64Array(c.reduce((a, b) => a + b, 0) * k)
      let o = 0
      c.forEach((rows, r) => {
        out.set(host.subarray(offsets[r]!, offsets[r]! + rows * k), o)
        offsets[r]! += rows * k
        o += rows * k
      })
      return out
    })
    const header = (i: number) => Array.from({ length: this.world }, (_, r) => host[r * width + i]!)
    return { views, stop: header(0).some((s) => s > 0), tokens: header(1).reduce((a, b) => a + b, 0) }
  }

  private byOwner(rank: number): Tensor[] {
    return this.params.filter((_, i) => this.owners[i] === rank)
  }

  private device(): string {
    return this.params[0]?.device ?? 'cpu'
  }
}
