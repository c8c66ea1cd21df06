// `edpo train`: flags / --config → Trainer, through the shared run wrapper (run-command.ts).
import { TRAIN_OPTIONS, type TrainConfigInput } from '../train/config'
import { METHODS, TRAIN_METHODS } from '../train/methods'
import { Trainer } from '../train/trainer'
import { runCommand } from './run-command'

export function trainCommand(argv: readonly string[]): Promise<number> {
  return runCommand<TrainConfigInput>(argv, {
    name: 'train',
    example: 'run',
    about: `Trains the policy on preference pairs with --method, writing metrics.jsonl and checkpoints:\n${TRAIN_METHODS.map((n) => `  ${n.padEnd(12)} ${METHODS[n].about}`).join('\n')}`,
    options: TRAIN_OPTIONS,
    create: (input, opts) => Trainer.create(input, opts),
    describeEval: (m) => `loss ${m.eval_loss?.toFixed(4)}, accuracy ${m['eval_rewards/accuracies']?.toFixed(3)}, margin ${m['eval_rewards/margins']?.toFixed(4)}`,
    // RRHF has no β: nothing to report.
    describeEnd: (state) => (state.method.beta === undefined ? '' : `, β ${state.method.beta}`),
  })
}
