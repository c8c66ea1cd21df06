// File-system failures as users should read them: the folder or file at fault and the cause in
// plain words (EROFS, EACCES, ENOSPC, ...), instead of Node's raw "ENOENT: ..., mkdir" with a stack.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoError } from '../core/errors'

/** A file or folder edpo could not create, read or write; `message` names it and the cause. */
export class EdpoFileError extends EdpoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'EDPO_FILE', options)
  }
}

const CAUSES: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
  EEXIST: 'it already exists',
  ENOENT: 'no such file or folder',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
}

/** A Node system error (fs, child_process), which carries an errno code. */
export function isSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string'
}

/** "no space left on device (ENOSPC)", or the error's own message for codes not listed. */
export function describeCause(e: unknown): string {
  if (!isSystemError(e)) return e instanceof Error ? e.message : String(e)
  const words = CAUSES[e.code]
  return words ? `${words} (${e.code})` : e.message
}

/** Wraps a failed file operation on `target` into an EdpoFileError: "<what> <target>: <cause>". */
export function fileError(what: string, target: string, e: unknown): EdpoError {
  if (e instanceof EdpoError) return e
  return new EdpoFileError(`${what} ${target}: ${describeCause(e)}`, { cause: e })
}

/**
 * Creates `dir` if needed and proves it is writable by writing and removing a probe file, so a
 * run fails before model load and tokenization rather than at its first checkpoint. `flag` is how
 * the user named the folder (e.g. "--out runs/x").
 */
export function ensureWritableFolder(dir: string, flag: string): void {
  // One level at a time rather than mkdir -p: Node's recursive mkdir reports EROFS as ENOENT (and
  // loops forever under /proc), while each single mkdir fails with the real cause.
  const missing: string[] = []
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d)
  for (const level of missing) {
    try {
      fs.mkdirSync(level)
    } catch (e) {
      const parent = path.dirname(level)
      const code = isSystemError(e) ? e.code : ''
      const cause =
        code === 'ENOTDIR'
          ? `${parent} is a file, not a folder (ENOTDIR)`
          : code === 'ENOENT' && fs.existsSync(parent)
            ? `${parent} does not allow creating folders (ENOENT)`
            : describeCause(e)
      throw new EdpoFileError(`${flag}: cannot create the run folder ${dir}: ${cause}`, { cause: e })
    }
  }
  if (!fs.statSync(dir).isDirectory()) throw new EdpoFileError(`${flag}: ${dir} is a file, not a folder`)
  const probe = path.join(dir, `.edpo-write-test-${process.pid}`)
  try {
    fs.writeFileSync(probe, '')
    fs.rmSync(probe, { force: true })
  } catch (e) {
    throw new EdpoFileError(`${flag}: the run folder ${dir} is not writable: ${describeCause(e)}`, { cause: e })
  }
}
