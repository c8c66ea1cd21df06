// The data pipeline's entry: files → rows → validated pairs → token ids, with a report of every
// row that was skipped, dropped or truncated. Batching is separate (PairSampler + collate).
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { formatZodError } from '../core/validate'
import { expandPaths } from './glob'
import { readFiles } from './readers'
import { epochPermutation } from './sampler'
import { type PreferenceTokenizer, loadTokenizer } from './tokenizer'
import { type TokenizedPair, type TruncationOptions, tokenizePair } from './tokenize-pairs'
import { type RowIssue, validateRows } from './validate'
import { writeInvalidRows } from './invalid-rows'
import { type UnknownTokenReport, UnknownTokenCount, unknownTokenWarning } from './unknown-tokens'

export {
  type Batch,
  type HostBatch,
  type HostRows,
  type RowTensors,
  type SequenceBatch,
  IGNORE_INDEX,
  collate,
  collateHost,
  collateHostRows,
  collateSequences,
  paddingLayout,
} from './collator'
export { type ChatTemplate, type TextPair, applyChatTemplate, compileChatTemplate } from './chat-template'
export { type Message, type PreferencePair, type RowErrorReason, type RowFormat, RowError, type SftPair, normalizeRow, normalizeSftRow } from './formats'
export { type LoadSftDataOptions, type SftData, type SftExample, loadSftData, tokenizeSftExample } from './sft-data'
export { expandPaths } from './glob'
export { type RawRow, readFile, readFiles, readJsonBuffer, readJsonText } from './readers'
export { PairSampler, type SamplerOptions, type SamplerState, epochPermutation, lengthGroupedPermutation } from './sampler'
export { type PreferenceTokenizer, createTokenizer, loadTokenizer } from './tokenizer'
export { type TokenizeResult, type TokenizedPair, type TruncationOptions, tokenizePair } from './tokenize-pairs'
export { type RowIssue, type ValidatedRows, describeIssues, validateRows } from './validate'
export type { UnknownTokenReport } from './unknown-tokens'

export interface LoadPreferenceDataOptions extends TruncationOptions {
  /** Files or globs: .jsonl/.ndjson, .json (array or lines), .parquet. */
  data: string | string[]
  /** A separate evaluation split (files or globs). */
  evalData?: string | string[]
  /** Or hold out this fraction of `data` for evaluation, chosen with `seed`. */
  evalFraction?: number
  /** A model directory with tokenizer.json (+ tokenizer_config.json), or a loaded tokenizer. */
  tokenizer: string | PreferenceTokenizer
  /** How the summary and invalid-rows.jsonl name the `data` split: 'train' (default), or 'eval' when
   *  the pairs are only evaluated (edpo eval). */
  label?: 'train' | 'eval'
  /** 'auto' (default): raw Anthropic-HH transcripts are detected per split; 'hh' forces that reading. */
  dataFormat?: 'auto' | 'hh'
  /** Skip and count invalid rows instead of stopping. */
  skipInvalid?: boolean
  /** With skipInvalid: write every skipped row here (JSONL: split, file:line, field, reason, message). */
  invalidRowsFile?: string
  /** Seed of the evalFraction split. Default 0. */
  seed?: number
  /** Receives the summary lines; default: standard error. */
  log?: (line: string) => void
}

export interface DataReport {
  files: string[]
  /** Rows read, valid or not. */
  rows: number
  /** Pairs kept. */
  pairs: number
  /** Invalid rows skipped (skipInvalid), by reason. */
  skipped: Record<string, number>
  /** Each skipped row: file:line, field and problem. */
  invalid: RowIssue[]
  /** Pairs dropped because the prompt alone fills maxLength. */
  droppedPromptTooLong: number
  /** Pairs kept with some part cut by maxPromptLength, maxCompletionLength or maxLength. */
  truncated: number
  /** Words not in the tokenizer's vocabulary that became its unknown token: count, rows, first row. */
  unknownTokens: UnknownTokenReport
}

export interface PreferenceData {
  train: TokenizedPair[]
  /** Present with evalData or evalFraction. */
  eval: TokenizedPair[] | undefined
  tokenizer: PreferenceTokenizer
  report: { train: DataReport; eval?: DataReport }
}

const paths = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])
const length = z.number().int().positive().optional()
/** The options' schema, for composing CLI / config schemas. */
export const preferenceDataOptionsSchema = z
  .object({
    data: paths,
    evalData: paths.optional(),
    evalFraction: z.number().gt(0).lt(1).optional(),
    tokenizer: z.union([
      z.string().min(1),
      z.custom<PreferenceTokenizer>((v) => v !== null && typeof v === 'object' && 'encode' in v, 'expected a directory or a tokenizer'),
    ]),
    maxLength: length,
    maxPromptLength: length,
    maxCompletionLength: length,
    truncationMode: z.enum(['keep_start', 'keep_end']).optional(),
    dataFormat: z.enum(['auto', 'hh']).optional(),
    label: z.enum(['train', 'eval']).optional(),
    skipInvalid: z.boolean().optional(),
    invalidRowsFile: z.string().min(1).optional(),
    seed: z.number().int().optional(),
    log: z.custom<(line: string) => void>((v) => typeof v === 'function', 'expected a function').optional(),
  })
  .strict()
  .refine((o) => o.evalData === undefined || o.evalFraction === undefined, { message: 'give evalData or evalFraction, not both', path: ['evalFraction'] })

interface Split {
  pairs: TokenizedPair[]
  report: DataReport
}

async function loadSplit(patterns: string | string[], what: string, tokenizer: PreferenceTokenizer, o: LoadPreferenceDataOptions): Promise<Split> {
  const files = expandPaths(typeof patterns === 'string' ? [patterns] : patterns, what)
  const rows = await readFiles(files)
  const valid = validateRows(rows, { template: tokenizer.chatTemplate, skipInvalid: o.skipInvalid, what, format: o.dataFormat })
  const pairs: TokenizedPair[] = []
  let dropped = 0
  let truncated = 0
  const unknown = new UnknownTokenCount()
  for (const { source, pair } of valid.pairs) {
    let r: ReturnType<typeof tokenizePair>
    try {
      r = tokenizePair(pair, source, tokenizer, o)
    } catch (e) {
      if (e instanceof EdpoInputError) throw new EdpoInputError(`${source}: ${e.message}`, { cause: e })
      throw e
    }
    unknown.add(source, r.unknownTokens)
    if (r.pair === undefined) dropped++
    else {
      pairs.push(r.pair)
      if (r.truncated) truncated++
    }
  }
  const skipped: Record<string, number> = { ...valid.skipped }
  return {
    pairs,
    report: {
      files,
      rows: rows.length,
      pairs: pairs.length,
      skipped,
      invalid: valid.issues,
      droppedPromptTooLong: dropped,
      truncated,
      unknownTokens: unknown.report(),
    },
  }
}

/** One line per split, e.g. "train: 1000 rows from 2 files → 990 pairs; skipped 8 (5 missing field, ...); ...". */
export function formatReport(what: string, r: DataReport, maxLength?: number): string {
  const n = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? '' : 's'}`
  const parts = [`${what}: ${n(r.rows, 'row')} from ${n(r.files.length, 'file')} → ${n(r.pairs, 'pair')}`]
  const skipped = Object.entries(r.skipped)
  if (skipped.length > 0) {
    const total = skipped.reduce((a, [, n]) => a + n, 0)
    parts.push(`skipped ${total} invalid (${skipped.map(([k, n]) => `${n} ${k}`).join(', ')})`)
  }
  if (r.droppedPromptTooLong > 0) parts.push(`dropped ${r.droppedPromptTooLong} whose prompt alone fills maxLength${maxLength ? ` ${maxLength}` : ''}`)
  if (r.truncated > 0) parts.push(`truncated ${r.truncated}`)
  return parts.join('; ')
}

const EXAMPLES = 3

// The first skipped rows in full, so they can be found and fixed; the rest are in the file, when
// there is one, else in the returned report.
function logExamples(log: (line: string) => void, r: DataReport, invalidRowsFile: string | undefined): void {
  for (const issue of r.invalid.slice(0, EXAMPLES)) log(`  skipped ${issue.message}`)
  if (r.invalid.length > EXAMPLES) log(`  ... ${r.invalid.length - EXAMPLES} more in ${invalidRowsFile ?? 'report.invalid'}`)
}

function logUnknown(log: (line: string) => void, what: string, r: DataReport, tokenizer: PreferenceTokenizer): void {
  const line = unknownTokenWarning(what, r.unknownTokens, tokenizer)
  if (line) log(line)
}

/** Reads, validates, renders and tokenizes the training (and evaluation) data. */
export async function loadPreferenceData(options: LoadPreferenceDataOptions): Promise<PreferenceData> {
  const parsed = preferenceDataOptionsSchema.safeParse(options)
  if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'loadPreferenceData'))
  const o = options
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const tokenizer = typeof o.tokenizer === 'string' ? loadTokenizer(o.tokenizer) : o.tokenizer
  const train = await loadSplit(o.data, 'data', tokenizer, o)
  let evalSplit: Split | undefined
  if (o.evalData !== undefined) evalSplit = await loadSplit(o.evalData, 'evalData', tokenizer, o)
  else if (o.evalFraction !== undefined) {
    const n = train.pairs.length
    const k = Math.round(n * o.evalFraction)
    if (k < 1 || k >= n) throw new EdpoInputError(`loadPreferenceData.evalFraction: ${o.evalFraction} of ${n} pairs leaves an empty split`)
    const perm = epochPermutation(n, o.seed ?? 0, -1)
    // Both splits keep the file order.
    const held = new Set(Array.from(perm.subarray(0, k)))
    const kept = train.pairs.filter((_, i) => !held.has(i))
    const evalPairs = train.pairs.filter((_, i) => held.has(i))
    train.report.pairs = kept.length
    train.pairs = kept
    evalSplit = {
      pairs: evalPairs,
      report: {
        files: train.report.files,
        rows: k,
        pairs: evalPairs.length,
        skipped: {},
        invalid: [],
        droppedPromptTooLong: 0,
        truncated: 0,
        unknownTokens: { tokens: 0, rows: 0 },
      },
    }
  }
  const label = o.label ?? 'train'
  // Every skipped row goes to the file, so none is known only by a count.
  const invalidRowsFile = o.invalidRowsFile
  if (invalidRowsFile !== undefined)
    writeInvalidRows(invalidRowsFile, [
      { split: label, issues: train.report.invalid },
      { split: 'eval', issues: evalSplit?.report.invalid ?? [] },
    ])
  if (train.pairs.length === 0)
    throw new EdpoInputError(
      `data: no pairs left (${formatReport('data', train.report, o.maxLength)})${invalidRowsFile !== undefined && train.report.invalid.length > 0 ? `; the skipped rows are listed in ${invalidRowsFile}` : ''}`,
    )
  const listed = (r: DataReport) => (invalidRowsFile !== undefined && r.invalid.length > 0 ? `; all skipped rows in ${invalidRowsFile}` : '')
  log(formatReport(label, train.report, o.maxLength) + listed(train.report))
  logExamples(log, train.report, invalidRowsFile)
  logUnknown(log, label, train.report, tokenizer)
  if (evalSplit) {
    log(
      formatReport('eval', evalSplit.report, o.maxLength) +
        (o.evalFraction !== undefined ? ` (held out from train, fraction ${o.evalFraction})` : '') +
        listed(evalSplit.report),
    )
    logExamples(log, evalSplit.report, invalidRowsFile)
    logUnknown(log, 'eval', evalSplit.report, tokenizer)
  }
  return { train: train.pairs, eval: evalSplit?.pairs, tokenizer, report: { train: train.report, eval: evalSplit?.report } }
}
