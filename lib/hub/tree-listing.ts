// A repo's files at a revision, from the Hub's tree API: GET /api/{models,datasets}/<repo>/tree/<rev>
// ?recursive=true, paged by a `Link: <…>; rel="next"` header. Written here rather than taken from
// @huggingface/hub (ten more packages in every install, for one call) so that the listing goes through
// hubFetch: the token stays on the Hub's origin, and a next-page link to another origin is refused.
// The answer comes from a server, so every entry is checked before it is used.
import { EdpoInputError } from '../core/errors'
import { hubFetch, hubStatusError } from './http'
import type { RepoKind } from './hub-id'

export interface ListedFile {
  path: string
  /** Bytes of the file itself (an LFS file's object, not its pointer). */
  size: number
  /** LFS files: the object's sha256. */
  sha256?: string
  /** Plain git files: the blob's sha1. */
  gitSha1?: string
}

export interface ListingRequest {
  kind: RepoKind
  repo: string
  revision: string
  endpoint: string
  token?: string
  tokenSource?: string
  /** How the user named it, for messages. */
  what: string
}

const MAX_PAGES = 1000
const HEX40 = /^[0-9a-f]{40}$/
const HEX64 = /^[0-9a-f]{64}$/

export function treeUrl(req: Pick<ListingRequest, 'kind' | 'repo' | 'revision' | 'endpoint'>): string {
  return `${req.endpoint}/api/${req.kind}s/${req.repo}/tree/${encodeURIComponent(req.revision)}?recursive=true&expand=false`
}

/** The next page's URL from a Link header, or undefined on the last page. */
export function nextLink(header: string | null): string | undefined {
  if (!header) return undefined
  for (const part of header.split(',')) {
    const m = /^\s*<([^>]+)>\s*;(.*)$/.exec(part)
    if (m && /(^|;)\s*rel\s*=\s*"?next"?\s*(;|$)/.test(m[2]!)) return m[1]
  }
  return undefined
}

export async function listRepoFiles(req: ListingRequest): Promise<ListedFile[]> {
  const origin = new URL(req.endpoint).origin
  const out: ListedFile[] = []
  let url: string | undefined = treeUrl(req)
  for (let page = 0; url !== undefined; page++) {
    if (page >= MAX_PAGES) throw new EdpoInputError(`${req.what}: the Hub's listing of ${req.repo} runs past ${MAX_PAGES} pages`)
    const res = await hubFetch(url, { headers: { Accept: 'application/json' }, token: req.token }, req.what)
    if (!res.ok) throw hubStatusError(res.status, req.repo, req.kind, req.what, req.tokenSource, req.endpoint)
    let body: unknown
    try {
      body = await res.json()
    } catch (e) {
      throw new EdpoInputError(`${req.what}: the Hub's listing of ${req.repo} is not JSON (${(e as Error).message})`, { cause: e })
    }
    if (!Array.isArray(body)) throw new EdpoInputError(`${req.what}: the Hub's listing of ${req.repo} is not a list`)
    for (const entry of body) {
      const file = listedFile(entry, req)
      if (file) out.push(file)
    }
    const next = nextLink(res.headers.get('link'))
    if (next !== undefined) {
      const nextUrl: URL = new URL(next, url)
      if (nextUrl.origin !== origin)
        throw new EdpoInputError(`${req.what}: the Hub's listing of ${req.repo} points its next page at another origin (${nextUrl.origin})`)
      url = nextUrl.toString()
    } else url = undefined
  }
  return out
}

/** One tree entry as a file, undefined for a directory; anything malformed is an error. */
function listedFile(entry: unknown, req: ListingRequest): ListedFile | undefined {
  const bad = (why: string) =>
    new EdpoInputError(`${req.what}: the Hub's listing of ${req.repo} has a malformed entry (${why}): ${JSON.stringify(entry)?.slice(0, 200)}`)
  if (typeof entry !== 'object' || entry === null) throw bad('not an object')
  const e = entry as Record<string, unknown>
  if (e.type === 'directory') return undefined
  if (e.type !== 'file') throw bad(`type ${String(e.type)}`)
  if (typeof e.path !== 'string' || e.path === '') throw bad('no path')
  const size = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  if (e.lfs !== undefined && e.lfs !== null) {
    const lfs = e.lfs as Record<string, unknown>
    if (typeof lfs.oid !== 'string' || !HEX64.test(lfs.oid)) throw bad('lfs.oid is not a sha256')
    if (!size(lfs.size)) throw bad('lfs.size')
    return { path: e.path, size: lfs.size as number, sha256: lfs.oid }
  }
  if (typeof e.oid !== 'string' || !HEX40.test(e.oid)) throw bad('oid is not a git sha1')
  if (!size(e.size)) throw bad('size')
  return { path: e.path, size: e.size as number, gitSha1: e.oid }
}
