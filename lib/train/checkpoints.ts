// Checkpoint folders of a run: runs/x/checkpoint-<step>/. Each is written into a temporary folder,
// finished with a marker listing its files and their sizes (written last), and renamed into place,
// so a crash never leaves a half-written checkpoint under a real name. Old checkpoints are renamed
// away before they are deleted, for the same reason. Only the newest `keepLast` are kept.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { optimizerFiles } from '../distributed/optimizer-shards'
import { readSafetensorsHeader } from '../io'
import { EdpoFileError, fileError, isSystemError } from './fs-errors'

export interface CheckpointInfo {
  step: number
  dir: string
}

/** Written last into every checkpoint: {step, files: {relative path: bytes}}. */
export const COMPLETE_MARKER = 'checkpoint-complete.json'

const NAME = /^checkpoint-(\d+)$/
/** Leftovers of an interrupted save (.checkpoint-N.tmp-PID) or prune (.trash-…): partial models. */
const STALE = /^\.(checkpoint-\d+\.tmp-\d+|trash-.*)$/

function filesUnder(dir: string, base = dir): Record<string, number> {
  const out: Record<string, number> = {}
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name)
    if (e.isDirectory()) Object.assign(out, filesUnder(full, base))
    else out[path.relative(base, full)] = fs.statSync(full).size
  }
  return out
}

/** Why checkpoint folder `dir` cannot be resumed from, or undefined when it is complete. */
export function checkpointProblem(dir: string): string | undefined {
  const marker = path.join(dir, COMPLETE_MARKER)
  const stateFile = path.join(dir, 'trainer_state.json')
  if (fs.existsSync(marker)) {
    let listed: Record<string, number>
    try {
      listed = (JSON.parse(fs.readFileSync(marker, 'utf8')) as { files: Record<string, number> }).files
      if (typeof listed !== 'object' || listed === null) throw new Error('no files list')
    } catch (e) {
      return `${COMPLETE_MARKER} is unreadable (${(e as Error).message})`
    }
    for (const [file, size] of Object.entries(listed)) {
      const full = path.join(dir, file)
      if (!fs.existsSync(full)) return `${file} is missing`
      const actual = fs.statSync(full).size
      if (actual !== size) return `${file} has ${actual} bytes, ${size} were written`
    }
  } else if (!fs.existsSync(stateFile)) {
    // Checkpoints from before the marker existed are accepted when they pass the checks below.
    return `no ${COMPLETE_MARKER} and no trainer_state.json: the checkpoint was not finished`
  }
  try {
    JSON.parse(fs.readFileSync(stateFile, 'utf8'))
  } catch (e) {
    return `trainer_state.json is unreadable (${(e as Error).message})`
  }
  // The model: a full HF folder (config.json) or, for a LoRA run, a PEFT adapter folder.
  if (!fs.existsSync(path.join(dir, 'config.json')) && !fs.existsSync(path.join(dir, 'adapter_config.json'))) return 'config.json is missing'
  const optimizer = optimizerFiles(dir)
  if ('problem' in optimizer) return optimizer.problem
  for (const file of Object.keys(filesUnder(dir)).filter((f) => f.endsWith('.safetensors'))) {
    try {
      readSafetensorsHeader(path.join(dir, file))
    } catch (e) {
      return (e as Error).message.replace(path.join(dir, file), file)
    }
  }
  return undefined
}

export class CheckpointManager {
  constructor(
    readonly runDir: string,
    readonly keepLast: number,
  ) {}

  /** Existing checkpoints (complete or not), oldest first. */
  list(): CheckpointInfo[] {
    if (!fs.existsSync(this.runDir)) return []
    return fs
      .readdirSync(this.runDir)
      .map((name) => ({ m: NAME.exec(name), name }))
      .filter((e): e is { m: RegExpExecArray; name: string } => e.m !== null)
      .map((e) => ({ step: Number(e.m[1]), dir: path.join(this.runDir, e.name) }))
      .sort((a, b) => a.step - b.step)
  }

  latest(): CheckpointInfo | undefined {
    return this.list().at(-1)
  }

  /**
   * The newest complete checkpoint, to resume from. Newer incomplete or corrupt ones are renamed
   * to checkpoint-<step>.incomplete (kept for inspection, no longer listed) with a warning; when
   * none is complete the error names the newest and what is wrong with it.
   */
  latestComplete(log: (line: string) => void): CheckpointInfo | undefined {
    const all = this.list()
    const bad: { info: CheckpointInfo; problem: string }[] = []
    for (const info of [...all].reverse()) {
      const problem = checkpointProblem(info.dir)
      if (problem === undefined) {
        for (const b of bad) {
          const aside = `${b.info.dir}.incomplete`
          fs.rmSync(aside, { recursive: true, force: true })
          fs.renameSync(b.info.dir, aside)
          log(`warning: ${b.info.dir} is incomplete or corrupt (${b.problem}); resuming from ${info.dir} instead (the broken one is kept as ${aside})`)
        }
        return info
      }
      bad.push({ info, problem })
    }
    if (bad.length > 0) {
      const newest = bad[0]!
      throw new EdpoInputError(`--resume ${this.runDir}: ${newest.info.dir} is incomplete or corrupt (${newest.problem}), and no older checkpoint is complete`)
    }
    return undefined
  }

  /** Removes leftovers of interrupted saves and prunes; returns their names. */
  cleanStale(): string[] {
    if (!fs.existsSync(this.runDir)) return []
    const stale = fs.readdirSync(this.runDir).filter((n) => STALE.test(n))
    for (const name of stale) fs.rmSync(path.join(this.runDir, name), { recursive: true, force: true })
    return stale
  }

  /** The temporary folder checkpoint `step` is written into before its rename (`tag`: the writer's pid, or 0 for all ranks of a run). */
  tempDir(step: number, tag: number = process.pid): string {
    return path.join(this.runDir, `.checkpoint-${step}.tmp-${tag}`)
  }

  /** Writes checkpoint `step` through `write(tempDir)`, marks it complete, renames it into place and prunes. */
  async save(step: number, write: (dir: string) => Promise<void>, tag?: number): Promise<string> {
    const final = path.join(this.runDir, `checkpoint-${step}`)
    const temp = this.tempDir(step, tag)
    try {
      fs.mkdirSync(this.runDir, { recursive: true })
      fs.rmSync(temp, { recursive: true, force: true })
      fs.mkdirSync(temp)
      await write(temp)
      // Last: the marker that says every file above was written in full.
      fs.writeFileSync(path.join(temp, COMPLETE_MARKER), JSON.stringify({ step, files: filesUnder(temp) }) + '\n')
      if (fs.existsSync(final)) this.remove(final)
      fs.renameSync(temp, final)
    } catch (e) {
      fs.rmSync(temp, { recursive: true, force: true })
      // A Node fs error names the file it failed on (e.g. ENOSPC while writing optimizer.safetensors);
      // otherwise the message says which checkpoint was being written.
      if (isSystemError(e)) throw fileError(`checkpoint-${step}: cannot write`, e.path ?? temp, e)
      throw new EdpoFileError(`checkpoint-${step}: writing ${temp} failed: ${(e as Error).message ?? String(e)}`, { cause: e })
    }
    this.prune()
    return final
  }

  private prune(): void {
    const all = this.list()
    for (const old of all.slice(0, Math.max(0, all.length - this.keepLast))) this.remove(old.dir)
  }

  // Renamed away first, so a kill mid-delete never leaves a partial folder under a checkpoint's
  // name; a leftover .trash-* is removed by cleanStale() at the next start or resume.
  private remove(dir: string): void {
    const trash = path.join(this.runDir, `.trash-${path.basename(dir)}-${process.pid}`)
    fs.rmSync(trash, { recursive: true, force: true })
    fs.renameSync(dir, trash)
    fs.rmSync(trash, { recursive: true, force: true })
  }
}
