#!/usr/bin/env node
// The `edpo` command: edpo train | sft | eval | generate | merge-lora | plan | demo | doctor.
import { formatFailure } from './failure'
import { demoCommand } from './demo-command'
import { doctorCommand, edpoVersion } from './doctor-command'
import { evalCommand } from './eval-command'
import { generateCommand } from './generate-command'
import { mergeLoraCommand } from './merge-lora-command'
import { planCommand } from './plan-command'
import { sftCommand, trainCommand } from './run-command'

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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`edpo: ${formatFailure(e, process.env.EDPO_DEBUG === '1')}\n`)
    process.exitCode = 1
  },
)
