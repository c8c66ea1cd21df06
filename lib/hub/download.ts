// One file from the Hub into the cache's blobs/: resumed from blobs/<etag>.incomplete with a Range
// request, never written past the size the listing announced, checked against that size and the
// file's hash (sha256 for LFS files, the git blob sha1 otherwise), and renamed into place only
// when it checks: a killed download leaves an .incomplete file, never a blob that looks complete.
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'

import { EdpoInputError } from '../core/errors'
import { hubFetch, hubStatusError } from './http'

export interface ExpectedFile {
  size: number
  /** sha256 hex of an LFS file, else undefined. */
  sha256?: string
  /** git blob sha1 hex of a regular file, else undefined. */
  gitSha1?: string
}

export interface DownloadJob {
  url: string
  blob: string
  expected: ExpectedFile
  repo: string
  kind: 'model' | 'dataset'
  endpoint: string
  token?: string
  tokenSource?: string
  /** Names the file in messages: "--model org/name: config.json". */
  what: string
  /** Tries within this run after a dropped connection (each resumes where the last stopped). */
  attempts?: number
  progress?: (done: number, total: number) => void
}

function newHash(expected: ExpectedFile): crypto.Hash {
  if (expected.sha256) return crypto.createHash('sha256')
  const h = crypto.createHash('sha1')
  h.update(`blob ${expected.size}\0`)
  return h
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size
  } catch {
    return 0
  }
}

/** Downloads job.url into job.blob (unless already there); returns the blob path. */
export async function downloadBlob(job: DownloadJob): Promise<string> {
  const { expected, blob, what } = job
  if (fs.existsSync(blob)) {
    if (sizeOf(blob) === expected.size) return blob
    throw new EdpoInputError(`${what}: the cached blob ${blob} has ${sizeOf(blob)} bytes, the Hub lists ${expected.size}: delete it and run again`)
  }
  const partial = `${blob}.incomplete`
  if (sizeOf(partial) > expected.size) fs.truncateSync(partial, 0)
  const attempts = job.attempts ?? 3
  let lastError: Error | undefined
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      await fetchInto(job, partial)
      lastError = undefined
      break
    } catch (e) {
      if (!(e instanceof Interrupted)) throw e
      lastError = e
    }
  }
  if (lastError) throw new EdpoInputError(`${what}: ${lastError.message}; run again to resume from ${partial}`)
  await verify(partial, job)
  fs.renameSync(partial, blob)
  return blob
}

class Interrupted extends Error {}

async function fetchInto(job: DownloadJob, partial: string): Promise<void> {
  const { expected, what } = job
  let have = sizeOf(partial)
  if (have === expected.size) return
  const res = await hubFetch(job.url, { token: job.token, headers: have > 0 ? { Range: `bytes=${have}-` } : {} }, what)
  if (res.status === 416 && have > 0) {
    await res.body?.cancel()
    fs.truncateSync(partial, 0)
    throw new Interrupted('the server refused to resume')
  }
  if (!res.ok) {
    await res.body?.cancel()
    throw hubStatusError(res.status, job.repo, job.kind, what, job.tokenSource, job.endpoint)
  }
  if (res.status === 206) {
    const range = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')
    if (!range || Number(range[1]) !== have) {
      await res.body?.cancel()
      throw new EdpoInputError(`${what}: the server resumed at the wrong offset (${res.headers.get('content-range')}, expected ${have})`)
    }
  } else have = 0 // a full answer: start over
  const fd = fs.openSync(partial, have === 0 ? 'w' : 'a')
  let written = have
  try {
    const reader = res.body?.getReader()
    if (!reader) throw new Interrupted('the server sent no body')
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (e) {
        throw new Interrupted(`the connection dropped after ${written} of ${expected.size} bytes (${(e as Error).message})`)
      }
      if (chunk.done) break
      if (written + chunk.value.length > expected.size) {
        await reader.cancel()
        fs.closeSync(fs.openSync(partial, 'w'))
        throw new EdpoInputError(`${what}: the server sent more than the ${expected.size} bytes the Hub lists for it: refused`)
      }
      fs.writeSync(fd, chunk.value)
      written += chunk.value.length
      job.progress?.(written, expected.size)
    }
  } finally {
    fs.closeSync(fd)
  }
  if (written < expected.size) throw new Interrupted(`the connection closed after ${written} of ${expected.size} bytes`)
}

async function verify(partial: string, job: DownloadJob): Promise<void> {
  const { expected, what } = job
  const size = sizeOf(partial)
  if (size !== expected.size) {
    fs.rmSync(partial, { force: true })
    throw new EdpoInputError(`${what}: got ${size} bytes, the Hub lists ${expected.size}: refused (the download was removed)`)
  }
  if (!expected.sha256 && !expected.gitSha1) return
  const hash = newHash(expected)
  for await (const chunk of fs.createReadStream(partial)) hash.update(chunk as Buffer)
  const got = hash.digest('hex')
  const want = expected.sha256 ?? expected.gitSha1!
  if (got !== want) {
    fs.rmSync(partial, { force: true })
    throw new EdpoInputError(`${what}: its ${expected.sha256 ? 'sha256' : 'git sha1'} is ${got}, the Hub lists ${want}: refused (the download was removed)`)
  }
}
