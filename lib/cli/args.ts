// Command-line flags from an option table (see lib/train/config.ts): --kebab-case flags map to the
// camelCase options, values are coerced by each option's kind, `--config file` (YAML or JSON)
// supplies defaults that flags override, and --help text comes from the same table.
import * as fs from 'node:fs'

import YAML from 'yaml'

import type { z } from 'zod'

import { EdpoInputError } from '../errors'
import { type OptionSpec, optionsObject } from '../train/config'
import { formatZodError } from '../validate'

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

export interface ParsedArgs {
  options: Record<string, unknown>
  help: boolean
  /** Arguments that are not flags, in order. */
  positional: string[]
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

/** Parses argv against `table`; extra flags allowed by `extra` (e.g. resume, config) are kept as strings. */
export function parseArgs(argv: readonly string[], table: Record<string, OptionSpec>, extra: readonly string[] = []): ParsedArgs {
  const flags: Record<string, unknown> = {}
  const positional: string[] = []
  let help = false
  let config: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      help = true
      continue
    }
    if (!arg.startsWith('--')) {
      positional.push(arg)
      continue
    }
    const [rawFlag, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    const negated = rawFlag.startsWith('no-') && table[camel(rawFlag.slice(3))]?.kind === 'boolean'
    const name = camel(negated ? rawFlag.slice(3) : rawFlag)
    const value = (): string => {
      if (inline !== undefined) return inline
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) throw new EdpoInputError(`--${rawFlag}: missing value`)
      i += 1
      return next
    }
    if (name === 'config') {
      config = value()
      continue
    }
    if (extra.includes(name)) {
      flags[name] = value()
      continue
    }
    const spec = table[name]
    if (!spec) throw new EdpoInputError(`--${rawFlag}: unknown flag (see --help)`)
    if (spec.kind === 'boolean') {
      flags[name] = negated ? false : inline !== undefined ? coerce(spec, rawFlag, inline) : true
    } else if (spec.kind === 'strings') {
      flags[name] = [...((flags[name] as string[] | undefined) ?? []), value()]
    } else {
      flags[name] = coerce(spec, rawFlag, value())
    }
  }
  const fromFile = config ? readConfigFile(config, table) : {}
  return { options: { ...fromFile, ...flags }, help, positional }
}

/** A YAML or JSON object of options, in camelCase or snake_case/kebab-case keys. */
export function readConfigFile(file: string, table: Record<string, OptionSpec>): Record<string, unknown> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new EdpoInputError(`--config ${file}: cannot read (${(e as Error).message})`)
  }
  let parsed: unknown
  try {
    parsed = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text)
  } catch (e) {
    throw new EdpoInputError(`${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'} (${(e as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new EdpoInputError(`${file}: expected a mapping of option names to values`)
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(parsed)) {
    const name = camel(key.replace(/_/g, '-'))
    const spec = table[name]
    if (!spec) throw new EdpoInputError(`${file}: unknown option '${key}'`)
    // A single path where a list is expected is a one-element list.
    out[name] = spec.kind === 'strings' && typeof value === 'string' ? [value] : value
  }
  return out
}

export function formatHelp(usage: string, summary: string, table: Record<string, OptionSpec>): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const flag = `--${kebab(name)}${spec.kind === 'boolean' ? '' : spec.kind === 'strings' ? ' <path>…' : ' <value>'}`
    const parsed = spec.schema.safeParse(undefined)
    const dflt = parsed.success && parsed.data !== undefined ? ` (default ${JSON.stringify(parsed.data)})` : ''
    return [flag, spec.help + dflt] as const
  })
  const width = Math.max(...rows.map(([f]) => f.length)) + 2
  return [
    `usage: ${usage}`,
    '',
    summary,
    '',
    'options:',
    ...rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`),
    `  ${'--config <file>'.padEnd(width)}YAML or JSON file of these options; flags override it`,
    `  ${'--help'.padEnd(width)}this text`,
  ].join('\n')
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
