// The Hub cache as Python's huggingface_hub lays it out, read and written:
//   <cache>/models--org--name/refs/<revision>           the commit the revision pointed to
//   <cache>/models--org--name/blobs/<etag>              file contents, named by sha256 (LFS) or git sha1
//   <cache>/models--org--name/snapshots/<commit>/<path> relative symlinks into ../blobs/
// (datasets--org--name/ the same). Every path built from a repo id, revision or file name that a
// user or a server gave is checked to stay inside the repo's folder; writes are temp + rename.
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import type { RepoKind } from './hub-id'
import { validRevision } from './hub-id'

export const COMMIT = /^[0-9a-f]{40}$/
const ETAG = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/

/** models--org--name (or datasets--org--name) under the cache. */
export function repoFolder(cacheDir: string, kind: RepoKind, repo: string): string {
  return path.join(cacheDir, `${kind}s--${repo.split('/').join('--')}`)
}

/**
 * `relative` (a repo file name from a user, a server or a listing) joined under `base`; refused
 * when it is absolute, has '..', '.', empty or backslashed segments, or would land outside.
 */
export function insideFolder(base: string, relative: string, what: string): string {
  const parts = relative.split('/')
  if (
    relative === '' ||
    relative.includes('\0') ||
    relative.includes('\\') ||
    path.isAbsolute(relative) ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  )
    throw new EdpoInputError(`${what}: refused the file name ${JSON.stringify(relative)} (it must stay inside the repo: no '..', no absolute paths)`)
  const joined = path.join(base, ...parts)
  if (!joined.startsWith(base + path.sep)) throw new EdpoInputError(`${what}: refused the file name ${JSON.stringify(relative)} (it leaves ${base})`)
  return joined
}

/** The blob of an etag: a sha256 (LFS) or a git sha1, nothing else (it becomes a file name). */
export function blobFile(repoDir: string, etag: string, what: string): string {
  if (!ETAG.test(etag)) throw new EdpoInputError(`${what}: the server's etag ${JSON.stringify(etag.slice(0, 80))} is not a sha1 or sha256`)
  return path.join(repoDir, 'blobs', etag)
}

/** The commit a revision resolves to in the cache: the revision itself when it is a commit, else refs/<revision>. */
export function readRef(repoDir: string, revision: string): string | undefined {
  if (COMMIT.test(revision)) return revision
  if (!validRevision(revision)) return undefined
  try {
    const commit = fs.readFileSync(path.join(repoDir, 'refs', ...revision.split('/')), 'utf8').trim()
    return COMMIT.test(commit) ? commit : undefined
  } catch {
    return undefined
  }
}

/** Writes `bytes` to `file` through a temp file and a rename: readers see the old or the new file, never half. */
export function writeAtomic(file: string, bytes: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`
  fs.writeFileSync(tmp, bytes)
  fs.renameSync(tmp, file)
}

/** refs/<revision> ← commit (Python writes the bare hash, no newline). */
export function writeRef(repoDir: string, revision: string, commit: string): void {
  if (revision === commit || !validRevision(revision)) return
  writeAtomic(path.join(repoDir, 'refs', ...revision.split('/')), commit)
}

export function snapshotFolder(repoDir: string, commit: string): string {
  if (!COMMIT.test(commit)) throw new EdpoInputError(`${repoDir}: ${JSON.stringify(commit)} is not a commit hash`)
  return path.join(repoDir, 'snapshots', commit)
}

/**
 * A file of a cached snapshot, or undefined when it is missing or dangling. A symlink that leads
 * outside the repo's folder (a hand-edited or hostile cache) is an error, not followed.
 */
export function cachedFile(repoDir: string, commit: string, file: string, what: string): string | undefined {
  const link = insideFolder(snapshotFolder(repoDir, commit), file, what)
  let real: string
  try {
    real = fs.realpathSync(link)
  } catch {
    return undefined
  }
  const root = fs.realpathSync(repoDir)
  if (!real.startsWith(root + path.sep))
    throw new EdpoInputError(`${what}: ${link} leads outside ${repoDir} (to ${real}); refusing a cache entry that points elsewhere`)
  return fs.statSync(real).isFile() ? link : undefined
}

/** The files of a cached snapshot (relative, '/'-separated), for resolving a layout offline. */
export function snapshotFiles(repoDir: string, commit: string): string[] {
  const root = snapshotFolder(repoDir, commit)
  const out: string[] = []
  const walk = (dir: string, prefix: string, depth: number) => {
    if (depth > 16) return
    let entries: fs.Dirent[]
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name
      if (e.isDirectory()) walk(path.join(dir, e.name), rel, depth + 1)
      else if (e.isSymbolicLink() || e.isFile()) out.push(rel)
    }
  }
  walk(root, '', 0)
  return out.sort()
}

/** snapshots/<commit>/<file> → a relative symlink to blobs/<etag>, as Python makes it (replaced atomically). */
export function linkIntoSnapshot(repoDir: string, commit: string, file: string, blob: string, what: string): string {
  const link = insideFolder(snapshotFolder(repoDir, commit), file, what)
  fs.mkdirSync(path.dirname(link), { recursive: true })
  const target = path.relative(path.dirname(link), blob)
  const tmp = `${link}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`
  fs.symlinkSync(target, tmp)
  fs.renameSync(tmp, link)
  return link
}
