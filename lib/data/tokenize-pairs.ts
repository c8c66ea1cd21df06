// Text pair → token ids, with TRL's rules: prompt and completions are tokenized separately
// without special tokens (a chat template writes its own BOS), EOS is appended to each completion
// unless it already ends with it, the prompt keeps its END (maxPromptLength; its start with
// truncationMode 'keep_start'), a completion keeps its start (maxCompletionLength), and prompt +
// completion keeps its START (maxLength).
import type { TextPair } from './chat-template'
import type { PreferenceTokenizer } from './tokenizer'
import { countUnknown } from './unknown-tokens'

export interface TruncationOptions {
  /** Longest prompt + completion row; longer rows keep their start (the prompt, then the completion's start). */
  maxLength?: number
  /** Longest prompt; longer prompts keep their end, or their start with truncationMode 'keep_start'. */
  maxPromptLength?: number
  /** TRL's truncation_mode: which end of a prompt longer than maxPromptLength is kept. Default 'keep_end'. */
  truncationMode?: 'keep_start' | 'keep_end'
  /** Longest completion (EOS included); longer ones keep their start. */
  maxCompletionLength?: number
}

export interface TokenizedPair {
  /** "file:line" of the row it came from. */
  source: string
  prompt: Int32Array
  chosen: Int32Array
  rejected: Int32Array
}

export type TokenizeResult = (
  | { pair: TokenizedPair; truncated: boolean }
  /** The prompt alone (after maxPromptLength) fills maxLength: no completion token would remain. */
  | { pair: undefined; droppedPromptTooLong: true }
) & {
  /** Words not in the vocabulary, encoded as the unknown token (before truncation). */
  unknownTokens: number
}

function withEos(ids: number[], eos: number): number[] {
  return ids[ids.length - 1] === eos ? ids : [...ids, eos]
}

/** Tokenizes and truncates one pair. */
export function tokenizePair(pair: TextPair, source: string, tokenizer: PreferenceTokenizer, opts: TruncationOptions = {}): TokenizeResult {
  let prompt = tokenizer.encode(pair.prompt)
  let chosen = tokenizer.encode(pair.chosen)
  let rejected = tokenizer.encode(pair.rejected)
  const unknownTokens = countUnknown(tokenizer, [
    [pair.prompt, prompt],
    [pair.chosen, chosen],
    [pair.rejected, rejected],
  ])
  chosen = withEos(chosen, tokenizer.eosTokenId)
  rejected = withEos(rejected, tokenizer.eosTokenId)
  let truncated = false
  const cut = (ids: number[], keep: number, end: 'start' | 'end'): number[] => {
    if (ids.length <= keep) return ids
    truncated = true
    return end === 'start' ? ids.slice(0, keep) : ids.slice(ids.length - keep)
  }
  if (opts.maxPromptLength !== undefined) prompt = cut(prompt, opts.maxPromptLength, opts.truncationMode === 'keep_start' ? 'start' : 'end')
  if (opts.maxCompletionLength !== undefined) {
    chosen = cut(chosen, opts.maxCompletionLength, 'start')
    rejected = cut(rejected, opts.maxCompletionLength, 'start')
  }
  if (opts.maxLength !== undefined) {
    if (prompt.length >= opts.maxLength) return { pair: undefined, droppedPromptTooLong: true, unknownTokens }
    chosen = cut(chosen, opts.maxLength - prompt.length, 'start')
    rejected = cut(rejected, opts.maxLength - prompt.length, 'start')
  }
  return {
    pair: { source, prompt: Int32Array.from(prompt), chosen: Int32Array.from(chosen), rejected: Int32Array.from(rejected) },
    truncated,
    unknownTokens,
  }
}
