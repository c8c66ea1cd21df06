// Supervised fine-tuning as a loss plug-in of the engine: the masked-prompt cross-entropy, i.e.
// the mean negative log-likelihood of the completion tokens only, on the fused path (final
// hidden states → chunked lm_head + log-softmax; no [B,T,V] logits): loss = −Σ logps / Σ tokens.
import { z } from 'zod'

import { collateSequences, loadSftData, type SftData, type SftExample } from '../../data'
import { modelSequenceStats } from '../../eval/sequence-logps'
import type { CausalLM } from '../../model'
import { Tensor } from '../../core/tensor'
import type { MethodSpec, MicroBatchOptions, MicroBatchOutput, StepSummary, TrainingMethod } from '../method'
import { dataOptions, loadTrainedModel, type Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import type { RunConfig } from '../run-options'

/** What this method adds to trainer_state.json: a tag, so a DPO run cannot resume an SFT checkpoint. */
export const SFT_STATE = { kind: z.literal('sft') }
/** SFT's trainer_state.json field. */
export type SftSaved = { kind: 'sft' }

/** SFT's own defaults over the run's options. */
export const SFT_OPTIONS_OWN = {
  learningRate: { schema: z.number().positive().default(1e-5), kind: 'number', help: 'peak learning rate' },
} satisfies OptionTable

/** `edpo sft`'s settings (sft-config.ts builds their schema from the same tables). */
type SftConfig = RunConfig & OptionValues<typeof SFT_OPTIONS_OWN>

export class SftMethod implements TrainingMethod<SftExample, SftSaved> {
  private constructor(
    readonly config: SftConfig,
    readonly model: CausalLM,
    readonly data: SftData,
  ) {}

  get train(): readonly SftExample[] {
    return this.data.train
  }
  get eval(): readonly SftExample[] | undefined {
    return this.data.eval
  }

  static async load(run: Run<SftConfig, SftSaved>): Promise<SftMethod> {
    const data = await loadSftData(dataOptions(run))
    return new SftMethod(run.config, await loadTrainedModel(run), data)
  }

  rowLength(example: SftExample): number {
    return example.prompt.length + example.completion.length
  }

  /** Token-mean NLL of the completions; stats per row: [Σ logps, argmax hits, tokens] (float64). */
  async microBatch(rows: readonly SftExample[], o: MicroBatchOptions): Promise<MicroBatchOutput> {
    const batch = collateSequences(rows, this.data.tokenizer.padTokenId, { device: this.config.device })
    o.lap?.('batch')
    const s = await modelSequenceStats(this.model, batch, { grad: o.grad })
    o.lap?.('forward')
    // tidy: the intermediates (the sum, the detached copies) go now, not with their graph at a collection.
    const { loss, stats } = Tensor.tidy(() => ({
      loss: s.logps.sum().mul(-1 / Math.max(1, batch.tokens)),
      stats: Tensor.stack(
        [s.logps.detach(), s.correct, s.tokenCount].map((t) => t.to('float64')),
        1,
      ),
    }))
    Tensor.disposeAll(s, batch)
    return { loss, stats, tokens: batch.tokens }
  }

  /** The completion tokens the loss averages over (collateSequences' count: all but a prompt-less row's first). */
  lossCount(rows: readonly SftExample[]): number {
    return rows.reduce((n, r) => n + Math.max(0, r.completion.length - (r.prompt.length === 0 ? 1 : 0)), 0)
  }

  /** Token-weighted over every row of the step (or evaluation): loss and token accuracy. */
  summarize(stats: readonly Float64Array[]): StepSummary {
    let logps = 0
    let correct = 0
    let tokens = 0
    for (const view of stats)
      for (let i = 0; i < view.length; i += 3) {
        logps += view[i]!
        correct += view[i + 1]!
        tokens += view[i + 2]!
      }
    return { loss: -logps / Math.max(1, tokens), token_accuracy: correct / Math.max(1, tokens) }
  }

  savedState(): SftSaved {
    return { kind: 'sft' }
  }
}

export const SFT = {
  title: 'SFT',
  about: 'supervised fine-tuning: cross-entropy on the completion tokens (edpo sft)',
  data: 'sequences',
  reference: 'none',
  options: SFT_OPTIONS_OWN,
  state: SFT_STATE,
  load: (run: Run<SftConfig, SftSaved>) => SftMethod.load(run),
} satisfies MethodSpec<SftConfig, SftExample, typeof SFT_OPTIONS_OWN, typeof SFT_STATE>
