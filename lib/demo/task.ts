// The demo's synthetic task (see gold-reward.ts for what is rewarded): prompts "4719=" of 4 to 6
// random digits, and imperfect demonstrations for the reference's SFT. A demonstration is the
// prompt's digits after a random number of bubble-sort passes (0 passes: a plain copy; n − 1: fully
// sorted), sometimes with one digit dropped, doubled or replaced. The SFT model thus learns a spread
// of behaviours, and its samples differ in quality: the preference "more sorted, right digits" is
// learnable from pairs of them, but not already solved by the reference.

import { rng } from '../core/rng'

// The demo's data are a function of the seed alone.
export { rng }

const int = (next: () => number, lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))

export interface TaskOptions {
  minDigits?: number
  maxDigits?: number
}

/** `count` prompts such as "4719=". */
export function makePrompts(count: number, seed: number, o: TaskOptions = {}): string[] {
  const next = rng(seed)
  return Array.from({ length: count }, () => {
    const n = int(next, o.minDigits ?? 4, o.maxDigits ?? 6)
    return Array.from({ length: n }, () => String(int(next, 0, 9))).join('') + '='
  })
}

/** k passes of bubble sort over the digits. */
export function bubblePasses(digits: string, k: number): string {
  const d = [...digits]
  for (let pass = 0; pass < k; pass++) for (let i = 0; i + 1 < d.length - pass; i++) if (d[i]! > d[i + 1]!) [d[i], d[i + 1]] = [d[i + 1]!, d[i]!]
  return d.join('')
}

/** An imperfect demonstration for `prompt` (see the top of this file); `noise` is the chance of one slip. */
export function demonstration(prompt: string, next: () => number, noise = 0.15): string {
  const digits = prompt.slice(0, prompt.indexOf('='))
  let out = bubblePasses(digits, int(next, 0, digits.length - 1))
  if (next() < noise) {
    const i = int(next, 0, out.length - 1)
    const kind = int(next, 0, 2)
    if (kind === 0 && out.length > 1) out = out.slice(0, i) + out.slice(i + 1)
    else if (kind === 1) out = out.slice(0, i) + out[i] + out.slice(i)
    else out = out.slice(0, i) + String(int(next, 0, 9)) + out.slice(i + 1)
  }
  return out
}

/** SFT rows {prompt, completion} for `prompts`. */
export function demonstrations(prompts: readonly string[], seed: number, noise = 0.15): { prompt: string; completion: string }[] {
  const next = rng(seed)
  return prompts.map((prompt) => ({ prompt, completion: demonstration(prompt, next, noise) }))
}
