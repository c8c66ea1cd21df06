// Trainer: ε-DPO, DPO and TR-DPO training (config.method): the engine (engine.ts, the loop) with
// the preference method (methods/preference.ts, the loss, β and the TR-DPO reference).
//   create(): config → run folder → data → policy + reference → AdamW → (resume)
//   train():  see engine.ts.
import type { PreferenceData, TokenizedPair } from '../data'
import type { CausalLM } from '../model'
import { checkMethodOptions, type TrainConfig, type TrainConfigInput, trainConfigSchema } from './config'
import { Engine } from './engine'
import { PREFERENCE_STATE, PreferenceMethod } from './methods/preference'
import { type CreateOptions, openRunOnRanks, type Run } from './open-run'
import { applyStepFractions } from './step-fractions'

export { EdpoTrainingError, type TrainerEvents, TOKENIZER_FILES } from './engine'
export type { CreateOptions } from './open-run'

export class Trainer extends Engine<TrainConfig, TokenizedPair, PreferenceMethod> {
  private constructor(run: Run<TrainConfig>, method: PreferenceMethod) {
    super(run, method)
    this.state.beta = method.currentBeta
  }

  static async create(input: TrainConfigInput, opts: CreateOptions = {}): Promise<Trainer> {
    // A resumed run's options are checked against its stored ones instead (open-run.ts).
    if (opts.resume === undefined) checkMethodOptions(input)
    const run = await openRunOnRanks({ config: trainConfigSchema, state: PREFERENCE_STATE }, input, opts)
    const trainer = new Trainer(run, await PreferenceMethod.load(run))
    applyStepFractions(trainer.config, trainer.state.totalSteps)
    return trainer
  }

  /** The model being trained. */
  get policy(): CausalLM {
    return this.method.model
  }
  /** The frozen reference (TR-DPO: the one that follows the policy). */
  get reference(): CausalLM {
    return this.method.reference
  }
  get data(): PreferenceData {
    return this.method.data
  }
}
