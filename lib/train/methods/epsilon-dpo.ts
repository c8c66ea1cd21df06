// ε-DPO (arXiv 2502.13177; docs/epsilon-dpo.md) and DPO, which is ε-DPO with ε = 0 (no ε in its
// options or its config): the fused chunked loss of both models' hidden states (no [B,T,V]
// logits), with the global β that ε-DPO's per-pair steps move once per optimizer step.
import { z } from 'zod'

import type { TokenizedPair } from '../../data'
import { epsilonDpoLossFromHiddenAsync } from '../../core/ops'
import type { Tensor } from '../../core/tensor'
import type { MethodSpec } from '../method'
import type { Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import {
  BETA_OPTIONS,
  BETA_STATE,
  type BetaState,
  loadPreferenceParts,
  type PairBatch,
  type PreferenceConfig,
  PreferenceMethod,
  type PreferenceParts,
  REFERENCE_OPTIONS,
} from './preference-base'

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
  options: DPO_OPTIONS,
  state: BETA_STATE,
  async load(run: DpoRun<typeof DPO_OPTIONS>) {
    const settings = { epsilon: 0, labelSmoothing: run.config.labelSmoothing, bf16Criterion: false }
    return new EpsilonDpoMethod(await loadPreferenceParts(run, { reference: 'frozen' }), settings)
  },
} satisfies MethodSpec<PreferenceConfig, TokenizedPair, typeof DPO_OPTIONS, typeof BETA_STATE>
