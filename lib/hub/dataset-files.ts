// Which files of a Hub dataset repo hold one split, by the Hub's own rules, in this order:
//  1. the dataset card's YAML front matter (README.md `configs:` with `data_files`, or `data_dir`);
//  2. the file-name conventions: a path segment or a file name starting with the split's name
//     (train/training, test/testing/eval, validation/valid/dev/val), e.g. data/train-00000-of-00001.parquet,
//     train.jsonl, harmless-base/train.jsonl.gz;
//  3. no split names anywhere: every data file is the train split.
// Only formats edpo reads count: .parquet, .jsonl, .json, .ndjson and gzipped .jsonl/.json.
import YAML from 'yaml'

import { EdpoInputError } from '../core/errors'
import { type FileSelector, MissingFile } from './repo-snapshot'

const DATA_FILE = /\.(parquet|jsonl|ndjson|json|jsonl\.gz|ndjson\.gz|json\.gz)$/i

const SPLIT_WORDS: Record<string, readonly string[]> = {
  train: ['train', 'training'],
  test: ['test', 'testing', 'eval', 'evaluation'],
  validation: ['validation', 'valid', 'dev', 'val'],
}

export interface SplitRequest {
  split: string
  /** A card config name, or (without a card) a folder of the repo. */
  config?: string
  what: string
}

/** A glob of the card (`data/train-*`, `helpful-*\/train*`, `**\/*.parquet`) as a regular expression. */
function globRegex(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*'
      i++
      if (glob[i + 1] === '/') i++
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

function matchSplit(files: readonly string[], split: string): string[] {
  const words = SPLIT_WORDS[split] ?? [split]
  const starts = (name: string) => words.some((w) => name === w || (name.startsWith(w) && /^[-._ 0-9]/.test(name.slice(w.length))))
  return files.filter((f) => {
    const parts = f.split('/')
    return parts.slice(0, -1).some((d) => words.includes(d)) || starts(parts[parts.length - 1]!)
  })
}

interface CardConfig {
  name: string
  isDefault: boolean
  dataFiles: unknown
  dataDir?: string
}

function cardConfigs(card: string, what: string): CardConfig[] {
  const m = /^---\r?\n([\s\S]*?)\r?\n---(?:\r?\n|$)/.exec(card)
  if (!m) return []
  let meta: unknown
  try {
    meta = YAML.parse(m[1]!, { maxAliasCount: 100 })
  } catch (e) {
    throw new EdpoInputError(`${what}: README.md: the dataset card's YAML header does not parse (${(e as Error).message})`)
  }
  const configs = (meta as { configs?: unknown } | null)?.configs
  if (!Array.isArray(configs)) return []
  return configs
    .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null)
    .map((c) => ({
      name: typeof c.config_name === 'string' ? c.config_name : 'default',
      isDefault: c.default === true,
      dataFiles: c.data_files,
      dataDir: typeof c.data_dir === 'string' ? c.data_dir : undefined,
    }))
}

/** data_files of a config → the globs of `split` (a bare string or list is the train split). */
function splitGlobs(dataFiles: unknown, split: string): string[] | undefined {
  const strings = (v: unknown) => (typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
  if (typeof dataFiles === 'string' || (Array.isArray(dataFiles) && dataFiles.every((x) => typeof x === 'string')))
    return split === 'train' ? strings(dataFiles) : undefined
  if (Array.isArray(dataFiles)) {
    const entry = dataFiles.find((e) => typeof e === 'object' && e !== null && (e as { split?: unknown }).split === split) as { path?: unknown } | undefined
    return entry ? strings(entry.path) : undefined
  }
  if (typeof dataFiles === 'object' && dataFiles !== null && split in dataFiles) return strings((dataFiles as Record<string, unknown>)[split])
  return undefined
}

function seen(files: readonly string[]): string {
  const shown = files.slice(0, 40).join(', ')
  return files.length > 40 ? `${shown}, … (${files.length} files)` : shown || 'none'
}

/** Shards named -NNNNN-of-MMMMM must all be there (a cache holding some of them is incomplete). */
function checkShards(chosen: readonly string[], what: string): void {
  const groups = new Map<string, { of: number; have: number }>()
  for (const f of chosen) {
    const m = /^(.*)-(\d{5})-of-(\d{5})(\.[^/]+)$/.exec(f)
    if (!m) continue
    const key = `${m[1]}|${m[4]}`
    const g = groups.get(key) ?? { of: Number(m[3]), have: 0 }
    g.have++
    groups.set(key, g)
  }
  for (const [key, g] of groups) if (g.have < g.of) throw new MissingFile(what, `${g.of - g.have} of the ${g.of} shards of ${key.split('|')[0]} are missing`)
}

/** The selector of one split's files (see the header). */
export function splitFiles(req: SplitRequest): FileSelector {
  return async (all, read) => {
    const data = all.filter((f) => DATA_FILE.test(f))
    let configs: CardConfig[] = []
    if (all.includes('README.md')) configs = cardConfigs(await read('README.md'), req.what)
    let pool = data
    let chosen: string[] | undefined
    let where = ''
    if (configs.length > 0) {
      const config =
        req.config !== undefined
          ? configs.find((c) => c.name === req.config)
          : (configs.find((c) => c.isDefault) ?? configs.find((c) => c.name === 'default') ?? (configs.length === 1 ? configs[0] : undefined))
      if (!config)
        throw new EdpoInputError(
          `${req.what}: ${req.config === undefined ? 'the dataset card has several configs and none is the default' : `no config '${req.config}' in the dataset card`}: give --data-config (TRL: dataset_config) one of ${configs.map((c) => c.name).join(', ')}`,
        )
      where = ` (config '${config.name}' of the dataset card)`
      if (config.dataDir !== undefined) pool = data.filter((f) => f.startsWith(config.dataDir!.replace(/\/+$/, '') + '/'))
      const globs = splitGlobs(config.dataFiles, req.split)
      if (globs) {
        const res = globs.map((g) => globRegex(config.dataDir && !g.startsWith(config.dataDir) ? `${config.dataDir}/${g}` : g))
        chosen = pool.filter((f) => res.some((r) => r.test(f)))
      } else if (config.dataFiles !== undefined) {
        throw new MissingFile(req.what, `the dataset card${where} has no split '${req.split}' (data_files: ${JSON.stringify(config.dataFiles).slice(0, 200)})`)
      }
    } else if (req.config !== undefined) {
      // No card configs: a config is a folder of the repo (as `data_dir`).
      pool = data.filter((f) => f.startsWith(req.config + '/'))
      where = ` (folder ${req.config}/)`
      if (pool.length === 0) throw new MissingFile(req.what, `no data files under ${req.config}/ (the repo has no card configs; files seen: ${seen(data)})`)
    }
    if (chosen === undefined) {
      chosen = matchSplit(pool, req.split)
      const anySplit = Object.keys(SPLIT_WORDS).some((s) => matchSplit(pool, s).length > 0)
      if (chosen.length === 0 && req.split === 'train' && !anySplit) chosen = [...pool]
    }
    if (chosen.length === 0)
      throw new MissingFile(
        req.what,
        `found no files for split '${req.split}'${where}; files seen: ${seen(all)}. Give --data-split (TRL: dataset_train_split) a split the repo has, or list its files with --data`,
      )
    checkShards(chosen, req.what)
    return [...chosen].sort()
  }
}
