// `edpo train`: flags / --config → Trainer, a progress bar, Ctrl-C = checkpoint and exit.
import { Trainer } from '../train/trainer'
import { TRAIN_OPTIONS } from '../train/config'
import { formatHelp, parseArgs, RESUME_HELP } from './args'
import { onInterrupt } from './interrupt'
import { Progress } from './progress'

export const TRAIN_HELP = formatHelp(
  'edpo train --model <dir> --data <file>… --out <dir> [options]\n       edpo train --config run.yaml [options]\n       edpo train --resume <run dir>',
  'Trains the policy with ε-DPO (or DPO, TR-DPO) against a frozen reference, writing metrics.jsonl and checkpoints.\nCtrl-C writes a checkpoint and exits; --resume continues from the newest one.',
  TRAIN_OPTIONS,
  RESUME_HELP,
)

export async function trainCommand(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, TRAIN_OPTIONS, ['resume'])
  if (args.help) {
    process.stdout.write(TRAIN_HELP + '\n')
    return 0
  }
  const resume = args.options.resume as string | undefined
  delete args.options.resume
  const trainer = await Trainer.create(args.options as Parameters<typeof Trainer.create>[0], { resume })

  const progress = new Progress(trainer.state.totalSteps)
  const first = trainer.state.step
  trainer.on('log', (m) => progress.update(m.step, m, first))
  trainer.on('eval', (m) => progress.note(`eval @ step ${m.step}: loss ${m.eval_loss?.toFixed(4)}, accuracy ${m['eval_rewards/accuracies']?.toFixed(3)}, margin ${m['eval_rewards/margins']?.toFixed(4)}`))
  trainer.on('checkpoint', (dir) => progress.note(`checkpoint: ${dir}`))

  // First Ctrl-C or SIGTERM: finish the current step, write a checkpoint, exit 130 / 143. Second: exit now.
  const interrupt = onInterrupt((line) => progress.note(line))
  try {
    const state = await trainer.train({ signal: interrupt.signal })
    progress.note(`done: step ${state.step}/${state.totalSteps}, β ${state.beta}, run folder ${trainer.config.out}`)
    return interrupt.exitCode() ?? 0
  } finally {
    interrupt.dispose()
  }
}
