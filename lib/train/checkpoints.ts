// Checkpoint folders of a run: runs/x/checkpoint-<step>/. Each is written into a temporary folder
// first and renamed into place, so a crash never leaves a half-written checkpoint under a real
// name; only the newest `keepLast` are kept.
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface CheckpointInfo {
  step: number
  dir: string
}

const NAME = /^checkpoint-(\d+)$/

export class CheckpointManager {
  constructor(
    readonly runDir: string,
    readonly keepLast: number,
  ) {}

  /** Existing checkpoints, oldest first. */
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

  /** Writes checkpoint `step` through `write(tempDir)`, then renames it into place and prunes. */
  async save(step: number, write: (dir: string) => Promise<void>): Promise<string> {
    fs.mkdirSync(this.runDir, { recursive: true })
    const final = path.join(this.runDir, `checkpoint-${step}`)
    const temp = path.join(this.runDir, `.checkpoint-${step}.tmp-${process.pid}`)
    fs.rmSync(temp, { recursive: true, force: true })
    fs.mkdirSync(temp)
    try {
      await write(temp)
      fs.rmSync(final, { recursive: true, force: true })
      fs.renameSync(temp, final)
    } catch (e) {
      fs.rmSync(temp, { recursive: true, force: true })
      throw e
    }
    this.prune()
    return final
  }

  private prune(): void {
    const all = this.list()
    for (const old of all.slice(0, Math.max(0, all.length - this.keepLast)))
      fs.rmSync(old.dir, { recursive: true, force: true })
  }
}
