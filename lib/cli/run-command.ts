// What `edpo train` and `edpo sft` share: flags / --config / --resume → a trainer, a progress bar,
// eval and checkpoint notes, and stopping from outside (interrupt.ts): the first Ctrl-C or SIGTERM
// finishes the current step, writes a checkpoint and exits 130 / 143; a second exits at once.
// Errors go up to main.ts, which prints them (failure.ts) and exits 1.
import type { OptionSpec } from '../train/config'
import type { Engine, EngineConfig } from '../train/engine'
import type { Metrics } from '../train/metrics-log'
import type { CreateOptions } from '../train/open-run'
import type { TrainerState } from '../train/trainer-state'
import { formatHelp, parseArgs, RESUME_HELP } from './args'
import { onInterrupt } from './interrupt'
import { Progress, type ProgressFields, TRAIN_FIELDS } from './progress'

/** The parts of a Trainer or SftTrainer a command drives. */
export type RunnableTrainer = Pick<Engine<EngineConfig, unknown>, 'state' | 'config' | 'on' | 'train'>

export interface RunCommand<I> {
  /** `edpo <name>`; its --config example is <example>.yaml. */
  name: string
  example: string
  /** What the command does, for --help (the Ctrl-C and --resume sentence is added). */
  about: string
  options: Record<string, OptionSpec>
  create(input: I, opts: CreateOptions): Promise<RunnableTrainer>
  /** Metrics on the progress line (default: loss, reward accuracy, β). */
  fields?: ProgressFields
  /** The eval metrics worth a line. */
  describeEval(m: Metrics): string
  /** Added to the final "done: step N/N" line. */
  describeEnd?(state: TrainerState): string
}

/** `edpo <name> --help`: usage, what it does, and the option table. */
export function runCommandHelp(command: RunCommand<unknown>): string {
  const edpo = `edpo ${command.name}`
  const usage = [`${edpo} --model <dir> --data <file>… --out <dir> [options]`, `${edpo} --config ${command.example}.yaml [options]`, `${edpo} --resume <run dir>`]
  const about = `${command.about}\nCtrl-C (or SIGTERM) writes a checkpoint and exits; --resume continues from the newest one.`
  return formatHelp(usage.join('\n       '), about, command.options, RESUME_HELP)
}

export async function runCommand<I>(argv: readonly string[], command: RunCommand<I>): Promise<number> {
  const args = parseArgs(argv, command.options, ['resume'])
  if (args.help) {
    process.stdout.write(runCommandHelp(command) + '\n')
    return 0
  }
  const resume = args.options.resume as string | undefined
  delete args.options.resume
  // The option table validated the flags' shapes; create() validates the whole config with zod.
  const trainer = await command.create(args.options as I, { resume })

  const progress = new Progress(trainer.state.totalSteps, process.stdout, command.fields ?? TRAIN_FIELDS)
  const first = trainer.state.step
  trainer.on('log', (m) => progress.update(m.step, m, first))
  trainer.on('eval', (m) => progress.note(`eval @ step ${m.step}: ${command.describeEval(m)}`))
  trainer.on('checkpoint', (dir) => progress.note(`checkpoint: ${dir}`))

  const interrupt = onInterrupt((line) => progress.note(line))
  try {
    const state = await trainer.train({ signal: interrupt.signal })
    progress.note(`done: step ${state.step}/${state.totalSteps}${command.describeEnd?.(state) ?? ''}, run folder ${trainer.config.out}`)
    return interrupt.exitCode() ?? 0
  } finally {
    interrupt.dispose()
  }
}
