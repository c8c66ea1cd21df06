// On-policy preference data, as in the paper's Instruct setting where PairRM labels rollouts: two
// sampled completions per prompt, scored by the gold judge; the higher one is chosen. Ties (equal
// rewards, which includes identical completions) carry no preference and are dropped.
export interface LabelledPair {
  prompt: string
  chosen: string
  rejected: string
  chosenReward: number
  rejectedReward: number
}

export interface LabelResult {
  pairs: LabelledPair[]
  /** Prompts whose two completions scored the same. */
  ties: number
  /** Prompts where a completion was empty (nothing to train on). */
  empty: number
}

/** Pairs up a[i] and b[i] for prompt i by their rewards ra[i], rb[i]. */
export function labelPairs(prompts: readonly string[], a: readonly string[], b: readonly string[], ra: readonly number[], rb: readonly number[]): LabelResult {
  const pairs: LabelledPair[] = []
  let ties = 0
  let empty = 0
  prompts.forEach((prompt, i) => {
    if (a[i] === '' || b[i] === '') {
      empty++
      return
    }
    if (ra[i] === rb[i]) {
      ties++
      return
    }
    const aWins = ra[i]! > rb[i]!
    pairs.push({
      prompt,
      chosen: aWins ? a[i]! : b[i]!,
      rejected: aWins ? b[i]! : a[i]!,
      chosenReward: Math.max(ra[i]!, rb[i]!),
      rejectedReward: Math.min(ra[i]!, rb[i]!),
    })
  })
  return { pairs, ties, empty }
}
