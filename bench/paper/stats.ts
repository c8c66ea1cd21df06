// Seed statistics for bench/paper: the mean with a Student-t 95% interval, and the percentile
// bootstrap of a mean (for paired differences against DPO at the same seed).
import { rng } from '../../lib/core/rng'

export interface Interval {
  mean: number
  lo: number
  hi: number
}

// Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom; 1.96 beyond.
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069,
  2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
]

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

/** Mean ± t·s/√n (n = 1: the interval is the point). */
export function meanCi(xs: readonly number[]): Interval {
  const m = mean(xs)
  if (xs.length < 2) return { mean: m, lo: m, hi: m }
  const s = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1))
  const half = (T975[xs.length - 2] ?? 1.96) * (s / Math.sqrt(xs.length))
  return { mean: m, lo: m - half, hi: m + half }
}

/** Percentile bootstrap 95% interval of the mean, `resamples` draws with a seeded generator. */
export function bootstrapMeanCi(xs: readonly number[], resamples: number, seed: number): Interval {
  const next = rng(seed)
  const n = xs.length
  const means = Array.from({ length: resamples }, () => {
    let s = 0
    for (let i = 0; i < n; i++) s += xs[Math.floor(next() * n)]!
    return s / n
  }).sort((x, y) => x - y)
  const q = (p: number) => means[Math.min(resamples - 1, Math.max(0, Math.round(p * (resamples - 1))))]!
  return { mean: mean(xs), lo: q(0.025), hi: q(0.975) }
}
