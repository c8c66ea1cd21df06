// Words a word-level (or any) tokenizer does not know become its unknown token without a sound;
// a data set tokenized with the wrong vocabulary then trains on [UNK]s. The loaders count them
// (an unknown token the text itself writes, e.g. "<unk>", is not counted) and warn once per split.
import type { PreferenceTokenizer } from './tokenizer'

/** Unknown tokens in a split: how many, in how many rows, and the first such row ("file:line"). */
export interface UnknownTokenReport {
  tokens: number
  rows: number
  example?: string
}

/** Unknown tokens in the encodings of a row's texts (0 for a tokenizer that cannot tell). */
export function countUnknown(tokenizer: PreferenceTokenizer, parts: readonly (readonly [string, readonly number[]])[]): number {
  if (!tokenizer.countUnknown) return 0
  let n = 0
  for (const [text, ids] of parts) n += tokenizer.countUnknown(text, ids)
  return n
}

export class UnknownTokenCount {
  private readonly r: UnknownTokenReport = { tokens: 0, rows: 0 }

  /** Adds row `source`'s count. */
  add(source: string, tokens: number): void {
    if (tokens === 0) return
    this.r.tokens += tokens
    this.r.rows += 1
    this.r.example ??= source
  }

  report(): UnknownTokenReport {
    return { ...this.r }
  }
}

/** The warning line for split `what`, or undefined when it had none. */
export function unknownTokenWarning(what: string, r: UnknownTokenReport, tokenizer: PreferenceTokenizer): string | undefined {
  if (r.tokens === 0) return undefined
  const s = (n: number) => (n === 1 ? '' : 's')
  return (
    `warning: ${what}: ${r.tokens} token${s(r.tokens)} in ${r.rows} row${s(r.rows)} ${r.tokens === 1 ? 'is' : 'are'} not in the ` +
    `tokenizer's vocabulary and became ${tokenizer.unkToken ?? 'the unknown token'} (first in ${r.example}); ` +
    "check that the model folder's tokenizer is the one this data was written for"
  )
}
