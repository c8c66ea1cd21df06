// Numeric comparisons that report the worst element, for tap tests.
export interface Closeness {
  ok: boolean
  worst: number
  index: number
  got: number
  want: number
}

/** |got − want| ≤ atol + rtol·|want| elementwise; returns the worst offender. */
export function close(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol = 0): Closeness {
  if (got.length !== want.length) return { ok: false, worst: Infinity, index: -1, got: got.length, want: want.length }
  let worst = 0
  let index = -1
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!
    const w = want[i]!
    const excess = g === w ? 0 : Math.abs(g - w) / (atol + rtol * Math.abs(w))
    if (!(excess <= worst)) {
      // NaN lands here too and is never ok.
      worst = Number.isNaN(excess) ? Infinity : excess
      index = i
    }
  }
  return { ok: worst <= 1, worst, index, got: index >= 0 ? got[index]! : 0, want: index >= 0 ? want[index]! : 0 }
}

export function describe(c: Closeness): string {
  return `worst at [${c.index}]: got ${c.got}, want ${c.want} (${c.worst.toFixed(3)}× the tolerance)`
}
