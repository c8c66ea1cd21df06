// `edpo sft`: supervised fine-tuning (masked-prompt cross-entropy) with the same flags, config
// files, progress, checkpoints, Ctrl-C handling and --resume as `edpo train`.
import { SftTrainer } from '../train/sft-trainer'
import { SFT_OPTIONS, type SftConfigInput } from '../train/sft-config'
import { formatHelp, parseArgs, RESUME_HELP } from './args'
import { onInterrupt } from './interrupt'
import { Progress } from './progress'

export const SFT_HELP = formatHelp(
  'edpo sft --model <dir> --data <file>… --out <dir> [options]\n       edpo sft --config sft.yaml [options]\n       edpo sft --resume <run dir>',
  'Supervised fine-tuning on {prompt, completion} rows: cross-entropy on the completion tokens only (the prompt is masked).\nWrites metrics.jsonl and checkpoint-<step>/ model folders; Ctrl-C writes a checkpoint and exits; --resume continues.',
  SFT_OPTIONS,
  RESUME_HELP,
)

export async function sftCommand(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, SFT_OPTIONS, ['resume'])
  if (args.help) {
    process.stdout.write(SFT_HELP + '\n')
    return 0
  }
  const resume = args.options.resume as string | undefined
  delete args.options.resume
  const trainer = await SftTrainer.create(args.options as SftConfigInput, { resume })
  const progress = new Progress(trainer.state.totalSteps, process.stdout, [['loss', 'loss'], ['token acc', 'token_accuracy']])
  const first = trainer.state.step
  trainer.on('log', (m) => progress.update(m.step, m, first))
  trainer.on('eval', (m) => progress.note(`eval @ step ${m.step}: loss ${m.eval_loss?.toFixed(4)}, token accuracy ${m.eval_token_accuracy?.toFixed(3)}`))
  trainer.on('checkpoint', (dir) => progress.note(`checkpoint: ${dir}`))

  // First Ctrl-C or SIGTERM: finish the current step, write a checkpoint, exit 130 / 143. Second: exit now.
  const interrupt = onInterrupt((line) => progress.note(line))
  try {
    const state = await trainer.train({ signal: interrupt.signal })
    progress.note(`done: step ${state.step}/${state.totalSteps}, run folder ${trainer.config.out}`)
    return interrupt.exitCode() ?? 0
  } finally {
    interrupt.dispose()
  }
}
