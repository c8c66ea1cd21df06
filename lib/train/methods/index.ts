// The method registry: every training method by the name `--method` and config files use. The
// commands' --method choices and help, the training config's schema (each method's own options,
// an error with another method), resume (each method's trainer_state.json fields) and `edpo plan`
// (whether a method runs a reference) all read this one list. Adding a method: its file in this
// folder, one line here.
import type { PlanOptions } from '../../model/memory-plan'
import type { MethodSpec, ReferenceUse } from '../method'
import type { OptionSpec, OptionTable } from '../option-table'
import { BETA_DPO } from './beta-dpo'
import { CPO } from './cpo'
import { DPO, EPSILON_DPO } from './preference'
import { IPO } from './ipo'
import { KTO } from './kto'
import { ORPO } from './orpo'
import { R_DPO } from './r-dpo'
import { RRHF } from './rrhf'
import { SFT } from './sft'
import { SIMPO } from './simpo'
import { SLIC_HF } from './slic-hf'
import { TR_DPO } from './tr-dpo'

/** Every method; the first is `edpo train`'s default. */
export const METHODS = {
  'epsilon-dpo': EPSILON_DPO,
  dpo: DPO,
  'tr-dpo': TR_DPO,
  'beta-dpo': BETA_DPO,
  // The paper's comparison set (docs/methods.md); hinge is TRL's loss_type name for SLiC-HF.
  ipo: IPO,
  simpo: SIMPO,
  cpo: CPO,
  orpo: ORPO,
  'r-dpo': R_DPO,
  'slic-hf': SLIC_HF,
  hinge: SLIC_HF,
  rrhf: RRHF,
  kto: KTO,
  sft: SFT,
} as const satisfies Record<string, Pick<MethodSpec, 'data' | 'reference' | 'options' | 'state'>>

export type MethodName = keyof typeof METHODS
type Methods = typeof METHODS
/** The methods `edpo train --method` runs: those trained on preference pairs. */
export type TrainMethod = { [K in MethodName]: Methods[K]['data'] extends 'pairs' ? K : never }[MethodName]

export const METHOD_NAMES = Object.keys(METHODS) as [MethodName, ...MethodName[]]
export const TRAIN_METHODS = METHOD_NAMES.filter((name) => METHODS[name].data === 'pairs') as [TrainMethod, ...TrainMethod[]]
export const DEFAULT_TRAIN_METHOD: TrainMethod = TRAIN_METHODS[0]

/** The spec of `name`, or undefined when no method is called so (e.g. in a stranger's trainer_state.json). */
export function methodSpec(name: unknown): Methods[MethodName] | undefined {
  return typeof name === 'string' && Object.hasOwn(METHODS, name) ? METHODS[name as MethodName] : undefined
}

/** Whether the method `name` (e.g. a stored config's) runs a reference, and how; undefined for an unknown name. */
export function methodReference(name: unknown): ReferenceUse | undefined {
  return methodSpec(name)?.reference
}

/** Why `name` cannot train LoRA adapters, where it cannot (TR-DPO: its reference must move). */
export function methodWithoutLora(name: MethodName): string | undefined {
  return (METHODS[name] as Pick<MethodSpec, 'withoutLora'>).withoutLora
}

/** What `edpo plan` needs of the method `name`: its examples, whether it runs a reference, and whether its loss makes the head's gradient in its forward. */
export function methodPlanShape(name: MethodName): Pick<PlanOptions, 'data' | 'reference' | 'headGradientInForward'> {
  const spec = METHODS[name] as Pick<MethodSpec, 'data' | 'reference' | 'headGradientInForward'>
  return { data: spec.data, reference: spec.reference !== 'none', headGradientInForward: spec.headGradientInForward === true }
}

/** Of `values`, those `name` declares as its own options: what a caller driving several methods passes to each. */
export function ownOptions<V extends Record<string, unknown>>(name: TrainMethod, values: V): Partial<V> {
  const own = METHODS[name].options as OptionTable
  return Object.fromEntries(Object.entries(values).filter(([key]) => Object.hasOwn(own, key))) as Partial<V>
}

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never
/** Every train method's own options, in one table (what `edpo train`'s flags add). */
export type TrainMethodOptions = UnionToIntersection<Methods[TrainMethod]['options']>

/**
 * The options of `names`, each tagged with the methods that declare it (`methods`: an error with
 * any other method). An option several methods declare (labelSmoothing) is listed once; its
 * flag's value check and help come from the first, each method's config from its own.
 */
export function methodOptions(names: readonly TrainMethod[]): TrainMethodOptions {
  const table: Record<string, OptionSpec> = {}
  for (const name of names)
    for (const [key, spec] of Object.entries(METHODS[name].options as OptionTable)) {
      const seen = table[key]
      table[key] = seen ? { ...seen, methods: [...seen.methods!, name] } : { ...spec, methods: [name] }
    }
  return table as TrainMethodOptions
}
