// Validates every row before training starts. Without skipInvalid the first problems stop the run
// (file:line and the field named); with it, bad rows are skipped and counted by reason. Either
// way nothing is dropped silently.
import { EdpoInputError } from '../core/errors'
import { type ChatTemplate, type TextPair, applyChatTemplate } from './chat-template'
import { isHhRow, type RowErrorReason, RowError, type RowFormat, normalizeRow } from './formats'
import type { RawRow } from './readers'

export interface RowIssue {
  source: string
  reason: RowErrorReason
  /** e.g. "chosen", "prompt[1].content"; "" for the whole row. */
  field: string
  /** "file:line: field: what is wrong". */
  message: string
}

export interface ValidatedRows {
  pairs: { source: string; pair: TextPair }[]
  skipped: Partial<Record<RowErrorReason, number>>
  issues: RowIssue[]
}

const SHOWN = 10

/** Formats issues as lines, the first ten in full. */
export function describeIssues(issues: readonly RowIssue[]): string {
  const lines = issues.slice(0, SHOWN).map((i) => i.message)
  if (issues.length > SHOWN) lines.push(`... and ${issues.length - SHOWN} more`)
  return lines.join('\n')
}

/** 'hh' when forced, or when every well-formed row is a raw Anthropic-HH transcript pair. */
export function rowFormatOf(rows: readonly RawRow[], format: RowFormat = 'auto'): 'hh' | 'plain' {
  if (format === 'hh') return 'hh'
  const parsed = rows.filter((r) => r.error === undefined)
  return parsed.length > 0 && parsed.every((r) => isHhRow(r.value)) ? 'hh' : 'plain'
}

/**
 * Normalises every row and renders conversational ones with `template`. Throws EdpoInputError
 * listing the bad rows unless `skipInvalid`. `format`: 'auto' (default) reads raw HH transcripts
 * when every row is one; 'hh' forces it.
 */
export function validateRows(
  rows: readonly RawRow[],
  opts: { template?: ChatTemplate; skipInvalid?: boolean; what?: string; format?: RowFormat },
): ValidatedRows {
  const format = rowFormatOf(rows, opts.format)
  const pairs: ValidatedRows['pairs'] = []
  const issues: RowIssue[] = []
  const skipped: ValidatedRows['skipped'] = {}
  for (const row of rows) {
    try {
      if (row.error !== undefined) throw new RowError('malformed JSON', '', row.error)
      const pair = normalizeRow(row.value, format)
      if (pair.kind === 'messages' && opts.template === undefined)
        throw new EdpoInputError(
          `${row.source}: the row is conversational but the tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)`,
        )
      pairs.push({ source: row.source, pair: opts.template ? applyChatTemplate(opts.template, pair) : (pair as TextPair) })
    } catch (e) {
      if (!(e instanceof RowError)) throw e
      issues.push({ source: row.source, reason: e.reason, field: e.field, message: `${row.source}: ${e.message}` })
      skipped[e.reason] = (skipped[e.reason] ?? 0) + 1
    }
  }
  if (issues.length > 0 && !opts.skipInvalid) {
    const n = issues.length
    throw new EdpoInputError(
      `${opts.what ?? 'data'}: ${n} invalid row${n === 1 ? '' : 's'} (pass skipInvalid / --skip-invalid to skip and count them):\n${describeIssues(issues)}`,
    )
  }
  return { pairs, skipped, issues }
}
