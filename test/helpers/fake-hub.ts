// A loopback stand-in for the Hugging Face Hub's file endpoints, enough for edpo's
// listing and downloads: GET /api/{models,datasets}/<repo>/tree/<rev>?recursive=true,
// and HEAD/GET /[datasets/]<repo>/resolve/<rev>/<path> with X-Repo-Commit, ETag (git sha1) or
// X-Linked-Etag/X-Linked-Size (LFS sha256) and a redirect of LFS files to /cdn/<sha256>, Range
// requests (206), gated repos (401 without the right token), and faults to inject per file.
import * as crypto from 'node:crypto'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface FakeFile {
  bytes: Buffer
  lfs?: boolean
  /** 'drop': close the connection halfway through the next `drops` GETs; 'long': send 7 bytes more than listed; 'corrupt': flip a byte. */
  fault?: 'drop' | 'long' | 'corrupt'
  drops?: number
}

export interface FakeRepo {
  kind: 'model' | 'dataset'
  commit: string
  files: Record<string, FakeFile>
  /** Only this bearer token may read it (401 otherwise). */
  token?: string
  /** Tree entries per page; more pages follow through `Link: <…>; rel="next"`, as the Hub pages. */
  pageSize?: number
  /** A hostile listing: the next-page link points at this origin instead of the Hub's own. */
  nextPageOrigin?: string
  /** A hostile listing: this raw entry is appended to the last page. */
  extraEntry?: unknown
}

export interface Served {
  method: string
  url: string
  range?: string
  authorization?: string
}

export const gitSha1 = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex')
export const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex')

export async function startFakeHub(repos: Record<string, FakeRepo>): Promise<{ url: string; requests: Served[]; close(): Promise<void> }> {
  const requests: Served[] = []
  let cdnUrl = ''
  const find = (kind: string, repo: string) => {
    const r = repos[repo]
    return r && r.kind === kind ? r : undefined
  }
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x')
    requests.push({ method: req.method ?? '', url: url.pathname, range: req.headers.range, authorization: req.headers.authorization })
    const deny = (repo: FakeRepo) => {
      if (repo.token === undefined || req.headers.authorization === `Bearer ${repo.token}`) return false
      res
        .writeHead(401, { 'Content-Type': 'application/json', 'X-Error-Code': 'GatedRepo' })
        .end(JSON.stringify({ error: 'Access to this repo is restricted' }))
      return true
    }
    const tree = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname)
    if (tree) {
      const repo = find(tree[1] === 'models' ? 'model' : 'dataset', tree[2]!)
      if (!repo) return void res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'Repository not found' }))
      if (deny(repo)) return
      const list = Object.entries(repo.files).map(([path, f]) => ({
        type: 'file',
        path,
        size: f.lfs ? 134 : f.bytes.length,
        oid: gitSha1(f.lfs ? Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(f.bytes)}\nsize ${f.bytes.length}\n`) : f.bytes),
        ...(f.lfs ? { lfs: { oid: sha256(f.bytes), size: f.bytes.length, pointerSize: 134 } } : {}),
      }))
      if (repo.extraEntry !== undefined) list.push(repo.extraEntry as (typeof list)[number])
      const size = repo.pageSize ?? list.length
      const cursor = Number(url.searchParams.get('cursor') ?? 0)
      const headers: Record<string, string> = { 'Content-Type': 'application/json' }
      if (cursor + size < list.length) {
        const next = new URL(req.url ?? '/', repo.nextPageOrigin ?? `http://${req.headers.host}`)
        next.searchParams.set('cursor', String(cursor + size))
        headers.Link = `<${next.toString()}>; rel="next"`
      }
      return void res.writeHead(200, headers).end(JSON.stringify(list.slice(cursor, cursor + size)))
    }
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname)
    if (cdn) {
      if (req.headers.authorization) return void res.writeHead(400).end('a token must not reach the CDN')
      for (const repo of Object.values(repos))
        for (const f of Object.values(repo.files)) if (f.lfs && sha256(f.bytes) === cdn[1]) return serveBytes(req, res, f, {})
      return void res.writeHead(404).end()
    }
    const resolve = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname)
    if (resolve) {
      const repo = find(resolve[1] ? 'dataset' : 'model', resolve[2]!)
      const file = repo && decodeURIComponent(resolve[4]!)
      const f = repo && file !== undefined ? repo.files[file] : undefined
      if (repo && deny(repo)) return
      if (!repo || !f) return void res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end()
      const headers: Record<string, string> = { 'X-Repo-Commit': repo.commit }
      if (f.lfs) {
        headers['X-Linked-Etag'] = `"${sha256(f.bytes)}"`
        headers['X-Linked-Size'] = String(f.bytes.length)
        headers.ETag = `"${gitSha1(f.bytes)}"`
        headers.Location = `${cdnUrl}/cdn/${sha256(f.bytes)}`
        return void res.writeHead(302, headers).end()
      }
      headers.ETag = `"${gitSha1(f.bytes)}"`
      return serveBytes(req, res, f, headers)
    }
    res.writeHead(404).end()
  }
  // LFS files redirect to a second listener: another origin, as the Hub's CDN is.
  const server = http.createServer(handler)
  const cdn = http.createServer(handler)
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  await new Promise<void>((ok) => cdn.listen(0, '127.0.0.1', ok))
  cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`
  const stop = (s: http.Server) =>
    new Promise<void>((ok) => {
      s.closeAllConnections()
      s.close(() => ok())
    })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      await stop(server)
      await stop(cdn)
    },
  }
}

function serveBytes(req: http.IncomingMessage, res: http.ServerResponse, f: FakeFile, headers: Record<string, string>): void {
  let body = f.bytes
  if (f.fault === 'long') body = Buffer.concat([body, Buffer.from('1234567')])
  if (f.fault === 'corrupt') body = Buffer.from(body.map((b, i) => (i === Math.floor(body.length / 2) ? b ^ 0xff : b)))
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  const from = m ? Number(m[1]) : 0
  const part = body.subarray(from)
  const status = m ? 206 : 200
  const h: Record<string, string> = { ...headers, 'Content-Length': String(part.length), 'Accept-Ranges': 'bytes' }
  if (m) h['Content-Range'] = `bytes ${from}-${body.length - 1}/${body.length}`
  if (req.method === 'HEAD') return void res.writeHead(status, h).end()
  if (f.fault === 'drop' && (f.drops ?? 0) > 0 && req.method === 'GET') {
    f.drops = (f.drops ?? 0) - 1
    res.writeHead(status, h)
    res.write(part.subarray(0, Math.floor(part.length / 2)), () => res.destroy())
    return
  }
  res.writeHead(status, h).end(part)
}
