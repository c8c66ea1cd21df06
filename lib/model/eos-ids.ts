// Every id that ends a generation: the tokenizer's eos_token, config.json's eos_token_id and
// generation_config.json's eos_token_id (Llama-3-Instruct lists <|end_of_text|> and <|eot_id|>
// there; stopping on the first alone runs past the end of the turn). Files from strangers: read
// defensively, and a malformed value is an error naming the file and key. A PEFT adapter folder
// has no config.json of its own: its base's files (base_model_name_or_path) count too.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { ADAPTER_CONFIG_FILE, readAdapterConfig } from './lora'

function idsIn(dir: string, file: string): number[] {
  const full = path.join(dir, file)
  if (!fs.existsSync(full)) return []
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(full, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${full}: not valid JSON (${(e as Error).message})`)
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new EdpoInputError(`${full}: expected a JSON object`)
  const v = Object.hasOwn(json, 'eos_token_id') ? (json as Record<string, unknown>).eos_token_id : undefined
  if (v === undefined || v === null) return []
  const list = Array.isArray(v) ? v : [v]
  for (const id of list)
    if (!Number.isInteger(id) || (id as number) < 0)
      throw new EdpoInputError(`${full}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(v)}`)
  return list as number[]
}

/** The sorted, distinct end-of-sequence ids of a model (or adapter) folder, starting from the tokenizer's. */
export function eosTokenIds(dir: string, tokenizerEos: number): number[] {
  const dirs = [dir]
  if (!fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE))) {
    const base = readAdapterConfig(dir).baseModelNameOrPath
    if (base !== undefined) dirs.push(base)
  }
  const ids = dirs.flatMap((d) => [...idsIn(d, 'config.json'), ...idsIn(d, 'generation_config.json')])
  return [...new Set([tokenizerEos, ...ids])].sort((a, b) => a - b)
}
