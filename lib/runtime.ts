// What the addon runs on: libtorch version, CUDA, threads, where it was loaded from.
import { native } from './errors'
import { nativeAddon, nativeAddonPath } from './native'

export interface RuntimeInfo {
  libtorchVersion: string
  cudaBuild: boolean
  cudaAvailable: boolean
  /** Instruction set of the CPU kernels: 'avx512', 'avx2' or 'base' (cap it with EDPO_CPU_ISA=base|avx2). */
  cpuKernels: string
  threads: number
  buildSystem: string
  addonPath: string | undefined
  parallelInfo: string
}

export function runtime(): RuntimeInfo {
  const r = native(() => nativeAddon().runtime())
  return { ...r, addonPath: nativeAddonPath() }
}

/** Sets libtorch's intra-op thread count for every native call (default: OMP_NUM_THREADS or all cores). */
export function setThreads(threads: number): void {
  native(() => nativeAddon().setThreads(threads))
}
