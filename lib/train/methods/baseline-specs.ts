// How a baseline method file becomes a registry entry (MethodSpec): its options, whether it runs
// the frozen reference, its loss and metrics. Each method file (ipo.ts, simpo.ts, …) is one call.
// A method whose options declare no β (RRHF) keeps none in trainer_state.json.
import type { TokenizedPair } from '../../data'
import type { z } from 'zod'

import type { MethodSpec, TrainingMethod } from '../method'
import type { Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import { BaselineMethod, type BaselineSpec } from './baseline-base'
import { BETA_STATE, type BetaState, loadPreferenceParts, type PreferenceConfig } from './preference'

export interface BaselineDefinition<O extends OptionTable> {
  title: string
  about: string
  reference: 'none' | 'frozen'
  options: O
  /** The loss and metrics, from the run's validated config. */
  make(config: PreferenceConfig & OptionValues<O>): BaselineSpec
}

type StateOf<O> = O extends { beta: unknown } ? typeof BETA_STATE : Record<never, never>

export function baselineMethod<O extends OptionTable>(d: BaselineDefinition<O>) {
  const hasBeta = Object.hasOwn(d.options, 'beta')
  return {
    title: d.title,
    about: d.about,
    data: 'pairs',
    reference: d.reference,
    options: d.options,
    state: (hasBeta ? BETA_STATE : {}) as StateOf<O>,
    async load(run: Run<PreferenceConfig & OptionValues<O>, Partial<BetaState>>) {
      const method = new BaselineMethod(await loadPreferenceParts(run, { reference: d.reference }), d.make(run.config), hasBeta, run.dist)
      // Its savedState() is BetaState or, without β, {}: StateOf<O> either way, which TS cannot see through the generic O.
      return method as unknown as TrainingMethod<TokenizedPair, z.infer<z.ZodObject<StateOf<O>>>>
    },
  } as const satisfies MethodSpec<PreferenceConfig, TokenizedPair, O, StateOf<O>>
}
