// The run folder (--out) before any work: it must be creatable and writable (checked before the
// model loads or the data is tokenized), a new run never mixes into an earlier run's folder, and a
// resumed run starts from the newest complete checkpoint with the leftovers of a kill removed.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { type CheckpointInfo, CheckpointManager } from './checkpoints'
import { ensureWritableFolder } from './fs-errors'

/**
 * What `--overwrite-output-dir` removes: only what an edpo run writes (metrics.jsonl,
 * invalid-rows.jsonl, samples.jsonl, checkpoint-<step>/ and the hidden leftovers of interrupted
 * saves). Anything else in the folder is kept, so a mistyped --out cannot delete unrelated files.
 */
export const RUN_CONTENT =
  /^(metrics\.jsonl|invalid-rows\.jsonl|samples\.jsonl|checkpoint-\d+(\.incomplete)?|\.checkpoint-\d+\.tmp-\d+|\.trash-.*|\.edpo-write-test-\d+)$/

/** A new run into `out`: refuses a non-empty folder unless `overwrite`, which first empties the run's content. */
export function prepareNewRun(out: string, overwrite: boolean, log: (line: string) => void): void {
  ensureWritableFolder(out, `--out ${out}`)
  const entries = fs.readdirSync(out)
  if (entries.length === 0) return
  if (!overwrite) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '')
    throw new EdpoInputError(
      `--out ${out}: the folder is not empty (${shown}). A new run there would mix with what is in it: ` +
        `pass --resume ${out} to continue that run, --overwrite-output-dir to replace it, or choose another folder`,
    )
  }
  const ours = entries.filter((n) => RUN_CONTENT.test(n))
  for (const name of ours) fs.rmSync(path.join(out, name), { recursive: true, force: true })
  const kept = entries.filter((n) => !RUN_CONTENT.test(n))
  log(
    `--overwrite-output-dir: removed ${ours.length} entries of an earlier run from ${out}` +
      (kept.length > 0 ? `; kept ${kept.length} other files (${kept.slice(0, 3).join(', ')}${kept.length > 3 ? ', …' : ''})` : ''),
  )
}

/** A resumed run in `runDir`: writable, leftovers of interrupted saves removed, the checkpoint to continue from. */
export function openRunToResume(runDir: string, log: (line: string) => void): CheckpointInfo {
  const manager = new CheckpointManager(runDir, 1)
  if (!fs.existsSync(runDir) || manager.list().length === 0) throw new EdpoInputError(`--resume ${runDir}: no checkpoint-<step> folder to resume from`)
  ensureWritableFolder(runDir, `--resume ${runDir}`)
  const stale = manager.cleanStale()
  if (stale.length > 0)
    log(`removed ${stale.length} leftover${stale.length === 1 ? '' : 's'} of an interrupted checkpoint write or prune (${stale.join(', ')})`)
  const latest = manager.latestComplete(log)
  if (!latest) throw new EdpoInputError(`--resume ${runDir}: no checkpoint-<step> folder to resume from`)
  return latest
}
