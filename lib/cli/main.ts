#!/usr/bin/env node
// The `edpo` command: edpo train | sft | eval | generate | merge-lora | plan | demo | doctor.
// This file is the entry and the two commands that train; the other commands each have a file.
//
// `edpo train` (preference pairs, --method) and `edpo sft` share runCommand: flags / --config /
// --resume → a trainer, a progress bar, eval and checkpoint notes, and stopping from outside
// (interrupt.ts): the first Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and
// exits 130 / 143; a second exits at once. Errors reach main(), which prints them (failure.ts) and exits 1.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { readDistEnv } from '../distributed/env'
import { type Backend, DistGroup } from '../distributed/group'
import { exitWithLauncher, launchWorkers, parseNproc, withoutFlag } from '../distributed/launcher'
import { resolveHubOptionsOnRanks } from '../hub/resolve-options'
import { type OptionSpec, TRAIN_OPTIONS, type TrainConfigInput } from '../train/config'
import { type Engine, type EngineConfig, SftTrainer, Trainer } from '../train/engine'
import { METHODS, TRAIN_METHODS } from '../train/methods'
import type { Metrics } from '../train/metrics-log'
import type { CreateOptions } from '../train/open-run'
import { SFT_OPTIONS, type SftConfigInput } from '../train/sft-config'
import type { TrainerState } from '../train/trainer-state'
import { DIST_HELP, formatHelp, parseArgs, RESUME_HELP } from './args'
import { demoCommand } from './demo-command'
import { doctorCommand, edpoVersion } from './doctor-command'
import { evalCommand } from './eval-command'
import { formatFailure } from './failure'
import { generateCommand } from './generate-command'
import { onInterrupt } from './interrupt'
import { mergeLoraCommand } from './merge-lora-command'
import { planCommand } from './plan-command'
import { Progress, type ProgressFields, TRAIN_FIELDS } from './progress'

const USAGE = `usage: edpo <command> [options]

commands:
  train      train a policy on preference pairs: ε-DPO, DPO and the comparison set (edpo train --help)
  eval       preference accuracy, reward margins and KL(π‖π_ref) on held-out pairs
  generate   complete prompts with a model or a checkpoint
  merge-lora fold a LoRA adapter into its base model (a full Hugging Face model folder)
  plan       per-device memory of a training run (full fine-tuning or LoRA, 1 or N devices)
  sft        supervised fine-tuning on prompt/completion rows (masked-prompt cross-entropy)
  demo       the whole pipeline at toy scale: SFT, on-policy pairs, DPO / ε-DPO / TR-DPO, gold evaluation
  doctor     show the libtorch, CUDA and CPU kernels this install uses

Run a command with --help for its options; edpo --version prints the version.`

const COMMANDS: Record<string, (argv: readonly string[]) => number | Promise<number>> = {
  train: trainCommand,
  sft: sftCommand,
  eval: evalCommand,
  generate: generateCommand,
  'merge-lora': mergeLoraCommand,
  plan: planCommand,
  demo: demoCommand,
  doctor: doctorCommand,
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command !== undefined && Object.hasOwn(COMMANDS, command)) return COMMANDS[command]!(rest)
  if (command === '--version' || command === '-v') {
    process.stdout.write(`edpo ${edpoVersion()}\n`)
    return 0
  }
  if (command === undefined || command === '--help' || command === '-h') {
    process.stdout.write(USAGE + '\n')
    return command === undefined ? 2 : 0
  }
  process.stderr.write(`edpo: unknown command '${command}'\n\n${USAGE}\n`)
  return 2
}

/** The parts of a Trainer or SftTrainer a command drives. */
type RunnableTrainer = Pick<Engine<EngineConfig, unknown>, 'state' | 'config' | 'on' | 'train'>

interface RunCommand<I> {
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
function runCommandHelp(command: RunCommand<unknown>): string {
  const edpo = `edpo ${command.name}`
  const usage = [
    `${edpo} --model <dir> --data <file>… --out <dir> [options]`,
    `${edpo} --config ${command.example}.yaml [options]`,
    `${edpo} --resume <run dir>`,
  ]
  const about = `${command.about}\nCtrl-C (or SIGTERM) writes a checkpoint and exits; --resume continues from the newest one.`
  return formatHelp(usage.join('\n       '), about, command.options, [...RESUME_HELP, ...DIST_HELP])
}

async function runCommand<I>(argv: readonly string[], command: RunCommand<I>): Promise<number> {
  const args = parseArgs(argv, command.options, ['resume', 'nprocPerNode', 'backend', 'distTimeout'])
  if (args.help) {
    process.stdout.write(runCommandHelp(command) + '\n')
    return 0
  }
  const { resume, nprocPerNode, backend, distTimeout } = args.options as Record<string, string | undefined>
  for (const k of ['resume', 'nprocPerNode', 'backend', 'distTimeout']) delete args.options[k]
  // Several ranks: checked before any work (a bad variable, nccl on CPU, a port in use).
  const env = readDistEnv()
  const timeoutSeconds = distTimeout === undefined ? undefined : Number(distTimeout)
  if (timeoutSeconds !== undefined && !(timeoutSeconds > 0)) throw new EdpoInputError(`--dist-timeout ${distTimeout}: expected seconds > 0`)
  if (backend !== undefined && backend !== 'gloo' && backend !== 'nccl') throw new EdpoInputError(`--backend ${backend}: expected gloo or nccl`)
  if (nprocPerNode !== undefined) {
    const nproc = parseNproc(nprocPerNode)
    if (env)
      throw new EdpoInputError(
        `--nproc-per-node starts its own ranks, but this process is already rank ${env.rank} of ${env.worldSize} (${env.source} set RANK): leave the flag out`,
      )
    const device = (args.options.device as string | undefined) ?? 'cpu'
    if (backend === 'nccl' && !device.startsWith('cuda'))
      throw new EdpoInputError(`--backend nccl needs a CUDA device, but --device is ${device}: use --backend gloo on CPU`)
    return launchWorkers({
      nproc,
      args: [command.name, ...withoutFlag(argv, '--nproc-per-node')],
      graceSeconds: (timeoutSeconds ?? 300) + 30,
      log: (l) => process.stderr.write(l + '\n'),
    })
  }
  // A worker of edpo's own launcher goes when the launcher goes.
  if (env?.source === 'edpo launcher') exitWithLauncher()
  // TRL's ddp_timeout in a config file describes several ranks; one process has nothing to wait for.
  if (!env && backend === undefined && distTimeout !== undefined && args.typed.distTimeout?.includes(' in ')) {
    process.stderr.write(`note: ${args.typed.distTimeout} applies to several ranks; this run has one process\n`)
  } else if (!env && (backend !== undefined || distTimeout !== undefined))
    throw new EdpoInputError(
      `--${backend !== undefined ? 'backend' : 'dist-timeout'} applies to several ranks: add --nproc-per-node N, or launch with torchrun or srun`,
    )
  const dist = env
    ? await DistGroup.join(env, { backend: backend as Backend | undefined, timeoutSeconds, device: (args.options.device as string | undefined) ?? 'cpu' })
    : undefined
  // Hub ids become cache paths here, before any model or data code runs (rank 0 downloads).
  const input = await resolveHubOptionsOnRanks(args.options, dist, { typed: args.typed })
  // The option table validated the flags' shapes; create() validates the whole config with zod.
  const trainer = await command.create(input as I, { resume, dist })
  if (dist) debugStepLog(trainer, dist.rank)
  if (dist && dist.rank !== 0) return quietRank(trainer)

  const progress = new Progress(trainer.state.totalSteps, process.stdout, command.fields ?? TRAIN_FIELDS)
  const first = trainer.state.step
  trainer.on('log', (m) => progress.update(m.step, m, first))
  trainer.on('eval', (m) => progress.note(`eval @ step ${m.step}: ${command.describeEval(m)}`))
  trainer.on('checkpoint', (dir) => progress.note(`checkpoint: ${dir}`))
  trainer.on('profile', (file) => progress.note(`profile: ${file}`))

  const interrupt = onInterrupt((line) => progress.note(line))
  try {
    const state = await trainer.train({ signal: interrupt.signal })
    progress.note(`done: step ${state.step}/${state.totalSteps}${command.describeEnd?.(state) ?? ''}, run folder ${trainer.config.out}`)
    return interrupt.exitCode() ?? 0
  } finally {
    interrupt.dispose()
  }
}

/** A rank other than 0 trains silently (rank 0 reports); Ctrl-C stops it with the others. */
async function quietRank(trainer: RunnableTrainer): Promise<number> {
  const interrupt = onInterrupt(() => {})
  try {
    await trainer.train({ signal: interrupt.signal })
    return interrupt.exitCode() ?? 0
  } finally {
    interrupt.dispose()
  }
}

/**
 * EDPO_DIST_DEBUG_DIR: each rank appends {the method's state (β), step, loss, peak_rss_mib} per optimizer step to
 * rank-<r>.jsonl there, so a test (or a user chasing a divergence) can check every rank holds the
 * same β, and bench/dist.ts can read each rank's peak memory.
 */
function debugStepLog(trainer: RunnableTrainer, rank: number): void {
  const dir = process.env.EDPO_DIST_DEBUG_DIR
  if (!dir) return
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `rank-${rank}.jsonl`)
  trainer.on('step', (s) => fs.appendFileSync(file, JSON.stringify({ ...s.method, step: s.step, loss: s.metrics?.loss, peak_rss_mib: peakRssMiB() }) + '\n'))
}

/** This process's peak resident memory (VmHWM), in MiB; 0 where /proc is not there. */
function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

/** `edpo train`: preference pairs, with --method's loss. */
function trainCommand(argv: readonly string[]): Promise<number> {
  return runCommand<TrainConfigInput>(argv, {
    name: 'train',
    example: 'run',
    about: `Trains the policy on preference pairs with --method, writing metrics.jsonl and checkpoints:\n${TRAIN_METHODS.map((n) => `  ${n.padEnd(12)} ${METHODS[n].about}`).join('\n')}`,
    options: TRAIN_OPTIONS,
    create: (input, opts) => Trainer.create(input, opts),
    describeEval: (m) =>
      `loss ${m.eval_loss?.toFixed(4)}, accuracy ${m['eval_rewards/accuracies']?.toFixed(3)}, margin ${m['eval_rewards/margins']?.toFixed(4)}`,
    // RRHF has no β: nothing to report.
    describeEnd: (state) => (state.method.beta === undefined ? '' : `, β ${state.method.beta}`),
  })
}

/** `edpo sft`: supervised fine-tuning (masked-prompt cross-entropy), with the same machinery. */
function sftCommand(argv: readonly string[]): Promise<number> {
  const about =
    'Supervised fine-tuning on {prompt, completion} rows: cross-entropy on the completion tokens only (the prompt is masked).\nWrites metrics.jsonl and checkpoint-<step>/ model folders.'
  const fields = [
    ['loss', 'loss'],
    ['token acc', 'token_accuracy'],
  ] as const
  return runCommand<SftConfigInput>(argv, {
    name: 'sft',
    example: 'sft',
    about,
    options: SFT_OPTIONS,
    fields,
    create: (input, opts) => SftTrainer.create(input, opts),
    describeEval: (m) => `loss ${m.eval_loss?.toFixed(4)}, token accuracy ${m.eval_token_accuracy?.toFixed(3)}`,
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`edpo: ${formatFailure(e, process.env.EDPO_DEBUG === '1')}\n`)
    process.exitCode = 1
  },
)
