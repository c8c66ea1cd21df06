// metrics.jsonl: one JSON object per line (training step, evaluation, or end of run), appended
// and flushed as it happens so a crashed run keeps everything it logged.
import * as fs from 'node:fs'
import * as path from 'node:path'

export type Metrics = Record<string, number>

export class MetricsLog {
  readonly file: string

  constructor(runDir: string) {
    fs.mkdirSync(runDir, { recursive: true })
    this.file = path.join(runDir, 'metrics.jsonl')
  }

  write(entry: Metrics & { step: number }): void {
    fs.appendFileSync(this.file, JSON.stringify(entry) + '\n')
  }

  /** Drops lines after `step` (used when resuming from a checkpoint older than the log). */
  static truncateAfter(runDir: string, step: number): void {
    const file = path.join(runDir, 'metrics.jsonl')
    if (!fs.existsSync(file)) return
    const kept = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '' && (JSON.parse(line) as { step: number }).step <= step)
    fs.writeFileSync(file, kept.map((l) => l + '\n').join(''))
  }
}

/** Reads metrics.jsonl back (tests, reports). */
export function readMetrics(runDir: string): (Metrics & { step: number })[] {
  const file = path.join(runDir, 'metrics.jsonl')
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Metrics & { step: number })
}
