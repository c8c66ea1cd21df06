// Process memory as the addon sees it: CPU tensor bytes counted by its allocator (live, and the
// peak since the last reset), and glibc's heaps. trimHeap() gives freed heap pages back to the OS.
import * as fs from 'node:fs'

import { native } from './errors'
import { nativeAddon, type NativeDeviceMemory, type NativeMemoryStats } from './native'

/** @internal */
export function memoryStats(): NativeMemoryStats {
  return native(() => nativeAddon().memoryStats())
}

/** @internal Restarts the allocator's peak (peakTensorBytes) from the bytes live now. */
export function resetPeakTensorBytes(): void {
  native(() => nativeAddon().resetPeakMemory())
}

/**
 * @internal One device's tensor bytes as its allocator counts them: on the CPU the addon's counting
 * allocator (memoryStats), on a GPU CUDA's caching allocator, where a GPU step's memory is.
 */
export function deviceMemory(device: string): NativeDeviceMemory {
  return native(() => nativeAddon().deviceMemory(device))
}

/** @internal Restarts deviceMemory(device).peakTensorBytes from the bytes live now. */
export function resetDeviceMemoryPeak(device: string): void {
  native(() => nativeAddon().resetDeviceMemoryPeak(device))
}

/**
 * @internal Returns the free pages glibc's heaps hold to the OS (malloc_trim). Freed activations
 * stay in those heaps otherwise, fragmented between live blocks, and RSS climbs step after step.
 */
export function trimHeap(): void {
  native(() => nativeAddon().trimHeap())
}

/**
 * @internal This process's resident set size (VmRSS), in bytes; undefined where /proc/self/status
 * cannot be read (not Linux).
 */
export function residentBytes(): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}
