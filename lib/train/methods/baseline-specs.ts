// How a baseline method file becomes a registry entry (MethodSpec): its options, whether it runs
// the frozen reference, its loss and metrics. Each method file (ipo.ts, simpo.ts, …) is one call.
import type { TokenizedPair } from '../../data'
import type { MethodSpec } from '../method'
import type { Run } from '../open-run'
import type { OptionTable, OptionValues } from '../option-table'
import { BaselineMethod, type BaselineSpec } from './baseline-base'
import { BETA_STATE, type BetaState, loadPreferenceParts, type PreferenceConfig } from './preference-base'

export interface BaselineDefinition<O extends OptionTable> {
  title: string
  about: string
  reference: 'none' | 'frozen'
  options: O
  /** The loss and metrics, from the run's validated config. */
  make(config: PreferenceConfig & OptionValues<O>): BaselineSpec
}

export function baselineMethod<O extends OptionTable>(d: BaselineDefinition<O>) {
  return {
    title: d.title,
    about: d.about,
    data: 'pairs',
    reference: d.reference,
    options: d.options,
    state: BETA_STATE,
    async load(run: Run<PreferenceConfig & OptionValues<O>, BetaState>) {
      return new BaselineMethod(await loadPreferenceParts(run, { reference: d.reference }), d.make(run.config))
    },
  } as const satisfies MethodSpec<PreferenceConfig, TokenizedPair, O, typeof BETA_STATE>
}
