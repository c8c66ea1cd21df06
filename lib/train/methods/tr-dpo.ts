// TR-DPO (Gorbatovski et al. 2024, "Learn your reference model for real good alignment"): DPO whose
// reference follows the policy, every τ optimizer steps, by a hard copy or a soft mix
// ref ← α·θ + (1−α)·ref. The reference moves, so each checkpoint keeps it (reference/).
import * as path from 'node:path'

import { z } from 'zod'

import type { TokenizedPair } from '../../data'
import type { CausalLM } from '../../model'
import { type MethodSpec, REFERENCE_DIR } from '../method'
import type { Metrics } from '../metrics-log'
import type { Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import type { TrainerState } from '../trainer-state'
import { BETA_STATE, type BetaState, DPO_OPTIONS, EpsilonDpoMethod, loadPreferenceParts, type PreferenceConfig, type PreferenceParts } from './preference'

export const TR_DPO_OPTIONS = {
  ...DPO_OPTIONS,
  trDpoMode: { schema: z.enum(['hard', 'soft']).default('soft'), kind: 'string', help: 'tr-dpo: hard copy or soft mix of the policy into the reference' },
  trDpoTau: {
    aliases: ['ref_model_sync_steps'],
    schema: z.number().int().positive().default(64),
    kind: 'integer',
    help: 'tr-dpo: update the reference every τ optimizer steps',
  },
  trDpoAlpha: { aliases: ['ref_model_mixup_alpha'], schema: z.number().min(0).max(1).default(0.6), kind: 'number', help: 'tr-dpo soft: ref ← α·θ + (1−α)·ref' },
} satisfies OptionTable

type TrDpoConfig = PreferenceConfig & OptionValues<typeof TR_DPO_OPTIONS>

export class TrDpoMethod extends EpsilonDpoMethod {
  constructor(
    parts: PreferenceParts,
    labelSmoothing: number,
    private readonly sync: Pick<TrDpoConfig, 'trDpoMode' | 'trDpoTau' | 'trDpoAlpha'>,
  ) {
    super(parts, { epsilon: 0, labelSmoothing, bf16Criterion: false })
  }

  /** DPO's β bookkeeping, then the reference sync every τ steps. */
  override afterStep(state: TrainerState<BetaState>): Metrics {
    const metrics = super.afterStep(state)
    if (state.step % this.sync.trDpoTau === 0) this.syncReference()
    return metrics
  }

  /** A hard copy of the policy into the reference, or ref ← α·θ + (1−α)·ref. */
  private syncReference(): void {
    const policy = this.model.namedParameters()
    const reference = this.reference!.namedParameters()
    for (const [name, ref] of reference) {
      const theta = policy.get(name)!
      // The in-place ops return new handles of `ref`: each is dropped at once.
      if (this.sync.trDpoMode === 'hard') ref.copyInPlace(theta).dispose()
      else {
        ref.mulInPlace(1 - this.sync.trDpoAlpha).dispose()
        ref.addInPlace(theta, this.sync.trDpoAlpha).dispose()
      }
    }
    // The handles alias both models' weights; dropped now, they keep nothing once the models are disposed.
    for (const t of [...policy.values(), ...reference.values()]) t.dispose()
  }

  /** The moving reference, for an exact resume. */
  savedModels(): readonly (readonly [string, CausalLM])[] {
    return [[REFERENCE_DIR, this.reference!]]
  }
}

export const TR_DPO = {
  title: 'TR-DPO',
  about: 'TR-DPO: DPO whose reference follows the policy every τ steps (--tr-dpo-mode, --tr-dpo-tau, --tr-dpo-alpha)',
  data: 'pairs',
  reference: 'moving',
  headGradientInForward: true,
  options: TR_DPO_OPTIONS,
  state: BETA_STATE,
  withoutLora:
    'tr-dpo moves the reference toward the policy, but with LoRA (--lora-r / --adapter) the reference is the base model with the adapters off, ' +
    'which cannot move: use --method epsilon-dpo or dpo with LoRA, or tr-dpo without LoRA',
  async load(run: Run<TrDpoConfig, BetaState>) {
    // A resumed run continues from the reference its checkpoint saved.
    const referenceDir = run.resumed ? path.join(run.resumed.dir, REFERENCE_DIR) : undefined
    const c = run.config
    const parts = await loadPreferenceParts(run, { reference: 'moving', referenceDir })
    return new TrDpoMethod(parts, c.labelSmoothing, { trDpoMode: c.trDpoMode, trDpoTau: c.trDpoTau, trDpoAlpha: c.trDpoAlpha })
  },
} satisfies MethodSpec<PreferenceConfig, TokenizedPair, typeof TR_DPO_OPTIONS, typeof BETA_STATE>
