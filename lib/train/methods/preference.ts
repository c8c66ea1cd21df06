// What every preference method shares, so that a method file is its loss and little else, and the
// paper's method on it: ε-DPO (arXiv 2502.13177; docs/epsilon-dpo.md) and DPO, which is ε-DPO with
// ε = 0 (no ε in its options or its config), at the end of the file.
//
//   load:       the pairs (with --label-noise), the policy and, unless the method is
//               reference-free, the frozen reference (LoRA: the policy's own base);
//   microBatch: the collated 2B rows (chosen first), the policy's final hidden states (with grad)
//               and the reference's (never), and the lm_heads: what the fused chunked ops read
//               (epsilonDpoLossFromHidden, or sequenceStatsFromHidden for per-sequence sums); the
//               method's pairLoss turns them into a loss and a per-pair record (PAIR_RECORD_COLUMNS);
//   summarize:  the step's records → metrics in TRL's names (step-metrics.ts), and the steps s_i
//               into the global β (beta.ts, spec §6), which afterStep updates once per step.
import { z } from 'zod'

import { collate, loadPreferenceData, paddingLayout, type PreferenceData, type TokenizedPair } from '../../data'
import { EdpoError } from '../../core/errors'
import { epsilonDpoLossFromHiddenAsync, type SequenceStatsResult, sequenceStatsFromHiddenAsync } from '../../core/ops'
import { checkInputErrors, pairRecordColumns } from '../../core/pair-record'
import type { Tensor } from '../../core/tensor'
import { CausalLM } from '../../model'
import type { RunConfig } from '../run-options'
import { loraReference } from '../lora-run'
import type { BatchShare, MethodSpec, MicroBatchOptions, MicroBatchOutput, ReferenceUse, StepSummary, TrainingMethod } from '../method'
import type { Metrics } from '../metrics-log'
import { dataOptions, loadTrainedModel, type Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import type { TrainerState } from '../trainer-state'
import { BetaController } from './beta'
import { withLabelNoise } from './label-noise'
import { preferenceMetrics } from './step-metrics'

/** The options of every preference method (the `edpo train` table adds them to the run's). */
export const PREFERENCE_OPTIONS = {
  labelNoise: {
    schema: z.number().min(0).max(1).default(0),
    kind: 'number',
    help: 'swap chosen and rejected in this fraction of the training pairs (seeded by --seed)',
  },
  // TRL's padding_free is this option's snake_case name.
  paddingFree: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    help: 'run the model on the batch without its padding: rows packed back to back, each attending only to itself',
  },
  chunkTokens: {
    schema: z.number().int().positive().optional(),
    kind: 'integer',
    help: 'completion tokens per chunk of the fused lm_head + loss (default: about 2^25/V on the CPU, 2^28/V on a GPU)',
  },
  dataFormat: {
    schema: z.enum(['auto', 'hh']).default('auto'),
    kind: 'string',
    help: "'hh' reads Anthropic-HH raw transcripts (\\n\\nHuman: … \\n\\nAssistant: …) as turns; 'auto' detects them",
  },
} satisfies OptionTable

/**
 * β, declared by each method that reads it, with its own default and meaning (the KL coefficient;
 * SimPO's reward scale; ORPO's λ); a method without one (RRHF) rejects --beta.
 */
export function betaOption(defaultBeta: number, help: string) {
  return { beta: { schema: z.number().positive().default(defaultBeta), kind: 'number', help } } satisfies OptionTable
}
/** The KL coefficient β of the DPO family and of the baselines that follow TRL's default. */
export const BETA_OPTIONS = betaOption(
  0.1,
  'β: the KL coefficient (initial for epsilon-dpo; 0.1 for every method but simpo, whose default is 2; rrhf has none)',
)

/** What a method that runs a reference adds to its own options (a reference-free one rejects it). */
export const REFERENCE_OPTIONS = {
  referenceModel: { schema: z.string().min(1).optional(), kind: 'string', help: 'reference model folder or Hub id (default: a frozen copy of --model)' },
} satisfies OptionTable

/** A preference run's settings as the base reads them; each method reads its own options besides. */
export type PreferenceConfig = RunConfig & OptionValues<typeof PREFERENCE_OPTIONS> & { method: string; referenceModel?: string; beta?: number }

/** What every preference method keeps in trainer_state.json: the global β to continue with. */
export const BETA_STATE = { beta: z.number().positive() }
export type BetaState = { beta: number }

/** What loading gives a method: its data, models and β. */
export interface PreferenceParts {
  config: PreferenceConfig
  model: CausalLM
  reference: CausalLM | undefined
  data: PreferenceData
  beta: BetaController
}

/**
 * Data, policy and reference of a run. `reference`: 'none' loads none; otherwise `referenceDir`
 * (TR-DPO's saved one on resume), or --reference-model, or --model, frozen. `epsilon` drives the
 * global β (0: β stays as given).
 */
export async function loadPreferenceParts(
  run: Run<PreferenceConfig, Partial<BetaState>>,
  o: { reference: ReferenceUse; referenceDir?: string; epsilon?: number },
): Promise<PreferenceParts> {
  const { config: c, resumed } = run
  const data = await loadPreferenceData({ ...dataOptions(run), dataFormat: c.dataFormat })
  if (c.labelNoise > 0) {
    const noisy = withLabelNoise(data.train, c.labelNoise, c.seed)
    data.train = noisy.pairs
    run.log(`--label-noise ${c.labelNoise}: chosen and rejected swapped in ${noisy.flipped} of ${noisy.pairs.length} training pairs`)
  }
  const policy = await loadTrainedModel(run)
  const referenceDir = o.referenceDir ?? c.referenceModel ?? c.model
  // LoRA: the reference is the policy's own base (no second copy) unless --reference-model names one.
  const reference =
    o.reference === 'none'
      ? undefined
      : policy.lora && c.referenceModel === undefined
        ? await loraReference(policy, c)
        : await loadFrozenReference(run, referenceDir)
  // A method without β (RRHF) still gets a controller, at 0, that its loss never reads and its state never saves.
  const beta = new BetaController(resumed?.file.beta ?? c.beta ?? 0, o.epsilon ?? 0)
  return { config: c, model: policy, reference, data, beta }
}

async function loadFrozenReference(run: Run<PreferenceConfig, Partial<BetaState>>, dir: string): Promise<CausalLM> {
  run.log(`loading the reference from ${dir} (frozen) …`)
  return (await CausalLM.fromPretrained(dir, { dtype: run.config.dtype, device: run.config.device, trainable: false })).eval()
}

/** What the fused ops read of one micro-batch: both models' final hidden states and heads, and the completion tokens. */
export interface PairHeads {
  policyHidden: Tensor
  policyHead: Tensor
  policyBias?: Tensor
  referenceHidden?: Tensor
  referenceHead?: Tensor
  referenceBias?: Tensor
  labels: Tensor
  lossMask: Tensor
  finalLogitSoftcap?: number
  chunkTokens?: number
  activeRows: Tensor
}

/** A micro-batch of `pairs` pairs as the method's loss sees it. */
export interface PairBatch {
  heads: PairHeads
  pairs: number
  /** Training (with grad) or evaluation. */
  grad: boolean
  /** On several ranks: where these pairs sit in the global micro-batch. */
  share?: BatchShare<TokenizedPair>
}

export abstract class PreferenceMethod implements TrainingMethod<TokenizedPair, BetaState> {
  readonly config: PreferenceConfig
  /** The policy. */
  readonly model: CausalLM
  readonly reference: CausalLM | undefined
  readonly data: PreferenceData
  protected readonly beta: BetaController

  constructor(parts: PreferenceParts) {
    this.config = parts.config
    this.model = parts.model
    this.reference = parts.reference
    this.data = parts.data
    this.beta = parts.beta
  }

  /** The method's loss of one micro-batch: a scalar (differentiable with grad) and the [pairs, PAIR_RECORD_COLUMNS] float64 record, both on the device. */
  protected abstract pairLoss(batch: PairBatch): Promise<{ loss: Tensor; record: Tensor }>

  get train(): readonly TokenizedPair[] {
    return this.data.train
  }
  get eval(): readonly TokenizedPair[] | undefined {
    return this.data.eval
  }
  /** The β the method trains with now: the global β the next micro-batch uses. */
  get currentBeta(): number {
    return this.beta.beta
  }

  /** The longer of the pair's two rows (prompt + completion). */
  rowLength(pair: TokenizedPair): number {
    return pair.prompt.length + Math.max(pair.chosen.length, pair.rejected.length)
  }

  /** Policy forward (with or without grad), reference forward (never), then the method's loss. */
  async microBatch(rows: readonly TokenizedPair[], o: MicroBatchOptions<TokenizedPair>): Promise<MicroBatchOutput> {
    const c = this.config
    const batch = collate(rows, this.data.tokenizer.padTokenId, { device: c.device })
    o.lap?.('batch')
    // Padding-free: the rows' lengths (host) replace the mask; the hidden states come back padded.
    const layout = c.paddingFree ? { sequenceLengths: Array.from(batch.rowLengths) } : paddingLayout(batch)
    const policyHidden = await this.model.forwardHiddenAsync(batch.inputIds, { ...layout, grad: o.grad })
    o.lap?.('policy forward')
    const referenceHidden = this.reference ? await this.reference.forwardHiddenAsync(batch.inputIds, { ...layout, grad: false }) : undefined
    if (this.reference) o.lap?.('reference forward')
    const ph = this.model.lmHead()
    const rh = this.reference?.lmHead()
    const heads: PairHeads = {
      policyHidden,
      policyHead: ph.weight,
      policyBias: ph.bias,
      referenceHidden,
      referenceHead: rh?.weight,
      referenceBias: rh?.bias,
      labels: batch.labels,
      lossMask: batch.lossMask,
      finalLogitSoftcap: ph.finalLogitSoftcap || undefined,
      chunkTokens: c.chunkTokens,
      // Prompt rows are skipped by index from the collator's host mask: no device read to find them.
      activeRows: batch.activeRows,
    }
    const out = await this.pairLoss({ heads, pairs: batch.pairs, grad: o.grad, share: o.share })
    // The autograd graph keeps what the backward needs; these handles are no longer used after the
    // loss (at ZeRO-3 the heads' handles own their gathered units: freed now, not at a garbage collection).
    for (const t of [policyHidden, referenceHidden, batch.inputIds, batch.attentionMask, batch.labels, batch.lossMask, batch.activeRows]) t?.dispose()
    for (const t of [ph.weight, rh?.weight]) t?.dispose()
    // The per-pair record is the step's stats (device, float64 [B, k]).
    return { loss: out.loss, stats: out.record, tokens: 2 * batch.pairs * batch.length }
  }

  /**
   * Per-sequence sums of the 2B rows (chosen first): the policy's differentiable log-prob sums and
   * token counts, and the reference's sums and KL when the method runs one. For losses written on
   * sequence sums (β-DPO; the reference-free SimPO family).
   */
  protected sequenceStats(batch: PairBatch): Promise<SequenceStatsResult> {
    return sequenceStatsFromHiddenAsync(batch.heads)
  }

  /** The heads with the reference's part, for losses that need it (an internal error where the method loaded none). */
  protected withReference(heads: PairHeads): PairHeads & { referenceHidden: Tensor; referenceHead: Tensor } {
    const { referenceHidden, referenceHead } = heads
    if (!referenceHidden || !referenceHead)
      throw new EdpoError(`--method ${this.config.method}: its loss needs a reference, but none was loaded`, 'EDPO_INTERNAL')
    return { ...heads, referenceHidden, referenceHead }
  }

  /** Metrics of the step's pairs; in training, their steps s_i also go into the β update. */
  summarize(stats: readonly Float64Array[], training: boolean): StepSummary {
    const batches = stats.map(pairRecordColumns)
    for (const b of batches) checkInputErrors(b.inputError)
    if (training) for (const b of batches) this.beta.accumulate(b.step)
    return preferenceMetrics(batches)
  }

  /** β ← β/(1 + ε·s̄) once per step (ε = 0: β stays). */
  afterStep(_state: TrainerState<BetaState>): Metrics {
    const update = this.beta.finishStep()
    return { 'kl/beta': update.before, 'kl/avg_steps': update.avgSteps }
  }

  savedState(): BetaState {
    return { beta: this.beta.beta }
  }
}

// ε-DPO and DPO: the fused chunked loss of both models' hidden states (no [B,T,V] logits), with
// the global β that ε-DPO's per-pair steps move once per optimizer step.
/** DPO's options (also TR-DPO's, which is DPO with a moving reference). */
export const DPO_OPTIONS = {
  ...BETA_OPTIONS,
  ...REFERENCE_OPTIONS,
  labelSmoothing: { schema: z.number().min(0).max(0.5).default(0), kind: 'number', help: 'conservative label smoothing ℓ (epsilon-dpo, dpo, tr-dpo)' },
} satisfies OptionTable

export const EPSILON_DPO_OPTIONS = {
  ...DPO_OPTIONS,
  epsilon: { schema: z.number().min(0).lt(1).default(0.01), kind: 'number', help: 'ε-DPO perturbation size ε (epsilon-dpo only)' },
  criterionPrecision: {
    schema: z.enum(['fp32', 'bf16']).default('fp32'),
    kind: 'string',
    help: "epsilon-dpo: precision of the step decision; bf16 rounds the mixtures' log-probs and sums as the authors' eager bf16 trainer does (docs/epsilon-dpo.md)",
  },
} satisfies OptionTable

/** The op's settings besides β. */
export interface DpoLossSettings {
  epsilon: number
  labelSmoothing: number
  bf16Criterion: boolean
}

export class EpsilonDpoMethod extends PreferenceMethod {
  constructor(
    parts: PreferenceParts,
    private readonly loss: DpoLossSettings,
  ) {
    super(parts)
  }

  protected async pairLoss(batch: PairBatch): Promise<{ loss: Tensor; record: Tensor }> {
    const out = await epsilonDpoLossFromHiddenAsync({ ...this.withReference(batch.heads), beta: this.beta.beta, ...this.loss })
    return { loss: out.loss, record: out.record }
  }
}

type DpoRun<O extends OptionTable> = Run<PreferenceConfig & OptionValues<O>, BetaState>

export const EPSILON_DPO = {
  title: 'ε-DPO',
  about: 'ε-DPO: DPO whose β each step moves by the pairs\u2019 ε-perturbation decisions (the default)',
  data: 'pairs',
  reference: 'frozen',
  headGradientInForward: true,
  options: EPSILON_DPO_OPTIONS,
  state: BETA_STATE,
  async load(run: DpoRun<typeof EPSILON_DPO_OPTIONS>) {
    const c = run.config
    const settings = { epsilon: c.epsilon, labelSmoothing: c.labelSmoothing, bf16Criterion: c.criterionPrecision === 'bf16' }
    return new EpsilonDpoMethod(await loadPreferenceParts(run, { reference: 'frozen', epsilon: c.epsilon }), settings)
  },
} satisfies MethodSpec<PreferenceConfig, TokenizedPair, typeof EPSILON_DPO_OPTIONS, typeof BETA_STATE>

export const DPO = {
  title: 'DPO',
  about: 'DPO with a fixed β',
  data: 'pairs',
  reference: 'frozen',
  headGradientInForward: true,
  options: DPO_OPTIONS,
  state: BETA_STATE,
  async load(run: DpoRun<typeof DPO_OPTIONS>) {
    const settings = { epsilon: 0, labelSmoothing: run.config.labelSmoothing, bf16Criterion: false }
    return new EpsilonDpoMethod(await loadPreferenceParts(run, { reference: 'frozen' }), settings)
  },
} satisfies MethodSpec<PreferenceConfig, TokenizedPair, typeof DPO_OPTIONS, typeof BETA_STATE>
