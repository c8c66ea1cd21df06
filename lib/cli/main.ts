#!/usr/bin/env node
// The `edpo` command: edpo train | sft | eval | generate | demo | doctor.
import { formatFailure } from './failure'
import { demoCommand } from './demo-command'
import { doctorCommand, edpoVersion } from './doctor-command'
import { evalCommand } from './eval-command'
import { generateCommand } from './generate-command'
import { sftCommand } from './sft-command'
import { trainCommand } from './train-command'

const USAGE = `usage: edpo <command> [options]

commands:
  train      train a policy with ε-DPO, DPO or TR-DPO (edpo train --help)
  eval       preference accuracy, reward margins and KL(π‖π_ref) on held-out pairs
  generate   complete prompts with a model or a checkpoint
  sft        supervised fine-tuning on prompt/completion rows (masked-prompt cross-entropy)
  demo       the whole pipeline at toy scale: SFT, on-policy pairs, DPO / ε-DPO / TR-DPO, gold evaluation
  doctor     show the libtorch, CUDA and CPU kernels this install uses

Run a command with --help for its options; edpo --version prints the version.`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'train':
      return trainCommand(rest)
    case 'sft':
      return sftCommand(rest)
    case 'eval':
      return evalCommand(rest)
    case 'generate':
      return generateCommand(rest)
    case 'demo':
      return demoCommand(rest)
    case 'doctor':
      return doctorCommand(rest)
    case '--version':
    case '-v':
      process.stdout.write(`edpo ${edpoVersion()}\n`)
      return 0
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n')
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`edpo: unknown command '${command}'\n\n${USAGE}\n`)
      return 2
  }
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
