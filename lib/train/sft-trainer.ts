// SftTrainer: supervised fine-tuning (the masked-prompt cross-entropy of methods/sft.ts) on the
// engine of the ε-DPO Trainer (engine.ts): the same option table, sampler, AdamW, schedule,
// metrics.jsonl, atomic checkpoints and exact resume.
import type { SftData, SftExample } from '../data'
import type { CausalLM } from '../model'
import { Engine, type TrainerEvents } from './engine'
import { SFT, type SftMethod } from './methods/sft'
import { type CreateOptions, openRunOnRanks } from './open-run'
import { applyStepFractions } from './step-fractions'
import { type SftConfig, type SftConfigInput, sftConfigSchema } from './sft-config'

export type SftTrainerEvents = TrainerEvents<{ kind: 'sft' }>

export class SftTrainer extends Engine<SftConfig, SftExample, SftMethod> {
  static async create(input: SftConfigInput, opts: CreateOptions = {}): Promise<SftTrainer> {
    const run = await openRunOnRanks<SftConfig, { kind: 'sft' }>(
      { config: sftConfigSchema, state: () => SFT.state, what: 'an edpo sft checkpoint' },
      input,
      opts,
    )
    const trainer = new SftTrainer(run, await SFT.load(run))
    applyStepFractions(trainer.config, trainer.state.totalSteps)
    return trainer
  }

  get model(): CausalLM {
    return this.method.model
  }
  get data(): SftData {
    return this.method.data
  }
}
