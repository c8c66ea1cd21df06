// Supervised fine-tuning data: {prompt, completion} rows (or {prompt, chosen}, i.e. SFT on the
// chosen answers of a preference set, as the paper's Anthropic-HH setting does), TRL's {messages}
// rows and conversational prompt/completion (rendered by the chat template), read with the same
// readers and glob expansion as preference data, tokenized with TRL's rules (prompt and completion
// separately, EOS appended, prompt keeps its end, prompt + completion keeps its start), and
// collated into right-padded rows whose loss mask covers the completion only.
import { EdpoInputError } from '../core/errors'
import { expandPaths } from './glob'
import { applyChatTemplate } from './chat-template'
import { normalizeSftRow, RowError, type SftPair } from './formats'
import { writeInvalidRows } from './invalid-rows'
import { readFiles } from './readers'
import { epochPermutation } from './sampler'
import { type PreferenceTokenizer, loadTokenizer } from './tokenizer'
import { type UnknownTokenReport, UnknownTokenCount, countUnknown, unknownTokenWarning } from './unknown-tokens'
import type { RowIssue } from './validate'

export interface SftExample {
  /** "file:line" of the row it came from. */
  source: string
  prompt: Int32Array
  /** Completion tokens, EOS included. */
  completion: Int32Array
}

export interface LoadSftDataOptions {
  data: string[]
  evalData?: string[]
  evalFraction?: number
  /** A model folder with tokenizer.json, or a loaded tokenizer. */
  tokenizer: string | PreferenceTokenizer
  maxLength?: number
  maxPromptLength?: number
  maxCompletionLength?: number
  truncationMode?: 'keep_start' | 'keep_end'
  skipInvalid?: boolean
  /** With skipInvalid: write every skipped row here (JSONL: split, file:line, field, reason, message). */
  invalidRowsFile?: string
  seed?: number
  log?: (line: string) => void
}

export interface SftData {
  train: SftExample[]
  eval: SftExample[] | undefined
  tokenizer: PreferenceTokenizer
}

/** Tokenizes one prompt/completion text pair; undefined when the prompt alone fills maxLength. */
export function tokenizeSftExample(
  prompt: string,
  completion: string,
  source: string,
  tokenizer: PreferenceTokenizer,
  o: { maxLength?: number; maxPromptLength?: number; maxCompletionLength?: number; truncationMode?: 'keep_start' | 'keep_end' } = {},
  /** Receives the count of words not in the vocabulary (before truncation). */
  stats?: { unknownTokens: number },
): SftExample | undefined {
  let p = tokenizer.encode(prompt)
  let c = tokenizer.encode(completion)
  if (stats)
    stats.unknownTokens = countUnknown(tokenizer, [
      [prompt, p],
      [completion, c],
    ])
  if (c[c.length - 1] !== tokenizer.eosTokenId) c.push(tokenizer.eosTokenId)
  if (o.maxPromptLength !== undefined && p.length > o.maxPromptLength)
    p = o.truncationMode === 'keep_start' ? p.slice(0, o.maxPromptLength) : p.slice(p.length - o.maxPromptLength)
  if (o.maxCompletionLength !== undefined) c = c.slice(0, o.maxCompletionLength)
  if (o.maxLength !== undefined) {
    if (p.length >= o.maxLength) return undefined
    c = c.slice(0, o.maxLength - p.length)
  }
  return { source, prompt: Int32Array.from(p), completion: Int32Array.from(c) }
}

// Conversational rows go through the tokenizer's chat template exactly as preference rows do, so
// an SFT model and the ε-DPO run after it see the same rendering.
function renderSftPair(pair: SftPair, tokenizer: PreferenceTokenizer, source: string): { prompt: string; completion: string } {
  if (pair.kind === 'text') return pair
  if (tokenizer.chatTemplate === undefined)
    throw new EdpoInputError(`${source}: the row is conversational but the tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)`)
  const text = applyChatTemplate(tokenizer.chatTemplate, { kind: 'messages', prompt: pair.prompt, chosen: pair.completion, rejected: pair.completion })
  return { prompt: text.prompt, completion: text.chosen }
}

interface Split {
  examples: SftExample[]
  rows: number
  invalid: RowIssue[]
  dropped: number
  unknown: UnknownTokenReport
}

async function readSplit(patterns: string[], what: string, tokenizer: PreferenceTokenizer, o: LoadSftDataOptions): Promise<Split> {
  const rows = await readFiles(expandPaths(patterns, what))
  const examples: SftExample[] = []
  const invalid: RowIssue[] = []
  const unknown = new UnknownTokenCount()
  let dropped = 0
  for (const row of rows) {
    let pair: { prompt: string; completion: string }
    try {
      if (row.error !== undefined) throw new RowError('malformed JSON', '', row.error)
      pair = renderSftPair(normalizeSftRow(row.value), tokenizer, row.source)
    } catch (e) {
      if (!(e instanceof RowError)) throw e
      const issue: RowIssue = { source: row.source, reason: e.reason, field: e.field, message: `${row.source}: ${e.message}` }
      if (!o.skipInvalid) throw new EdpoInputError(issue.message)
      invalid.push(issue)
      continue
    }
    const stats = { unknownTokens: 0 }
    const ex = tokenizeSftExample(pair.prompt, pair.completion, row.source, tokenizer, o, stats)
    unknown.add(row.source, stats.unknownTokens)
    if (ex) examples.push(ex)
    else dropped++
  }
  return { examples, rows: rows.length, invalid, dropped, unknown: unknown.report() }
}

function logSplit(what: string, s: Split, tokenizer: PreferenceTokenizer, o: LoadSftDataOptions): void {
  const listed = s.invalid.length > 0 && o.invalidRowsFile !== undefined ? ` (all listed in ${o.invalidRowsFile})` : ''
  o.log?.(
    `${what}: ${s.rows} rows → ${s.examples.length} examples` +
      (s.invalid.length ? `; skipped ${s.invalid.length} invalid${listed}` : '') +
      (s.dropped ? `; dropped ${s.dropped} whose prompt fills maxLength` : ''),
  )
  const warning = unknownTokenWarning(what, s.unknown, tokenizer)
  if (warning) o.log?.(warning)
}

/** Reads and tokenizes SFT rows; evalFraction holds out a seeded random subset. */
export async function loadSftData(o: LoadSftDataOptions): Promise<SftData> {
  if (o.evalData !== undefined && o.evalFraction !== undefined) throw new EdpoInputError('sft: give evalData or evalFraction, not both')
  const tokenizer = typeof o.tokenizer === 'string' ? loadTokenizer(o.tokenizer) : o.tokenizer
  const trainSplit = await readSplit(o.data, 'data', tokenizer, o)
  const evalRead = o.evalData !== undefined ? await readSplit(o.evalData, 'evalData', tokenizer, o) : undefined
  // Every skipped row goes to the file, so none is known only by a count.
  if (o.invalidRowsFile !== undefined)
    writeInvalidRows(o.invalidRowsFile, [
      { split: 'train', issues: trainSplit.invalid },
      { split: 'eval', issues: evalRead?.invalid ?? [] },
    ])
  logSplit('data', trainSplit, tokenizer, o)
  if (evalRead) logSplit('evalData', evalRead, tokenizer, o)
  let train = trainSplit.examples
  let evalSplit = evalRead?.examples
  if (evalRead === undefined && o.evalFraction !== undefined) {
    const k = Math.round(train.length * o.evalFraction)
    if (k < 1 || k >= train.length) throw new EdpoInputError(`sft.evalFraction: ${o.evalFraction} of ${train.length} examples leaves an empty split`)
    const held = new Set(Array.from(epochPermutation(train.length, o.seed ?? 0, -1).subarray(0, k)))
    evalSplit = train.filter((_, i) => held.has(i))
    train = train.filter((_, i) => !held.has(i))
  }
  if (train.length === 0) throw new EdpoInputError('sft: no training examples')
  return { train, eval: evalSplit, tokenizer }
}
