// mulberry32: the one small seeded generator behind every reproducible draw in edpo (the demo's
// task, label noise, β-DPO's filtering, bench statistics). Its 32-bit state is a plain number, so a
// checkpoint can store it and resume the same draws.

/** Advances `state.rng` and returns the next uniform draw in [0, 1). */
export function nextUniform(state: { rng: number }): number {
  state.rng = (state.rng + 0x6d2b79f5) >>> 0
  let t = state.rng
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** A generator of uniform draws in [0, 1), a function of `seed` alone. */
export function rng(seed: number): () => number {
  const state = { rng: seed >>> 0 }
  return () => nextUniform(state)
}
