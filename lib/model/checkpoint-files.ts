// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards
// model-0000i-of-0000n.safetensors listed by model.safetensors.index.json. Reading checks every
// tensor against the config; writing shards past a size limit and replaces files atomically.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { readSafetensorsHeader, readSafetensorsInBatchesAsync, saveSafetensors, type SafetensorsEntry } from '../io'
import type { Tensor } from '../core/tensor'

export const CONFIG_FILE = 'config.json'
export const SINGLE_FILE = 'model.safetensors'
export const INDEX_FILE = 'model.safetensors.index.json'
const FLOAT_DTYPES = new Set(['float32', 'bfloat16', 'float16', 'float64'])
// Buffers some older checkpoints carry; transformers recomputes them.
const IGNORED = /\.rotary_emb\.inv_freq$/

export function readConfigJson(dir: string): Record<string, unknown> {
  const file = path.join(dir, CONFIG_FILE)
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`, { cause: e })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new EdpoInputError(`${file}: not valid JSON (${(e as Error).message})`, { cause: e })
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new EdpoInputError(`${file}: expected a JSON object`)
  return json as Record<string, unknown>
}

interface Located {
  file: string
  entry: SafetensorsEntry
}

/** Where each tensor of the checkpoint lives (single file or shards), with its header entry. */
export function listCheckpointTensors(dir: string): Map<string, Located> {
  const single = path.join(dir, SINGLE_FILE)
  const index = path.join(dir, INDEX_FILE)
  const out = new Map<string, Located>()
  if (fs.existsSync(single) && !fs.existsSync(index)) {
    for (const [name, entry] of Object.entries(readSafetensorsHeader(single).tensors)) out.set(name, { file: single, entry })
    return out
  }
  if (!fs.existsSync(index)) throw new EdpoInputError(`${dir}: no ${SINGLE_FILE} and no ${INDEX_FILE}`)
  let weightMap: unknown
  try {
    weightMap = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map
  } catch (e) {
    throw new EdpoInputError(`${index}: not valid JSON (${(e as Error).message})`, { cause: e })
  }
  if (typeof weightMap !== 'object' || weightMap === null) throw new EdpoInputError(`${index}: weight_map must be an object`)
  const headers = new Map<string, Record<string, SafetensorsEntry>>()
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\'))
      throw new EdpoInputError(`${index}: weight_map['${name}'] must be a file name in ${dir}`)
    const file = path.join(dir, shard)
    if (!headers.has(file)) {
      if (!fs.existsSync(file)) throw new EdpoInputError(`${index}: tensor '${name}' is in ${shard}, which does not exist`)
      headers.set(file, readSafetensorsHeader(file).tensors)
    }
    const entry = headers.get(file)![name]
    if (!entry) throw new EdpoInputError(`${index}: tensor '${name}' is mapped to ${shard}, but that file does not hold it`)
    out.set(name, { file, entry })
  }
  // Tensors present in a shard but not in the index would be silently dropped: report them.
  for (const [file, tensors] of headers)
    for (const name of Object.keys(tensors)) if (!out.has(name)) throw new EdpoInputError(`${file}: tensor '${name}' is not listed in ${INDEX_FILE}`)
  return out
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`

/**
 * Reads the tensors `expected` names (in that order) and checks names, shapes and dtypes.
 * A tied lm_head.weight stored anyway is accepted and reported in `extraTied`.
 */
export async function readCheckpointTensors(
  dir: string,
  expected: Map<string, number[]>,
  modelType: string,
  /** Applied to each tensor as soon as its batch is read (e.g. a dtype/device move that disposes the original). */
  convert?: (t: Tensor) => Tensor,
): Promise<{ tensors: Map<string, Tensor>; storedTiedHead: boolean }> {
  const located = listCheckpointTensors(dir)
  // Missing tensors are reported against what lists the tensors: the single file or the index.
  const listing = path.join(dir, fs.existsSync(path.join(dir, INDEX_FILE)) ? INDEX_FILE : SINGLE_FILE)
  for (const [name, shape] of expected) {
    const at = located.get(name)
    if (!at) throw new EdpoInputError(`${listing}: tensor '${name}' is missing (expected shape ${fmt(shape)} for this ${modelType} config)`)
    const file = path.basename(at.file)
    if (at.entry.shape.length !== shape.length || at.entry.shape.some((d, i) => d !== shape[i]))
      throw new EdpoInputError(`${file}: tensor '${name}' has shape ${fmt(at.entry.shape)}, expected ${fmt(shape)} from config.json`)
    if (!FLOAT_DTYPES.has(at.entry.dtype))
      throw new EdpoInputError(`${file}: tensor '${name}' has dtype ${at.entry.dtype}; expected float32, bfloat16 or float16`)
  }
  let storedTiedHead = false
  for (const [name, at] of located) {
    if (expected.has(name) || IGNORED.test(name)) continue
    if (name === 'lm_head.weight' && expected.has('model.embed_tokens.weight')) {
      storedTiedHead = true // tie_word_embeddings: the embedding is used; keep the name for saving
      continue
    }
    throw new EdpoInputError(
      `${path.basename(at.file)}: unexpected tensor '${name}' ${fmt(at.entry.shape)} (not part of a ${modelType} model with this config.json)`,
    )
  }
  const byFile = new Map<string, string[]>()
  for (const name of expected.keys()) {
    const file = located.get(name)!.file
    byFile.set(file, [...(byFile.get(file) ?? []), name])
  }
  // A batch at a time, each tensor converted as it arrives: a checkpoint in another dtype is never
  // in memory whole beside the converted weights.
  const loaded = new Map<string, Tensor>()
  for (const [file, names] of byFile)
    await readSafetensorsInBatchesAsync(
      file,
      (batch) => {
        for (const [n, t] of Object.entries(batch)) loaded.set(n, convert ? convert(t) : t)
      },
      { names },
    )
  return { tensors: new Map([...expected.keys()].map((n) => [n, loaded.get(n)!])), storedTiedHead }
}

const BYTES: Record<string, number> = { float32: 4, float64: 8, bfloat16: 2, float16: 2 }

function writeFileAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  fs.writeFileSync(tmp, text)
  fs.renameSync(tmp, file)
}

/**
 * Writes config.json and the tensors: one model.safetensors when they fit in `maxShardBytes`,
 * otherwise shards plus the index. Each file is replaced atomically; stale weight files of an
 * earlier save in another layout are removed last.
 */
export function writeCheckpoint(
  dir: string,
  tensors: ReadonlyArray<readonly [string, Tensor]>,
  config: Record<string, unknown>,
  maxShardBytes: number,
): string[] {
  fs.mkdirSync(dir, { recursive: true })
  const shards: [string, Tensor][][] = [[]]
  let current = 0
  let total = 0
  for (const [name, t] of tensors) {
    const bytes = t.numel * (BYTES[t.dtype] ?? 4)
    if (current > 0 && current + bytes > maxShardBytes) {
      shards.push([])
      current = 0
    }
    shards[shards.length - 1]!.push([name, t])
    current += bytes
    total += bytes
  }
  const n = shards.length
  const files = n === 1 ? [SINGLE_FILE] : shards.map((_, i) => shardFileName(i, n))
  shards.forEach((shard, i) => saveSafetensors(path.join(dir, files[i]!), Object.fromEntries(shard), { format: 'pt' }))
  finishCheckpoint(
    dir,
    files,
    shards.map((shard) => shard.map(([name]) => name)),
    total,
    config,
  )
  return files
}

const shardFileName = (i: number, n: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`

/**
 * writeCheckpoint's layout with one file per group of tensors, each group asked for (`next(i)`) only
 * once the previous one is written, so a writer holds one group at a time (ZeRO-3: a gathered
 * unit). With `write` false the groups are asked for and dropped (the other ranks of a gather).
 */
export async function writeCheckpointStreamed(
  dir: string,
  groups: number,
  next: (i: number) => Promise<ReadonlyArray<readonly [string, Tensor]>>,
  config: Record<string, unknown>,
  write = true,
): Promise<void> {
  if (write) fs.mkdirSync(dir, { recursive: true })
  const files = Array.from({ length: groups }, (_, i) => (groups === 1 ? SINGLE_FILE : shardFileName(i, groups)))
  const names: string[][] = []
  let total = 0
  for (let i = 0; i < groups; i++) {
    const group = await next(i)
    if (write) saveSafetensors(path.join(dir, files[i]!), Object.fromEntries(group), { format: 'pt' })
    names.push(group.map(([name]) => name))
    for (const [, t] of group) {
      total += t.numel * (BYTES[t.dtype] ?? 4)
      t.dispose()
    }
  }
  if (write) finishCheckpoint(dir, files, names, total, config)
}

// The index (several files), config.json, and no stale weight files of an earlier layout.
function finishCheckpoint(dir: string, files: readonly string[], names: readonly (readonly string[])[], total: number, config: Record<string, unknown>): void {
  const n = files.length
  if (n > 1) {
    const weightMap: Record<string, string> = {}
    names.forEach((group, i) => group.forEach((name) => (weightMap[name] = files[i]!)))
    writeFileAtomic(path.join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n')
  }
  writeFileAtomic(path.join(dir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n')
  const keep = new Set([...files, ...(n > 1 ? [INDEX_FILE] : [])])
  for (const f of fs.readdirSync(dir))
    if (!keep.has(f) && (f === INDEX_FILE || f === SINGLE_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))) fs.rmSync(path.join(dir, f))
}
