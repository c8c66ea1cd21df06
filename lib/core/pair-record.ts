// The per-pair record of the ε-DPO ops: one float64 row per pair, columns PAIR_RECORD_COLUMNS
// (declared once in csrc/ops/pair_loss.h). A trainer keeps the records of a whole optimizer step
// on the device and reads them to the host once; these helpers name the columns of that copy.
import { EdpoInputError } from './errors'
import { INPUT_ERRORS, PAIR_RECORD_COLUMNS } from './ops-generated'

export { INPUT_ERRORS, PAIR_RECORD_COLUMNS }

/** One record column's name. */
export type PairRecordColumn = (typeof PAIR_RECORD_COLUMNS)[number]

/** A host copy of records, column by column: one Float64Array of length `pairs` per column. */
export type PairRecordColumns = Record<PairRecordColumn, Float64Array> & { pairs: number }

/** Index of a column in the record. */
export function pairColumn(name: PairRecordColumn): number {
  return PAIR_RECORD_COLUMNS.indexOf(name)
}

/** Splits a row-major host copy of [pairs, k] records into named columns. */
export function pairRecordColumns(host: Float64Array): PairRecordColumns {
  const k = PAIR_RECORD_COLUMNS.length
  if (host.length % k !== 0) throw new EdpoInputError(`pair record: ${host.length} values are not rows of ${k} columns`)
  const pairs = host.length / k
  const out = { pairs } as PairRecordColumns
  PAIR_RECORD_COLUMNS.forEach((name, c) => {
    const column = new Float64Array(pairs)
    for (let i = 0; i < pairs; i++) column[i] = host[i * k + c]!
    out[name] = column
  })
  return out
}

/**
 * Throws EdpoInputError naming the argument when a device-side input-error flag is set (the ops
 * check tensor values on a GPU without reading them; the flag comes back with the results).
 */
export function checkInputErrors(flags: ArrayLike<number>): void {
  let bits = 0
  for (let i = 0; i < flags.length; i++) bits |= flags[i]!
  const problems = INPUT_ERRORS.filter((e) => (bits & e.bit) !== 0).map((e) => e.message)
  if (problems.length > 0) throw new EdpoInputError(problems.join('; '))
}
