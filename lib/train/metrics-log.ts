// metrics.jsonl: one JSON object per line (training step, evaluation, or end of run), appended
// and flushed as it happens so a crashed run keeps everything it logged. A crash (or a full disk)
// can tear the last line; readers drop it with a warning instead of failing on it.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { fileError } from './fs-errors'
import { TensorBoardWriter } from './tensorboard'

export type Metrics = Record<string, number>
type Entry = Metrics & { step: number }

/** Where else a run's metrics go (--report-to, --logging-dir, --run-name). */
export interface Reporting {
  reportTo: 'none' | 'tensorboard'
  loggingDir?: string
  runName?: string
}

// Set by openRun for a run folder before its trainer makes the log, so every trainer's log reports
// the same way without each passing the options down.
const reportingByRun = new Map<string, Reporting>()

export class MetricsLog {
  readonly file: string
  /** With --report-to tensorboard: the event file written beside metrics.jsonl. */
  readonly tensorboard: TensorBoardWriter | undefined

  constructor(runDir: string) {
    this.file = path.join(runDir, 'metrics.jsonl')
    try {
      fs.mkdirSync(runDir, { recursive: true })
    } catch (e) {
      throw fileError('cannot create', runDir, e)
    }
    const r = reportingByRun.get(path.resolve(runDir))
    this.tensorboard = r?.reportTo === 'tensorboard' ? new TensorBoardWriter(path.join(r.loggingDir ?? runDir, r.runName ?? '')) : undefined
  }

  /** The reporting of the run in `runDir` (checked: --logging-dir without TensorBoard would write nothing). */
  static configure(runDir: string, reporting: Reporting): void {
    if (reporting.loggingDir !== undefined && reporting.reportTo !== 'tensorboard')
      throw new EdpoInputError(
        `--logging-dir ${reporting.loggingDir} (TRL: logging_dir) is where TensorBoard event files go: add --report-to tensorboard (report_to: tensorboard), or remove it`,
      )
    reportingByRun.set(path.resolve(runDir), reporting)
  }

  write(entry: Entry): void {
    try {
      fs.appendFileSync(this.file, JSON.stringify(entry) + '\n')
    } catch (e) {
      throw fileError('cannot write', this.file, e)
    }
    this.tensorboard?.scalars(entry.step, entry)
  }

  /**
   * Keeps the lines at or before `step` (resuming from a checkpoint older than the log, e.g. after
   * a kill). A torn last line is dropped with a warning; a bad line elsewhere is an error.
   */
  static truncateAfter(runDir: string, step: number, log: (line: string) => void = () => {}): void {
    const file = path.join(runDir, 'metrics.jsonl')
    if (!fs.existsSync(file)) return
    const entries = parseLines(file, log)
    const kept = entries.filter((e) => e.entry.step <= step)
    if (kept.length < entries.length)
      log(`metrics.jsonl: dropped ${entries.length - kept.length} lines after step ${step} (logged after the checkpoint resumed from)`)
    try {
      fs.writeFileSync(file, kept.map((e) => e.line + '\n').join(''))
    } catch (e) {
      throw fileError('cannot write', file, e)
    }
  }
}

function parseLines(file: string, warn: (line: string) => void): { line: string; entry: Entry }[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n')
  const out: { line: string; entry: Entry }[] = []
  let last = lines.length - 1
  while (last >= 0 && lines[last]!.trim() === '') last--
  lines.forEach((line, i) => {
    if (line.trim() === '') return
    let entry: unknown
    try {
      entry = JSON.parse(line)
    } catch (e) {
      if (i === last) {
        warn(`warning: ${file}:${i + 1}: dropped a torn last line (the run was cut off while writing it)`)
        return
      }
      throw new EdpoInputError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`)
    }
    if (typeof entry !== 'object' || entry === null || typeof (entry as { step?: unknown }).step !== 'number')
      throw new EdpoInputError(`${file}:${i + 1}: expected an object with a numeric step`)
    out.push({ line, entry: entry as Entry })
  })
  return out
}

/** Reads metrics.jsonl back (tests, reports); a torn last line is skipped. */
export function readMetrics(runDir: string): Entry[] {
  return parseLines(path.join(runDir, 'metrics.jsonl'), () => {}).map((e) => e.entry)
}
