// The files a run needs from one Hub repo at one revision, as local paths in the cache's
// snapshots/<commit>/: from the cache alone when it has them (offline first), else listed through
// the tree API (tree-listing.ts) and downloaded (download.ts). `select` picks the needed files from the repo's
// file list; it may read small files it chose (a weight index, a dataset card) through `read`.
import * as fs from 'node:fs'

import { EdpoInputError } from '../core/errors'
import { blobFile, cachedFile, linkIntoSnapshot, readRef, repoFolder, snapshotFiles, snapshotFolder, writeRef, COMMIT } from './cache-layout'
import { downloadBlob } from './download'
import { hubFetch, hubStatusError } from './http'
import type { RepoKind } from './hub-id'
import type { HubSettings } from './settings'
import { type ListedFile, listRepoFiles } from './tree-listing'

export interface RepoRequest {
  kind: RepoKind
  repo: string
  revision: string
  /** How the user named it, for messages: "--model org/name". */
  what: string
}

export type FileSelector = (files: readonly string[], read: (file: string) => Promise<string>) => Promise<string[]>

export interface Snapshot {
  /** snapshots/<commit>/ of the repo. */
  dir: string
  commit: string
  /** The selected files, relative to dir. */
  files: string[]
}

/** A selector's way of saying a file it needs is not in the list it was given (offline: an incomplete cache). */
export class MissingFile extends EdpoInputError {
  constructor(
    what: string,
    /** What is missing, e.g. "no config.json". */
    readonly reason: string,
  ) {
    super(`${what}: ${reason}`)
  }
}

export async function fetchSnapshot(req: RepoRequest, select: FileSelector, settings: HubSettings, log: (line: string) => void): Promise<Snapshot> {
  const repoDir = repoFolder(settings.cacheDir, req.kind, req.repo)
  const local = await fromCache(repoDir, req, select)
  if (local.snapshot) return local.snapshot
  if (settings.offline)
    throw new EdpoInputError(
      `${req.what}: HF_HUB_OFFLINE=1, and the cache ${repoDir} lacks what the run needs of ${req.repo} (revision ${req.revision}): ${local.missing}. Unset HF_HUB_OFFLINE to download it, or fetch it with \`huggingface-cli download${req.kind === 'dataset' ? ' --repo-type dataset' : ''} ${req.repo}\``,
    )
  return fromHub(repoDir, req, select, settings, log)
}

async function fromCache(repoDir: string, req: RepoRequest, select: FileSelector): Promise<{ snapshot?: Snapshot; missing: string }> {
  const commit = readRef(repoDir, req.revision)
  if (commit === undefined) return { missing: `no refs/${req.revision}` }
  if (!fs.existsSync(snapshotFolder(repoDir, commit))) return { missing: `no snapshots/${commit}/` }
  const present = snapshotFiles(repoDir, commit).filter((f) => cachedFile(repoDir, commit, f, req.what) !== undefined)
  const read = async (file: string) => {
    const p = cachedFile(repoDir, commit, file, `${req.what}: ${file}`)
    if (!p) throw new MissingFile(req.what, `no ${file}`)
    return fs.readFileSync(p, 'utf8')
  }
  let files: string[]
  try {
    files = await select(present, read)
  } catch (e) {
    if (e instanceof MissingFile) return { missing: e.reason }
    throw e
  }
  const missing = files.find((f) => cachedFile(repoDir, commit, f, req.what) === undefined)
  if (missing !== undefined) return { missing: `no ${missing}` }
  return { snapshot: { dir: snapshotFolder(repoDir, commit), commit, files }, missing: '' }
}

interface Listed extends ListedFile {
  etag: string
}

function resolveUrl(settings: HubSettings, req: RepoRequest, revision: string, file: string): string {
  const prefix = req.kind === 'dataset' ? 'datasets/' : ''
  return `${settings.endpoint}/${prefix}${req.repo}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`
}

async function listRepo(req: RepoRequest, settings: HubSettings): Promise<Listed[]> {
  const files = await listRepoFiles({ ...req, endpoint: settings.endpoint, token: settings.token, tokenSource: settings.tokenSource })
  return files.map((f) => ({ ...f, etag: (f.sha256 ?? f.gitSha1)! }))
}

/** The commit a revision points to now: X-Repo-Commit of a HEAD on one of its files (as Python asks). */
async function resolveCommit(req: RepoRequest, settings: HubSettings, file: string): Promise<string> {
  if (COMMIT.test(req.revision)) return req.revision
  const res = await hubFetch(resolveUrl(settings, req, req.revision, file), { method: 'HEAD', token: settings.token }, req.what)
  if (!res.ok) throw hubStatusError(res.status, req.repo, req.kind, req.what, settings.tokenSource, settings.endpoint)
  const commit = res.headers.get('x-repo-commit') ?? ''
  if (!COMMIT.test(commit)) throw new EdpoInputError(`${req.what}: the Hub gave no commit (X-Repo-Commit) for revision ${req.revision}`)
  return commit
}

async function fromHub(repoDir: string, req: RepoRequest, select: FileSelector, settings: HubSettings, log: (line: string) => void): Promise<Snapshot> {
  const listing = await listRepo(req, settings)
  if (listing.length === 0) throw new EdpoInputError(`${req.what}: ${req.repo} (revision ${req.revision}) has no files`)
  const byPath = new Map(listing.map((f) => [f.path, f]))
  const commit = await resolveCommit(req, settings, listing[0]!.path)
  writeRef(repoDir, req.revision, commit)
  const ensure = async (file: string): Promise<string> => {
    const what = `${req.what}: ${file}`
    const entry = byPath.get(file)
    if (!entry) throw new EdpoInputError(`${what}: not in ${req.repo} at ${commit}`)
    const have = cachedFile(repoDir, commit, file, what)
    if (have) return have
    const blob = blobFile(repoDir, entry.etag, what)
    fs.mkdirSync(`${repoDir}/blobs`, { recursive: true })
    if (!fs.existsSync(blob)) log(`downloading ${file} (${formatBytes(entry.size)}) of ${req.repo} …`)
    await downloadBlob({
      url: resolveUrl(settings, req, commit, file),
      blob,
      expected: entry,
      repo: req.repo,
      kind: req.kind,
      endpoint: settings.endpoint,
      token: settings.token,
      tokenSource: settings.tokenSource,
      what,
      progress: progressLine(file),
    })
    return linkIntoSnapshot(repoDir, commit, file, blob, what)
  }
  const files = await select(
    listing.map((f) => f.path),
    async (file) => fs.readFileSync(await ensure(file), 'utf8'),
  )
  for (const f of files) await ensure(f)
  return { dir: snapshotFolder(repoDir, commit), commit, files }
}

function formatBytes(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`
}

/** A redrawn percentage on a terminal (standard error); nothing in logs, where the start line suffices. */
function progressLine(file: string): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined
  let last = 0
  return (done, total) => {
    const now = performance.now()
    if (done < total && now - last < 200) return
    last = now
    process.stderr.write(`\r  ${file}: ${((100 * done) / Math.max(total, 1)).toFixed(0)}% of ${formatBytes(total)}${done >= total ? '\n' : ''}`)
  }
}
