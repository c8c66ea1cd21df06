// The addon's exact surface. Nothing else in lib/ touches the raw module.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from './errors'
import type { OpTypes } from './ops-generated'
import type { Tensor } from './tensor'

/** Element types, named as the TypeScript API spells them. */
export type DType =
  | 'float32'
  | 'float64'
  | 'bfloat16'
  | 'float16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool'

export type HostArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array

export interface NativeTensor {
  shape(): number[]
  dtype(): DType
  device(): string
  requiresGrad(): boolean
  setRequiresGrad(value: boolean): void
  grad(): NativeTensor | undefined
  zeroGrad(): void
  backward(): void
  backwardAsync(): Promise<void>
  item(): number | boolean
  toArray(): HostArray
  to(...targets: (string | undefined)[]): NativeTensor
  dispose(): void
  isDisposed(): boolean
  numel(): number
  op(name: string, ...args: unknown[]): NativeTensor
}

/** An op's arguments or outputs as the addon sees them: native handles where the API has Tensors. */
export type Handles<T> = { [K in keyof T]: Handle<T[K]> }
type Handle<V> = V extends Tensor ? NativeTensor : V extends readonly (infer E)[] ? (E extends Tensor ? NativeTensor : E)[] : V

/** Every declared op (csrc/js_op_table.cc) as `name` and `nameAsync`. */
export type NativeOps = {
  [N in keyof OpTypes]: (args: Handles<OpTypes[N]['args']>) => Handles<OpTypes[N]['outputs']>
} & {
  [N in keyof OpTypes as `${N}Async`]: (args: Handles<OpTypes[N]['args']>) => Promise<Handles<OpTypes[N]['outputs']>>
}

/** The op table itself, as opDeclarations() returns it (scripts/gen-op-types.js turns it into lib/core/ops-generated.ts). */
export interface OpDeclarations {
  ops: {
    name: string
    doc: string
    args: {
      name: string
      kind:
        | 'tensor'
        | 'optionalTensor'
        | 'tensorList'
        | 'nullableTensorList'
        | 'number'
        | 'optionalNumber'
        | 'integer'
        | 'optionalInteger'
        | 'boolean'
        | 'optionalBoolean'
        | 'integerList'
        | 'string'
        | 'model'
        | 'readEntryList'
      doc: string
      default?: number | boolean
    }[]
    results: { name: string; optional: boolean; list?: true; doc: string }[]
  }[]
  pairRecordColumns: string[]
  inputErrors: { bit: number; message: string }[]
}

export interface NativeReadEntry {
  name: string
  dtype: DType
  shape: number[]
  offset: number
  nbytes: number
}

export interface NativeAdamWOptions {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
}

export interface NativeRuntime {
  libtorchVersion: string
  cudaBuild: boolean
  cudaAvailable: boolean
  /** Instruction set of the CPU kernels: 'avx512', 'avx2' or 'base' (cap it with EDPO_CPU_ISA=base|avx2). */
  cpuKernels: string
  threads: number
  buildSystem: string
  parallelInfo: string
  /** Device→host reads so far (Tensor.item/toArray, nonzero(), the clip's norm, ...): each one a sync on CUDA. */
  hostSyncs: number
}

/** A CausalLM's resolved config, as csrc/js_model.cc reads it (built by lib/model/config.ts). */
export interface NativeModelConfig {
  modelType: string
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  headDim: number
  rmsNormEps: number
  ropeTheta: number
  tieWordEmbeddings: boolean
  geluTanh: boolean
  gemmaNorm: boolean
  attnScale: number
  attnSoftcap: number
  finalSoftcap: number
  /** Per layer: sliding window (0 = full attention). */
  layerWindows: number[]
  ropeType: string
  ropeFactor: number
  ropeLowFreqFactor: number
  ropeHighFreqFactor: number
  ropeOriginalMaxPositions: number
}

/** An opaque handle owning one c10d process group (csrc/js_dist.cc). */
export type NativeGroup = { readonly __nativeGroup: unique symbol }

/** distCreateGroup's options: a FileStore at storePath, else a TCPStore at host:port. */
export interface NativeGroupOptions {
  backend: 'gloo' | 'nccl'
  rank: number
  worldSize: number
  storePath?: string
  host?: string
  port?: number
  /** torchrun ≥ 2's agent serves the store itself (TORCHELASTIC_USE_AGENT_STORE). */
  tcpClientOnly?: boolean
  glooInterface?: string
  glooHostname?: string
  timeoutMs: number
}

/** csrc/js_memory.cc: CPU tensor bytes (counted by the addon's allocator) and glibc's heaps; the heap fields are absent without glibc ≥ 2.33. */
export interface NativeMemoryStats {
  tensorBytes: number
  peakTensorBytes: number
  /** Linux: bytes of freed large tensor blocks the addon's allocator keeps mapped for reuse (bounded by the peak of live tensor bytes). */
  cachedBytes?: number
  /** Linux: large-block requests served by a cached block of the same length, and those that were not (resized from the nearest cached block, or newly mapped). */
  cacheHits?: number
  cacheMisses?: number
  /** Linux: misses served by resizing the cached block nearest in length (mremap keeps its pages). */
  cacheResized?: number
  heapBytes?: number
  heapFreeBytes?: number
  mmapBytes?: number
}

/** csrc/js_profiler.cc: the events libtorch's profiler recorded, as columns (one entry per event). */
export interface NativeProfile {
  names: string[]
  /** 1: a device event (a kernel, a copy, a memset), 0: a host op. */
  onDevice: Uint8Array
  startUs: Float64Array
  durationUs: Float64Array
  /** The host thread (0 for device events). */
  thread: Float64Array
}

/** An opaque handle owning one native CausalLM. */
export type NativeModel = { readonly __nativeModel: unique symbol }

/** @internal The LoRA dropout masks' seed and the training forwards that drew masks so far. */
export interface LoraDropoutState {
  seed: number
  forwards: number
}

/** @internal What modelAddLora takes (lib/model/lora.ts resolves and checks it first). */
export interface NativeLoraSpec {
  r: number
  alpha: number
  dropout: number
  useRslora: boolean
  /** Projection names as in the HF module path: 'self_attn.q_proj', 'mlp.down_proj', … */
  slots: string[]
  initSeed: number
  dtype: 'float32' | 'float64'
}

export interface Native extends NativeOps {
  NativeTensor: abstract new () => NativeTensor
  fromArray(data: HostArray, shape: number[], dtype?: DType, device?: string, requiresGrad?: boolean): NativeTensor
  full(shape: number[], value: number, dtype?: DType, device?: string): NativeTensor
  randn(shape: number[], dtype?: DType, device?: string): NativeTensor
  manualSeed(seed: number): void
  cat(tensors: NativeTensor[], dim: number): NativeTensor
  stack(tensors: NativeTensor[], dim: number): NativeTensor
  opDeclarations(): OpDeclarations
  writeTensors(path: string, header: Uint8Array, tensors: NativeTensor[]): void
  clipGradNorm(params: NativeTensor[], maxNorm: number): number
  runtime(): NativeRuntime
  memoryStats(): NativeMemoryStats
  resetPeakMemory(): void
  storageBytes(tensors: NativeTensor[]): number
  trimHeap(): void
  profilerStart(cuda: boolean): void
  profilerStop(): NativeProfile
  createModel(config: NativeModelConfig, names: string[], tensors: NativeTensor[]): NativeModel
  modelLmHead(model: NativeModel): { weight: NativeTensor; finalLogitSoftcap: number }
  modelParameters(model: NativeModel): { names: string[]; tensors: NativeTensor[] }
  modelSetTraining(model: NativeModel, training: boolean): void
  modelSetGradientCheckpointing(model: NativeModel, enabled: boolean): void
  modelClone(model: NativeModel): NativeModel
  modelShareBase(model: NativeModel): NativeModel
  modelAddLora(model: NativeModel, lora: NativeLoraSpec): void
  modelLoraParameters(model: NativeModel): { names: string[]; tensors: NativeTensor[] }
  modelMergeLora(model: NativeModel): void
  modelLoraDropoutState(model: NativeModel, set?: LoraDropoutState): LoraDropoutState
  setThreads(threads: number): void
  distCreateGroup(options: NativeGroupOptions): Promise<NativeGroup>
  distAllreduce(group: NativeGroup, tensors: NativeTensor[], o: { max: boolean; average: boolean; grads: boolean; bucketBytes: number }): Promise<void>
  distReduce(group: NativeGroup, tensors: NativeTensor[], o: { root: number; average: boolean; grads: boolean; bucketBytes: number }): Promise<void>
  distBroadcast(group: NativeGroup, tensors: NativeTensor[], o: { root: number; bucketBytes: number }): Promise<void>
  distAllgather(group: NativeGroup, tensor: NativeTensor): Promise<NativeTensor>
  distBarrier(group: NativeGroup): Promise<void>
  distClipGradNorm(group: NativeGroup, params: NativeTensor[], maxNorm: number): Promise<number>
  distNcclAvailable(): boolean
  /** Linux: SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); false when the parent is no longer `parentPid`. */
  distExitWithParent(parentPid: number): boolean
}

/** The package root: the nearest folder above this file holding edpo's package.json (from lib/ or dist/lib/). */
export const packageRoot = findPackageRoot(__dirname)

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json')
    if (fs.existsSync(manifest) && (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === 'edpo')
      return dir
    if (path.dirname(dir) === dir) return path.resolve(start, '..', '..')
  }
}

let loaded: Native | undefined
let addonPath: string | undefined

function loadFailure(cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new Error(
    [
      'edpo: could not load the native addon.',
      `  Reason: ${reason}`,
      '  edpo links libtorch 1.13 (CPU) or a newer libtorch. To fix:',
      '  - Debian/Ubuntu: apt-get install libtorch1.13 (runtime) or libtorch-dev (to build), plus libopenblas0-pthread',
      '  - another libtorch: set LIBTORCH=/path/to/libtorch (folder with include/ and lib/) and rebuild',
      '  - build from source: npm rebuild edpo --build-from-source (needs a C++17 compiler and libtorch headers)',
      '  - CUDA: EDPO_CUDA=1 npm run build:cuda against PyTorch\'s libtorch',
    ].join('\n'),
    { cause },
  )
}

/** Values of EDPO_CPU_ISA, the cap on the CPU kernels' instruction set (csrc/ops/cpu/row_ops_cpu.cc). */
export const CPU_ISA_VALUES = ['base', 'avx2', 'avx512'] as const

// The kernels read EDPO_CPU_ISA once and ignore values they do not know; a typo would silently
// run the widest kernels, so it is checked here before the addon is used.
function checkCpuIsa(): void {
  const isa = process.env.EDPO_CPU_ISA
  if (isa !== undefined && isa !== '' && !(CPU_ISA_VALUES as readonly string[]).includes(isa))
    throw new EdpoInputError(`EDPO_CPU_ISA: '${isa}' is not one of ${CPU_ISA_VALUES.join(', ')} (or unset for the widest the CPU supports)`)
}

// ATen's intra-op threads are libgomp's. By default they spin after each parallel region while
// OpenBLAS (its own pthreads) runs the matmuls, so spinning and GEMM threads share the cores: on
// a loaded 2-core machine 78% of a CPU training step went to that spin (bench/RESULTS.md). libgomp
// reads its policy once, when the addon loads it; a policy the user set (OMP_WAIT_POLICY or
// GOMP_SPINCOUNT) wins. Child processes (dist ranks) inherit the same setting.
function applyThreadWaitPolicy(): void {
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) process.env.OMP_WAIT_POLICY = 'PASSIVE'
}

/** The addon, loaded once (prebuilds/ first, then build/Release via node-gyp-build). */
export function nativeAddon(): Native {
  if (loaded) return loaded
  checkCpuIsa()
  applyThreadWaitPolicy()
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string }
    addonPath = nodeGypBuild.resolve(packageRoot)
    loaded = nodeGypBuild(packageRoot) as Native
  } catch (e) {
    throw loadFailure(e)
  }
  return loaded
}

/** Where the addon was loaded from (after the first load). */
export function nativeAddonPath(): string | undefined {
  return addonPath
}
