// Trainer: preference training (config.method: ε-DPO, DPO, TR-DPO, β-DPO, …; methods/index.ts):
// the engine (engine.ts, the loop) with the method the registry loads (its loss, β, reference).
//   create(): config → run folder → data → policy + reference → AdamW → (resume)
//   train():  see engine.ts.
import type { PreferenceData, TokenizedPair } from '../data'
import type { CausalLM } from '../model'
import { checkMethodOptions, storedTrainConfig, type TrainConfig, type TrainConfigInput, trainConfigSchema } from './config'
import { Engine } from './engine'
import { METHODS } from './methods'
import type { BetaState, PreferenceMethod } from './methods/preference-base'
import { type CreateOptions, openRunOnRanks, type Run } from './open-run'
import { applyStepFractions } from './step-fractions'

export { EdpoTrainingError, type TrainerEvents, TOKENIZER_FILES } from './engine'
export type { CreateOptions } from './open-run'

export class Trainer extends Engine<TrainConfig, TokenizedPair, PreferenceMethod> {
  private constructor(run: Run<TrainConfig, BetaState>, method: PreferenceMethod) {
    super(run, method)
  }

  static async create(input: TrainConfigInput, opts: CreateOptions = {}): Promise<Trainer> {
    // A resumed run's options are checked against its stored ones instead (open-run.ts).
    if (opts.resume === undefined) checkMethodOptions(input)
    const kind = { config: trainConfigSchema, state: (c: TrainConfig) => METHODS[c.method].state, stored: storedTrainConfig }
    const run = await openRunOnRanks<TrainConfig, BetaState>(kind, input, opts)
    // The schema checked the config against this method's own options: its load reads them.
    const load = METHODS[run.config.method].load as (run: Run<TrainConfig, BetaState>) => Promise<PreferenceMethod>
    const trainer = new Trainer(run, await load(run))
    applyStepFractions(trainer.config, trainer.state.totalSteps)
    return trainer
  }

  /** The model being trained. */
  get policy(): CausalLM {
    return this.method.model
  }
  /** The frozen reference (TR-DPO: the one that follows the policy); undefined for a reference-free method. */
  get reference(): CausalLM | undefined {
    return this.method.reference
  }
  /** The β the method trains with now (ε-DPO: the global β after the last step; β-DPO: the last step's batch β). */
  get beta(): number {
    return this.method.currentBeta
  }
  get data(): PreferenceData {
    return this.method.data
  }
}
