// What an option table is (lib/train/config.ts, each method's own table in methods/, the other
// commands'): each option's zod schema, default and help text, from which flags, config files,
// --help and the config's type are derived. Its own file so that the methods (whose tables the
// training table merges) and the run plumbing import it without importing config.ts.
import { z } from 'zod'

export interface OptionSpec {
  schema: z.ZodType
  help: string
  /** For CLI parsing: how a flag's text becomes a value. */
  kind: 'string' | 'number' | 'integer' | 'boolean' | 'strings'
  /** TRL / Hugging Face TrainingArguments names of the same setting (snake_case), accepted as
   *  config keys and as flags (kebab-case). */
  aliases?: readonly string[]
  /** The training methods that read this option (set by the method registry); giving it with another method is an error. */
  methods?: readonly string[]
}

export type OptionTable = Record<string, OptionSpec>

type Shape<T extends OptionTable> = { [K in keyof T]: T[K]['schema'] }
/** The validated values of a table's options (defaults filled in; optional ones may be absent). */
export type OptionValues<T extends OptionTable> = z.output<z.ZodObject<Shape<T>>>
/** What a user may write for a table's options. */
export type OptionInputs<T extends OptionTable> = z.input<z.ZodObject<Shape<T>>>

/** The command-line flag of an option: learningRate → --learning-rate. */
export const flagName = (name: string): string => '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())

/** The zod object schema of an option table (strict: unknown keys are errors). */
export function optionsObject<T extends OptionTable>(table: T) {
  const shape = Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.schema])) as Shape<T>
  return z.object(shape).strict()
}
