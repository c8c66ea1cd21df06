// --label-noise p: swaps chosen and rejected in a seeded fraction p of the training pairs, the
// controlled noise under which the paper's instance-level adaptivity argument can be measured.
// Exactly round(p·N) pairs flip; which ones is a function of the seed alone (a partial
// Fisher–Yates shuffle with mulberry32), so every method at one seed sees the same noisy data.
import type { TokenizedPair } from '../../data'
import { rng } from '../../core/rng'

/** The flipped pairs' indices (ascending) among `count`, for fraction `p` and `seed`. */
export function noisyPairIndices(count: number, p: number, seed: number): number[] {
  const n = Math.round(p * count)
  const next = rng(seed ^ 0x5bd1e995)
  const order = Array.from({ length: count }, (_, i) => i)
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(next() * (count - i))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order.slice(0, n).sort((x, y) => x - y)
}

/** A copy of `pairs` with chosen and rejected swapped at noisyPairIndices(…). */
export function withLabelNoise(pairs: readonly TokenizedPair[], p: number, seed: number): { pairs: TokenizedPair[]; flipped: number } {
  const flip = new Set(noisyPairIndices(pairs.length, p, seed))
  return { pairs: pairs.map((q, i) => (flip.has(i) ? { ...q, chosen: q.rejected, rejected: q.chosen } : q)), flipped: flip.size }
}
