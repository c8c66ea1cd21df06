// `edpo train`: flags / --config → Trainer, through the shared run wrapper (run-command.ts).
import { TRAIN_OPTIONS, type TrainConfigInput } from '../train/config'
import { Trainer } from '../train/trainer'
import { runCommand } from './run-command'

export function trainCommand(argv: readonly string[]): Promise<number> {
  return runCommand<TrainConfigInput>(argv, {
    name: 'train',
    example: 'run',
    about: 'Trains the policy with ε-DPO (or DPO, TR-DPO) against a frozen reference, writing metrics.jsonl and checkpoints.',
    options: TRAIN_OPTIONS,
    create: (input, opts) => Trainer.create(input, opts),
    describeEval: (m) => `loss ${m.eval_loss?.toFixed(4)}, accuracy ${m['eval_rewards/accuracies']?.toFixed(3)}, margin ${m['eval_rewards/margins']?.toFixed(4)}`,
    describeEnd: (state) => `, β ${state.method.beta}`,
  })
}
