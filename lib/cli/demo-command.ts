// `edpo demo`: the whole method on this machine in a few minutes (lib/demo/pipeline.ts), with a
// progress bar per phase and the results table at the end.
import * as path from 'node:path'

import { DEMO_OPTIONS, type DemoInput } from '../demo/config'
import { runDemo } from '../demo/pipeline'
import { formatTable, resultsTable } from '../demo/report'
import { METHODS, TRAIN_METHODS } from '../train/methods'
import { formatHelp, parseArgs } from './args'
import { duration, Progress, type ProgressFields, TRAIN_FIELDS } from './progress'

export const DEMO_HELP = formatHelp(
  'edpo demo [--quick] [options]',
  "Reproduces the paper's pipeline at toy scale, with no download: a tiny llama trained from scratch with `edpo sft` on a\nsort-the-digits task, on-policy pairs labelled by a gold reward, DPO, ε-DPO and TR-DPO from that reference, and a gold\nevaluation (win rate, reward, KL). Writes report.md, results.json and SVG plots to --out.",
  DEMO_OPTIONS,
)

const PHASES: Record<string, [string, ProgressFields]> = {
  sft: [
    'SFT reference',
    [
      ['loss', 'loss'],
      ['token acc', 'token_accuracy'],
    ],
  ],
  label: ['sample + label', []],
  ...Object.fromEntries(TRAIN_METHODS.map((name) => [name, [METHODS[name].title, TRAIN_FIELDS]])),
  eval: ['gold evaluation', []],
}

export async function demoCommand(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, DEMO_OPTIONS)
  if (args.help) {
    process.stdout.write(DEMO_HELP + '\n')
    return 0
  }
  const started = performance.now()
  const tty = Boolean(process.stdout.isTTY)
  let current: { phase: string; bar: Progress } | undefined
  const result = await runDemo(args.options as DemoInput, {
    log: (line) => (current ? current.bar.note(line) : process.stdout.write(line + '\n')),
    progress: (phase, done, total, metrics) => {
      if (current?.phase !== phase) {
        const [label, fields] = PHASES[phase] ?? [phase, []]
        current = { phase, bar: new Progress(total, process.stdout, fields, label.padEnd(15)) }
      }
      // Off a terminal, a line per tenth of the phase is enough.
      if (tty || done === total || done % Math.max(1, Math.round(total / 10)) === 0) current.bar.update(done, metrics ?? {}, 0)
    },
  })
  const rel = (f: string) => (path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f))
  process.stdout.write(
    [
      '',
      formatTable(resultsTable(result)),
      '',
      `report   ${rel(result.files.report)}`,
      `plots    ${result.files.plots.map(rel).join('\n         ')}`,
      `results  ${rel(result.files.results)}`,
      `time     ${duration((performance.now() - started) / 1000)}`,
      '',
    ].join('\n'),
  )
  return 0
}
