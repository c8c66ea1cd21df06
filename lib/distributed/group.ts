// A c10d process group (csrc/js_dist.cc) as the trainer uses it: join from the environment
// (env.ts), then bucketed collectives on Tensors. Every wait is bounded by the group's timeout
// (--dist-timeout): a rank that died or hangs turns into an error naming this rank.
import { EdpoInputError, native, nativeAsync } from '../core/errors'
import { nativeAddon, type NativeGroup, type NativeReducer, type ReducerStats } from '../core/native'
import type { CausalLM } from '../model/causal-lm'
import { Tensor } from '../core/tensor'
import { type DistEnv, isLoopback } from './env'

/** DDP's default bucket: about 25 MB of gradients per all-reduce message. */
export const BUCKET_BYTES = 25 * 1024 * 1024

export type Backend = 'gloo' | 'nccl'

export interface JoinOptions {
  /** Default: nccl on CUDA, gloo on CPU. */
  backend?: Backend
  /** Seconds any collective (and the rendezvous) may wait for the other ranks; default 300. */
  timeoutSeconds?: number
  /** The run's device ('cpu', 'cuda', 'cuda:N'): picks the default backend and rejects nccl on CPU. */
  device: string
}

export class DistGroup {
  private constructor(
    private readonly handle: NativeGroup,
    readonly rank: number,
    readonly worldSize: number,
    readonly localRank: number,
    readonly backend: Backend,
  ) {}

  /** Rendezvous with the other ranks of `env` (blocks until all joined, or the timeout). */
  static async join(env: DistEnv, o: JoinOptions): Promise<DistGroup> {
    const cuda = o.device.startsWith('cuda')
    const backend = o.backend ?? (cuda ? 'nccl' : 'gloo')
    if (backend === 'nccl' && !cuda) throw new EdpoInputError(`--backend nccl needs a CUDA device, but --device is ${o.device}: use --backend gloo on CPU`)
    const timeoutSeconds = o.timeoutSeconds ?? 300
    if (!(timeoutSeconds > 0)) throw new EdpoInputError(`--dist-timeout: expected seconds > 0, got ${timeoutSeconds}`)
    const { store } = env
    const handle = await nativeAsync(() =>
      nativeAddon().distCreateGroup({
        backend,
        rank: env.rank,
        worldSize: env.worldSize,
        timeoutMs: Math.round(timeoutSeconds * 1000),
        ...(store.kind === 'file' ? { storePath: store.path } : { host: store.host, port: store.port, tcpClientOnly: store.clientOnly }),
        // One machine: everything stays on loopback. Several: the interface the user names, else this host's address.
        ...(env.glooInterface ? { glooInterface: env.glooInterface } : store.kind === 'file' || isLoopback(store.host) ? { glooHostname: '127.0.0.1' } : {}),
      }),
    )
    return new DistGroup(handle, env.rank, env.worldSize, env.localRank, backend)
  }

  /** In place: the sum over ranks (or the mean, or the max) of each tensor. */
  allreduce(tensors: readonly Tensor[], o: { op?: 'sum' | 'mean' | 'max'; bucketBytes?: number } = {}): Promise<void> {
    const op = o.op ?? 'sum'
    return nativeAsync(() =>
      nativeAddon().distAllreduce(
        this.handle,
        tensors.map((t) => t.handle),
        { max: op === 'max', average: op === 'mean', grads: false, bucketBytes: o.bucketBytes ?? BUCKET_BYTES },
      ),
    )
  }

  /** The parameters' gradients averaged over ranks, in ~25 MB buckets (a missing gradient counts as zero). */
  averageGradients(params: readonly Tensor[], bucketBytes = BUCKET_BYTES): Promise<void> {
    return nativeAsync(() =>
      nativeAddon().distAllreduce(
        this.handle,
        params.map((t) => t.handle),
        { max: false, average: true, grads: true, bucketBytes },
      ),
    )
  }

  /** The parameters' gradients averaged onto rank `root` (ZeRO-2: the owner of these parameters). */
  reduceGradients(params: readonly Tensor[], root: number, bucketBytes = BUCKET_BYTES): Promise<void> {
    return nativeAsync(() =>
      nativeAddon().distReduce(
        this.handle,
        params.map((t) => t.handle),
        { root, average: true, grads: true, bucketBytes },
      ),
    )
  }

  /** Rank `root`'s values into every rank's tensors (ZeRO's all-gather of updated parameters). */
  broadcast(tensors: readonly Tensor[], root: number): Promise<void> {
    return nativeAsync(() =>
      nativeAddon().distBroadcast(
        this.handle,
        tensors.map((t) => t.handle),
        { root, bucketBytes: BUCKET_BYTES },
      ),
    )
  }

  /** Every rank's `tensor`, stacked: shape `[world, ...shape]`. */
  async allgather(tensor: Tensor): Promise<Tensor> {
    return new Tensor(await nativeAsync(() => nativeAddon().distAllgather(this.handle, tensor.handle)))
  }

  barrier(): Promise<void> {
    return nativeAsync(() => nativeAddon().distBarrier(this.handle))
  }

  /**
   * Hooks on every parameter's gradient accumulation that reduce the gradients in buckets of
   * about `bucketBytes` while the backward runs: all-reduced, or with `owners` (each parameter's
   * owner rank, ZeRO-2) reduced onto the owner, the other ranks' copies freed.
   */
  gradReducer(params: readonly Tensor[], o: { bucketBytes: number; owners?: readonly number[] }): GradReducer {
    const handle = native(() =>
      nativeAddon().distReducerCreate(
        this.handle,
        params.map((p) => p.handle),
        { bucketBytes: o.bucketBytes, owners: o.owners ? [...o.owners] : [] },
      ),
    )
    return new GradReducer(handle)
  }

  /**
   * ZeRO-3: the model's parameters become this rank's shards of its gather units (csrc/dist/layer_shards.h);
   * at most about `bucketBytes` of their gradients' reduce-scatters are in flight (one always may be).
   */
  shardModel(model: CausalLM, o: { bucketBytes: number } = { bucketBytes: BUCKET_BYTES }): void {
    native(() => nativeAddon().distShardModel(this.handle, model.nativeHandle, { bucketBytes: o.bucketBytes }))
  }

  /** ZeRO-3: gather unit `unit` of a sharded model, whole (a collective: every rank calls it). */
  async gatherUnit(model: CausalLM, unit: number): Promise<[string, Tensor][]> {
    const { names, tensors } = await nativeAsync(() => nativeAddon().distGatherUnit(model.nativeHandle, unit))
    return names.map((n, i) => [n, new Tensor(tensors[i]!)])
  }

  /** ZeRO-3: after a step's backward passes, the shards' gradients reduce-scattered and averaged; what the step's reduce-scatters did. */
  finishShards(model: CausalLM): Promise<ReducerStats> {
    return nativeAsync(() => nativeAddon().distShardsFinish(model.nativeHandle))
  }

  /** Global gradient norm over every rank's `owned` parameters, clipped to maxNorm (ZeRO-2, ZeRO-3). */
  clipGradNorm(owned: readonly Tensor[], maxNorm: number): Promise<number> {
    return nativeAsync(() =>
      nativeAddon().distClipGradNorm(
        this.handle,
        owned.map((t) => t.handle),
        maxNorm,
      ),
    )
  }
}

/** Gradients reduced during the backward (DistGroup.gradReducer; csrc/dist/grad_reducer.h). */
export class GradReducer {
  /** @internal */
  constructor(private readonly handle: NativeReducer) {}

  /** The next backward reduces (call it before the last micro-batch's backward of a step). */
  arm(): void {
    native(() => nativeAddon().distReducerArm(this.handle))
  }

  /** Unhooks the parameters and frees the reducer's tensors now; a later arm or finish is an error. */
  release(): void {
    native(() => nativeAddon().distReducerRelease(this.handle))
  }

  /** After the armed backward: waits for every bucket; this rank's gradients are then averaged over ranks. */
  finish(): Promise<ReducerStats> {
    return nativeAsync(() => nativeAddon().distReducerFinish(this.handle))
  }
}
