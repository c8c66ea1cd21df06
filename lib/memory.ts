// Process memory as the addon sees it: CPU tensor bytes counted by its allocator (live, and the
// peak since the last reset), and glibc's heaps. trimHeap() gives freed heap pages back to the OS.
import { native } from './errors'
import { nativeAddon, type NativeMemoryStats } from './native'

/** @internal */
export function memoryStats(): NativeMemoryStats {
  return native(() => nativeAddon().memoryStats())
}

/** @internal Restarts the allocator's peak (peakTensorBytes) from the bytes live now. */
export function resetPeakTensorBytes(): void {
  native(() => nativeAddon().resetPeakMemory())
}

/**
 * @internal Returns the free pages glibc's heaps hold to the OS (malloc_trim). Freed activations
 * stay in those heaps otherwise, fragmented between live blocks, and RSS climbs step after step.
 */
export function trimHeap(): void {
  native(() => nativeAddon().trimHeap())
}
