// What the addon runs on: libtorch version, CUDA, threads, where it was loaded from.
import { native } from './errors'
import { nativeAddon, nativeAddonPath, type NativeRuntime } from './native'

export type RuntimeInfo = NativeRuntime & {
  /** The .node file that was loaded. */
  addonPath: string | undefined
}

export function runtime(): RuntimeInfo {
  const r = native(() => nativeAddon().runtime())
  return { ...r, addonPath: nativeAddonPath() }
}

/** Sets libtorch's intra-op thread count for every native call (default: OMP_NUM_THREADS or all cores). */
export function setThreads(threads: number): void {
  native(() => nativeAddon().setThreads(threads))
}
