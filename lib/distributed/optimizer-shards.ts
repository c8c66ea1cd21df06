// The optimizer state of a checkpoint: optimizer.safetensors (one process, ZeRO-0), or one
// optimizer-rank<r>-of-<w>.safetensors per rank under ZeRO-1/2. Tensors are keyed by parameter
// name (exp_avg.<name>, …), so a resume at another world size or ZeRO stage re-shards by name:
// each rank takes the entries of the parameters it now owns, from whichever file holds them.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'

export const OPTIMIZER_FILE = 'optimizer.safetensors'
const SHARD = /^optimizer-rank(\d+)-of-(\d+)\.safetensors$/

export function optimizerShardFile(rank: number, world: number): string {
  return `optimizer-rank${rank}-of-${world}.safetensors`
}

/** The optimizer files of checkpoint `dir`, or why they are incomplete. */
export function optimizerFiles(dir: string): { files: string[] } | { problem: string } {
  if (fs.existsSync(path.join(dir, OPTIMIZER_FILE))) return { files: [OPTIMIZER_FILE] }
  const shards = fs
    .readdirSync(dir)
    .map((n) => SHARD.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
  if (shards.length === 0) return { problem: `${OPTIMIZER_FILE} is missing` }
  const world = Number(shards[0]![2])
  for (let r = 0; r < world; r++)
    if (!shards.some((m) => Number(m[1]) === r && Number(m[2]) === world)) return { problem: `${optimizerShardFile(r, world)} is missing` }
  return { files: Array.from({ length: world }, (_, r) => optimizerShardFile(r, world)) }
}

/** The optimizer files a rank reads from checkpoint `dir`: its own shard when the layout matches, else every file (re-sharding by name). */
export function optimizerStateFiles(dir: string, rank: number, world: number, sharded: boolean): string[] {
  const found = optimizerFiles(dir)
  if ('problem' in found) throw new EdpoInputError(`--resume ${dir}: ${found.problem}`)
  const own = optimizerShardFile(rank, world)
  const files = sharded && found.files.includes(own) && found.files.length === world ? [own] : found.files
  return files.map((f) => path.join(dir, f))
}
