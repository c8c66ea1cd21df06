// --skip-invalid's full list of skipped rows as a file a CLI user can open (the summary on
// standard error shows only the first few): one JSON object per row with split, file:line,
// field, reason and message.
import * as fs from 'node:fs'

import { fileError } from '../train/fs-errors'
import type { RowIssue } from './validate'

export function writeInvalidRows(file: string, splits: readonly { split: string; issues: readonly RowIssue[] }[]): number {
  const lines = splits.flatMap(({ split, issues }) =>
    issues.map((i) => JSON.stringify({ split, source: i.source, field: i.field, reason: i.reason, message: i.message })),
  )
  try {
    if (lines.length > 0) fs.writeFileSync(file, lines.join('\n') + '\n')
    // A stale list from an earlier resume of the same run would no longer be true.
    else fs.rmSync(file, { force: true })
  } catch (e) {
    throw fileError('cannot write', file, e)
  }
  return lines.length
}
