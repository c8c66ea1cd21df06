// `edpo sft`: supervised fine-tuning (masked-prompt cross-entropy) with the same flags, config
// files, progress, checkpoints, Ctrl-C handling and --resume as `edpo train` (run-command.ts).
import { SFT_OPTIONS, type SftConfigInput } from '../train/sft-config'
import { SftTrainer } from '../train/sft-trainer'
import { runCommand } from './run-command'

export function sftCommand(argv: readonly string[]): Promise<number> {
  const about = 'Supervised fine-tuning on {prompt, completion} rows: cross-entropy on the completion tokens only (the prompt is masked).\nWrites metrics.jsonl and checkpoint-<step>/ model folders.'
  const fields = [['loss', 'loss'], ['token acc', 'token_accuracy']] as const
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
