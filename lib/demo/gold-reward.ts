// The demo's gold reward: the judge that plays PairRM. A prompt is a few digits followed by '='
// ("4719="); the ideal completion is the same digits in ascending order ("1479"). The score adds
// up what a reader would check:
//   right digits   the share of the prompt's digits the answer uses (multiset overlap),
//   ascending      the share of neighbouring pairs that do not go down,
//   right length   minus 0.5 per character too many or too few, relative to the prompt's digits.
//   reward = overlap · (0.25 + 0.75 · ascending) − 0.5 · |length error| / n     (1 is perfect)
// "Ascending" alone is easy to game ("0123" for any prompt): the overlap factor makes such answers
// score poorly, so a policy that drifts far from the reference's copying behaviour loses reward.
// This file is also a module for `edpo eval --gold <module>`: it exports `reward(prompt, completion)`.

/** The digits a prompt asks to sort: the text before '='. */
export function promptDigits(prompt: string): string {
  const end = prompt.indexOf('=')
  return end < 0 ? prompt : prompt.slice(0, end)
}

/** Fraction of the target's characters matched by the answer's (multiset intersection / target length). */
export function overlap(target: string, answer: string): number {
  if (target.length === 0) return 0
  const counts = new Map<string, number>()
  for (const c of target) counts.set(c, (counts.get(c) ?? 0) + 1)
  let hits = 0
  for (const c of answer) {
    const k = counts.get(c) ?? 0
    if (k > 0) {
      hits++
      counts.set(c, k - 1)
    }
  }
  return hits / target.length
}

/** Fraction of neighbouring digit pairs in non-decreasing order; a non-digit breaks its pairs. */
export function ascending(answer: string): number {
  if (answer.length < 2) return answer.length === 1 && /\d/.test(answer) ? 1 : 0
  let ok = 0
  for (let i = 1; i < answer.length; i++) {
    const a = answer[i - 1]!
    const b = answer[i]!
    if (/\d/.test(a) && /\d/.test(b) && a <= b) ok++
  }
  return ok / (answer.length - 1)
}

/** The gold reward of `completion` for `prompt` (see the top of this file). */
export function reward(prompt: string, completion: string): number {
  const digits = promptDigits(prompt)
  const n = Math.max(1, digits.length)
  const answer = completion.trim()
  return overlap(digits, answer) * (0.25 + 0.75 * ascending(answer)) - (0.5 * Math.abs(answer.length - digits.length)) / n
}
