// Command-line flags from an option table (see lib/train/config.ts): --kebab-case flags map to the
// camelCase options, values are coerced by each option's kind, `--config file` (YAML or JSON)
// supplies defaults that flags override, and --help text comes from the same table.
import * as fs from 'node:fs'

import YAML from 'yaml'

import type { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { flagName, type OptionSpec, optionsObject } from '../train/config'
import { formatZodError } from '../core/validate'
import { trlNearMiss, trlValueKey } from './trl-names'

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

export interface ParsedArgs {
  options: Record<string, unknown>
  help: boolean
  /** How the user wrote each option ("--batch-size", "per_device_train_batch_size in run.yaml"), for messages. */
  typed: Record<string, string>
}

function coerce(spec: OptionSpec, flag: string, text: string): unknown {
  switch (spec.kind) {
    case 'number':
    case 'integer': {
      const n = Number(text)
      if (text.trim() === '' || !Number.isFinite(n)) throw new EdpoInputError(`--${flag}: expected a number, got '${text}'`)
      return n
    }
    case 'boolean':
      if (text === 'true') return true
      if (text === 'false') return false
      throw new EdpoInputError(`--${flag}: expected true or false, got '${text}'`)
    default:
      return text
  }
}

/** Option names by every name they may be written with (camelCase of the option and of its aliases). */
function nameIndex(table: Record<string, OptionSpec>): Map<string, string> {
  const index = new Map<string, string>()
  for (const [name, spec] of Object.entries(table)) {
    index.set(name, name)
    for (const alias of spec.aliases ?? []) index.set(camel(alias.replace(/_/g, '-')), name)
  }
  return index
}

// An option's value checked on its own, so the message names what the user typed.
function checkValue(spec: OptionSpec, typed: string, value: unknown): unknown {
  const r = spec.schema.safeParse(value)
  if (!r.success) throw new EdpoInputError(`${typed}: ${r.error.issues.map((i) => i.message).join('; ')} (got ${JSON.stringify(value)})`)
  return value
}

/** Resolves one option written as `key` (camelCase); returns [option name, value] (maybe marked
 *  'default': only when not given otherwise) or undefined to drop. `extra` names flags outside
 *  the table that a TRL key may set (ddp_timeout → distTimeout). */
function resolve(
  key: string,
  value: unknown,
  typed: string,
  table: Record<string, OptionSpec>,
  index: Map<string, string>,
  extra: readonly string[] = [],
): [string, unknown, 'default'?] | undefined {
  const name = index.get(key)
  if (name !== undefined) return [name, checkValue(table[name]!, typed, value)]
  const valueKey = trlValueKey(key)
  if (valueKey) {
    const set = valueKey.set(value, typed)
    if (set && table[set[0]]) return [set[0], checkValue(table[set[0]]!, typed, set[1]), set[2]]
    if (set && extra.includes(set[0])) return set
    if (set) throw new EdpoInputError(`${typed}: not an option of this command`)
    return undefined
  }
  const hint = trlNearMiss(key)
  throw new EdpoInputError(
    `${typed}: ${hint === undefined ? 'unknown option (see --help)' : hint.startsWith('did you mean') ? `unknown option; ${hint}` : hint}`,
  )
}

/**
 * Parses argv against `table`. A list option (kind 'strings') takes every following value up to the
 * next flag; any other argument that is not a flag is an error. Extra flags allowed by `extra`
 * (e.g. resume) are kept as strings. Options without a default must be given (from flags or
 * --config) unless --help or --resume is.
 */
export function parseArgs(argv: readonly string[], table: Record<string, OptionSpec>, extra: readonly string[] = []): ParsedArgs {
  const index = nameIndex(table)
  const flags: Record<string, unknown> = {}
  const typed: Record<string, string> = {}
  let help = false
  let config: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      help = true
      continue
    }
    if (!arg.startsWith('--')) {
      const after = i > 0 ? ` after ${argv[i - 1]}` : ''
      throw new EdpoInputError(`unexpected argument '${arg}'${after}: options are --flags (see --help)`)
    }
    const [rawFlag, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    const target = (f: string) => index.get(camel(f))
    const negated = rawFlag.startsWith('no-') && table[target(rawFlag.slice(3)) ?? '']?.kind === 'boolean'
    const key = camel(negated ? rawFlag.slice(3) : rawFlag)
    const value = (): string => {
      if (inline !== undefined) return inline
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) throw new EdpoInputError(`--${rawFlag}: missing value`)
      i += 1
      return next
    }
    if (key === 'config') {
      config = value()
      continue
    }
    if (extra.includes(key)) {
      flags[key] = value()
      continue
    }
    const name = index.get(key)
    const spec = name === undefined ? undefined : table[name]
    let v: unknown
    if (!spec) {
      // TRL value keys as flags: --bf16, --loss-type sigmoid (anything else is rejected by resolve).
      const isBool = trlValueKey(key)?.kind === 'boolean'
      v = isBool ? (inline !== undefined ? coerce({ kind: 'boolean' } as OptionSpec, rawFlag, inline) : true) : value()
    } else if (spec.kind === 'boolean') {
      v = negated ? false : inline !== undefined ? coerce(spec, rawFlag, inline) : true
    } else if (spec.kind === 'strings') {
      // Every value up to the next flag: `--data a.jsonl b.jsonl` and a shell-expanded glob alike.
      const values = inline !== undefined ? [inline] : []
      while (inline === undefined && i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) values.push(argv[++i]!)
      if (values.length === 0) throw new EdpoInputError(`--${rawFlag}: missing value`)
      v = [...((name !== undefined && (flags[name] as string[] | undefined)) || []), ...values]
    } else {
      v = coerce(spec, rawFlag, value())
    }
    const r = resolve(key, v, `--${rawFlag}`, table, index, extra)
    if (r && !(r[2] === 'default' && flags[r[0]] !== undefined)) {
      flags[r[0]] = r[1]
      typed[r[0]] = `--${rawFlag}`
    }
  }
  const fromFile = config ? readConfigFile(config, table, extra) : { options: {}, typed: {} }
  const options = { ...fromFile.options, ...flags }
  if (!help && flags.resume === undefined) {
    for (const [name, spec] of Object.entries(table)) {
      if (options[name] === undefined && !spec.schema.safeParse(undefined).success) throw new EdpoInputError(`${flagName(name)} is required (${spec.help})`)
    }
  }
  return { options, help, typed: { ...fromFile.typed, ...typed } }
}

// Sections research repos wrap TRL keys in (model:, dataset:, training_args: …): their keys are
// read as top-level keys. No edpo option takes a mapping, so a mapping is a section, except under
// a TRL key edpo answers itself (lr_scheduler_kwargs: {…} gets its own line).
function flattenSections(parsed: Record<string, unknown>, file: string): [string, string, unknown][] {
  const out: [string, string, unknown][] = []
  const seen = new Map<string, string>()
  const walk = (obj: Record<string, unknown>, prefix: string, depth: number) => {
    for (const [key, raw] of Object.entries(obj)) {
      const k = camel(key.replace(/_/g, '-'))
      const isSection = typeof raw === 'object' && raw !== null && !Array.isArray(raw) && trlNearMiss(k) === undefined && trlValueKey(k) === undefined
      if (isSection && depth < 3) {
        walk(raw as Record<string, unknown>, `${prefix}${key}.`, depth + 1)
        continue
      }
      const earlier = seen.get(key)
      if (earlier !== undefined) throw new EdpoInputError(`${file}: ${prefix}${key} is also given as ${earlier}: give it once`)
      seen.set(key, `${prefix}${key}`)
      out.push([key, `${prefix}${key}`, raw])
    }
  }
  walk(parsed, '', 0)
  return out
}

/**
 * A YAML or JSON object of options: camelCase, snake_case or kebab-case keys, and TRL's names,
 * at the top level or in sections. Every key that cannot be honoured is reported in one message,
 * one line each with what to do, so a TRL config is fixed in one pass.
 */
export function readConfigFile(
  file: string,
  table: Record<string, OptionSpec>,
  extra: readonly string[] = [],
): { options: Record<string, unknown>; typed: Record<string, string> } {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new EdpoInputError(`--config ${file}: cannot read (${(e as Error).message})`)
  }
  let parsed: unknown
  try {
    parsed = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text, { maxAliasCount: 100 })
  } catch (e) {
    throw new EdpoInputError(`${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'} (${(e as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new EdpoInputError(`${file}: expected a mapping of option names to values`)
  const index = nameIndex(table)
  const options: Record<string, unknown> = {}
  const typed: Record<string, string> = {}
  const defaults: [string, unknown, string][] = []
  const problems: string[] = []
  for (const [key, written, raw] of flattenSections(parsed as Record<string, unknown>, file)) {
    const name = index.get(camel(key.replace(/_/g, '-')))
    // A single path where a list is expected is a one-element list.
    const value = name !== undefined && table[name]!.kind === 'strings' && typeof raw === 'string' ? [raw] : raw
    try {
      const r = resolve(camel(key.replace(/_/g, '-')), value, `${written} in ${file}`, table, index, extra)
      if (r?.[2] === 'default') defaults.push([r[0], r[1], `${written} in ${file}`])
      else if (r) {
        options[r[0]] = r[1]
        typed[r[0]] = `${written} in ${file}`
      }
    } catch (e) {
      if (!(e instanceof EdpoInputError)) throw e
      problems.push(e.message.replace(` in ${file}:`, ':'))
    }
  }
  if (problems.length === 1) throw new EdpoInputError(`${file}: ${problems[0]}`)
  if (problems.length > 1)
    throw new EdpoInputError(`${file}: ${problems.length} keys edpo cannot take as written:\n${problems.map((p) => `  ${p}`).join('\n')}`)
  for (const [name, value, how] of defaults)
    if (options[name] === undefined) {
      options[name] = value
      typed[name] = how
    }
  return { options, typed }
}

/** The --resume flag of train and sft, for their --help. */
export const RESUME_HELP = [['--resume <run dir>', 'continue that run from its newest complete checkpoint (its stored options are used)']] as const

/** The launch flags of train and sft (lib/distributed/), for their --help: how many processes, not what they train. */
export const DIST_HELP = [
  ['--nproc-per-node <n>', 'start n ranks on this machine (data-parallel; --batch-size is per rank); under torchrun or srun, leave it out'],
  ['--backend <gloo|nccl>', 'collective backend of several ranks (default: nccl on CUDA, gloo on CPU)'],
  ['--dist-timeout <seconds>', 'how long a rank waits for the others before stopping with an error (default 300)'],
] as const

// The choices of an enum option, through default/optional/preprocess wrappers (zod 4 internals).
function enumChoices(schema: z.ZodType): string[] | undefined {
  let def = (schema as unknown as { _zod: { def: Record<string, unknown> } })._zod.def
  for (let depth = 0; depth < 8; depth++) {
    if (def.type === 'enum') return Object.values(def.entries as Record<string, string>)
    const inner = (def.innerType ?? def.out) as { _zod: { def: Record<string, unknown> } } | undefined
    if (!inner) return undefined
    def = inner._zod.def
  }
  return undefined
}

/** --help text from an option table; `extras` are flags outside the table, e.g. [['--resume <run dir>', '…']]. */
export function formatHelp(usage: string, summary: string, table: Record<string, OptionSpec>, extras: readonly (readonly [string, string])[] = []): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const choices = enumChoices(spec.schema)
    const arg = spec.kind === 'boolean' ? '' : spec.kind === 'strings' ? ' <path>…' : choices ? ` <${choices.join('|')}>` : ' <value>'
    const parsed = spec.schema.safeParse(undefined)
    const dflt = parsed.success && parsed.data !== undefined ? ` (default ${JSON.stringify(parsed.data)})` : parsed.success ? '' : ' (required)'
    const trl = spec.aliases?.length ? ` [TRL: ${spec.aliases.join(', ')}]` : ''
    return [`${flagName(name)}${arg}`, spec.help + dflt + trl] as const
  })
  const all = [
    ...rows,
    ...extras,
    ['--config <file>', 'YAML or JSON file of these options (snake_case and TRL names too); flags override it'] as const,
    ['--help', 'this text'] as const,
  ]
  const width = Math.max(...all.map(([f]) => f.length)) + 2
  return [`usage: ${usage}`, '', summary, '', 'options:', ...all.map(([f, h]) => `  ${f.padEnd(width)}${h}`)].join('\n')
}

export type OptionValues<T extends Record<string, OptionSpec>> = { [K in keyof T]: z.infer<T[K]['schema']> }

/**
 * A subcommand's argv → validated options (defaults filled in), or undefined after printing `help`
 * for --help. Errors name the flag, file or field.
 */
export function parseCommand<T extends Record<string, OptionSpec>>(argv: readonly string[], table: T, help: string, what: string): OptionValues<T> | undefined {
  const args = parseArgs(argv, table)
  if (args.help) {
    process.stdout.write(help + '\n')
    return undefined
  }
  const r = optionsObject(table).safeParse(args.options)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, what))
  return r.data as OptionValues<T>
}
