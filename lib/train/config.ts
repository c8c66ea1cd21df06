// The one description of a training run's settings: each option's zod schema, default and help
// text. The Trainer's options, `edpo train --flags`, config files (YAML/JSON) and `--help` are all
// derived from these tables: RUN_OPTIONS, which every run has (`edpo sft` too), the preference
// methods' shared options (methods/preference.ts) and each method's own (methods/index.ts).
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { usesLora, withLoraChecks } from './lora-options'
import { DEFAULT_TRAIN_METHOD, methodOptions, METHODS, methodWithoutLora, type TrainMethod, type TrainMethodOptions, TRAIN_METHODS } from './methods'
import { PREFERENCE_OPTIONS } from './methods/preference'
import { flagName, type OptionInputs, type OptionTable, type OptionValues, optionsObject } from './option-table'

export { flagName, type OptionSpec, optionsObject } from './option-table'
export { TRAIN_METHODS, type TrainMethod } from './methods'
import { RUN_FOLDER_OPTIONS, ENGINE_OPTIONS } from './run-options'
export { RUN_OPTIONS, type RunConfig } from './run-options'

const METHOD_OPTION = {
  method: {
    schema: z.enum(TRAIN_METHODS).default(DEFAULT_TRAIN_METHOD),
    kind: 'string',
    help: 'the training method (the list above); each reads only its own options',
  },
} satisfies OptionTable

/** `edpo train`'s table: the run's options, --method, the preference methods' shared options and each method's own. */
export const TRAIN_OPTIONS = {
  ...RUN_FOLDER_OPTIONS,
  ...METHOD_OPTION,
  ...PREFERENCE_OPTIONS,
  ...methodOptions(TRAIN_METHODS),
  ...ENGINE_OPTIONS,
}

export type TrainOptionName = keyof typeof TRAIN_OPTIONS

/**
 * Rejects options the user gave that the chosen method never reads (e.g. --epsilon with --method
 * dpo): they would be silently unused. Only keys present in `input` count, not defaults.
 */
export function checkMethodOptions(input: Readonly<Record<string, unknown>>): void {
  const method = input.method ?? DEFAULT_TRAIN_METHOD
  if (!(TRAIN_METHODS as readonly unknown[]).includes(method)) return // the schema names a bad --method
  // In the flags' alphabetical order, whatever order the registry lists the methods in.
  const unused = Object.entries(TRAIN_OPTIONS as OptionTable)
    .filter(([name, spec]) => input[name] !== undefined && spec.methods !== undefined && !spec.methods.includes(method as TrainMethod))
    .sort(([a], [b]) => flagName(a).localeCompare(flagName(b)))
  if (unused.length > 0)
    throw new EdpoInputError(
      unused.map(([name, spec]) => `${flagName(name)} applies only to --method ${spec.methods!.join(' or ')}`).join('; ') +
        `; this run's method is ${String(method)}: remove ${unused.length === 1 ? 'it' : 'them'} or change --method`,
    )
}

/**
 * A checkpoint's stored config as this version reads it: earlier versions filled in every
 * method's defaults (a DPO run stored epsilon: 0.01), which no user gave (checkMethodOptions
 * rejected them), so the options of methods other than the stored one are dropped.
 */
export function storedTrainConfig(stored: Record<string, unknown>): Record<string, unknown> {
  const method = stored.method ?? DEFAULT_TRAIN_METHOD
  return Object.fromEntries(
    Object.entries(stored).filter(([name]) => {
      const spec = (TRAIN_OPTIONS as OptionTable)[name]
      return spec?.methods === undefined || spec.methods.includes(method as TrainMethod)
    }),
  )
}

// The options every train config has; each method's config adds its own (and only its own).
export const COMMON_TRAIN_OPTIONS = { ...RUN_FOLDER_OPTIONS, ...PREFERENCE_OPTIONS, ...ENGINE_OPTIONS }
export type CommonTrainConfig = OptionValues<typeof COMMON_TRAIN_OPTIONS>

/** A complete, validated training configuration (defaults filled in); of the method options, only its method's are there. */
export type TrainConfig = CommonTrainConfig & { method: TrainMethod } & Partial<OptionValues<TrainMethodOptions>>
/** What a user may pass: everything but model, data and out is optional. */
export type TrainConfigInput = OptionInputs<typeof COMMON_TRAIN_OPTIONS> & {
  method?: TrainMethod
} & Partial<OptionInputs<TrainMethodOptions>>

// One object per method: the common options, `method` fixed to it, and its own options (strict:
// another method's option is an unknown key, so a DPO config has no ε).
const perMethod = TRAIN_METHODS.map((name) =>
  optionsObject({ ...COMMON_TRAIN_OPTIONS, ...(METHODS[name].options as OptionTable), method: { ...METHOD_OPTION.method, schema: z.literal(name) } }),
)

export const trainConfigSchema = withLoraChecks(
  z
    .preprocess(
      (v) => (typeof v === 'object' && v !== null && (v as { method?: unknown }).method === undefined ? { ...v, method: DEFAULT_TRAIN_METHOD } : v),
      z.discriminatedUnion('method', perMethod as unknown as [(typeof perMethod)[number], ...(typeof perMethod)[number][]]),
    )
    .refine((c) => (c as { evalData?: unknown }).evalData === undefined || (c as { evalFraction?: unknown }).evalFraction === undefined, {
      message: 'give evalData or evalFraction, not both',
      path: ['evalFraction'],
    }) as unknown as z.ZodType<TrainConfig, TrainConfigInput>,
).superRefine((c, ctx) => {
  const why = methodWithoutLora(c.method)
  if (why !== undefined && usesLora(c)) ctx.addIssue({ code: 'custom', message: why, path: ['method'] })
})
