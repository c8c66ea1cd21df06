// Median wall time and peak extra RSS of a benchmark body, after one warm-up run.
import { peakRssSince, resetPeakRss, rssBytes } from './memory'

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
    const base = rssBytes()
    resetPeakRss()
    const t0 = performance.now()
    loss = fn(x)
    const dt = performance.now() - t0
    peak = Math.max(peak, peakRssSince(base))
    if (i > 0) times.push(dt) // the first run warms caches and the allocator
  }
  times.sort((a, b) => a - b)
  return { ms: times[Math.floor(times.length / 2)]!, peakBytes: peak, loss }
}
