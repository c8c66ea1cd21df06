// Median wall time and peak extra tensor memory of a benchmark body, after one warm-up run. The
// memory is the addon's count of live CPU tensor bytes, not RSS: the allocator keeps freed blocks
// for reuse (up to the peak), so RSS would show an earlier row's peak, not this body's.
import { memoryStats, resetPeakTensorBytes } from '../lib/core/memory'

export interface Measured {
  ms: number
  peakBytes: number
  loss: number
}

export function measure<X>(fn: (x: X) => number, x: X, reps: number, reset: (x: X) => void): Measured {
  const times: number[] = []
  let peak = 0
  let loss = 0
  for (let i = 0; i <= reps; i++) {
    reset(x)
    global.gc?.()
    const base = memoryStats().tensorBytes
    resetPeakTensorBytes()
    const t0 = performance.now()
    loss = fn(x)
    const dt = performance.now() - t0
    peak = Math.max(peak, memoryStats().peakTensorBytes - base)
    if (i > 0) times.push(dt) // the first run warms caches and the allocator
  }
  times.sort((a, b) => a - b)
  return { ms: times[Math.floor(times.length / 2)]!, peakBytes: peak, loss }
}
