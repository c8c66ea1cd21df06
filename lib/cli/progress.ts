// Training progress on the terminal: one redrawn line on a TTY, plain lines otherwise (CI, logs).
import type { Metrics } from '../train/metrics-log'

/** Which metrics a progress line shows: [label, metric key, significant digits]. */
export type ProgressFields = readonly (readonly [string, string, number?])[]

export const TRAIN_FIELDS: ProgressFields = [
  ['loss', 'loss'],
  ['acc', 'rewards/accuracies'],
  ['β', 'kl/beta', 5],
]

export class Progress {
  private readonly started = performance.now()
  private readonly tty: boolean

  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly shown: ProgressFields = TRAIN_FIELDS,
    /** Printed before the step counter (e.g. the phase of a pipeline). */
    private readonly label = '',
  ) {
    this.tty = Boolean(out.isTTY)
  }

  update(step: number, m: Metrics, firstStep: number): void {
    const done = step - firstStep
    const elapsed = (performance.now() - this.started) / 1000
    const eta = done > 0 ? (elapsed / done) * (this.total - step) : NaN
    const fields = [
      ...(this.label ? [this.label] : []),
      `step ${step}/${this.total}`,
      ...this.shown.map(([label, key, digits]) => `${label} ${fmt(m[key], digits)}`),
      `ETA ${duration(eta)}`,
    ]
    if (this.tty) {
      const width = 24
      const filled = Math.round((width * step) / Math.max(1, this.total))
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled)
      this.out.write(`\r${bar} ${fields.join('  ')}\x1b[K`)
      if (step >= this.total) this.out.write('\n')
    } else {
      this.out.write(fields.join('  ') + '\n')
    }
  }

  /** A line that does not disturb the bar (eval results, checkpoints). */
  note(line: string): void {
    this.out.write((this.tty ? '\r\x1b[K' : '') + line + '\n')
  }
}

function fmt(v: number | undefined, digits = 4): string {
  return v === undefined ? '-' : Number(v.toPrecision(digits)).toString()
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}
