// Peak resident memory of this process (Linux /proc), for "peak extra memory" columns.
// libtorch's CPU allocator returns large blocks to the OS on free, so RSS tracks tensor memory.
import * as fs from 'node:fs'

function statusField(name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'))
  if (!m) throw new Error(`/proc/self/status has no ${name}`)
  return Number(m[1]) * 1024
}

export function rssBytes(): number {
  return statusField('VmRSS')
}

/** Resets the kernel's high-water mark (VmHWM) to the current RSS. */
export function resetPeakRss(): void {
  fs.writeFileSync('/proc/self/clear_refs', '5')
}

/** Peak RSS since the last reset, above `base` bytes. */
export function peakRssSince(base: number): number {
  return Math.max(0, statusField('VmHWM') - base)
}
