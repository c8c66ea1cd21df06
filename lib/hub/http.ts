// HTTP to the Hub with the token on the Hub's own origin only: redirects are followed by hand so
// the Authorization header never travels to another host (a CDN, or wherever a server points).
import { EdpoInputError } from '../core/errors'

export interface HubRequest {
  method?: 'GET' | 'HEAD'
  headers?: Record<string, string>
  token?: string
  signal?: AbortSignal
}

/** fetch `url`, following up to 5 redirects; the token goes only to `url`'s origin. */
export async function hubFetch(url: string, req: HubRequest, what: string): Promise<Response> {
  const origin = new URL(url).origin
  let current = url
  for (let hop = 0; hop <= 5; hop++) {
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity', ...req.headers }
    if (req.token && new URL(current).origin === origin) headers.Authorization = `Bearer ${req.token}`
    let res: Response
    try {
      res = await fetch(current, { method: req.method ?? 'GET', headers, redirect: 'manual', signal: req.signal })
    } catch (e) {
      throw new EdpoInputError(`${what}: cannot reach ${new URL(current).origin} (${(e as Error).message}); set HF_HUB_OFFLINE=1 to use only the local cache`, {
        cause: e,
      })
    }
    if (res.status < 300 || res.status >= 400 || res.status === 304) return res
    const location = res.headers.get('location')
    await res.body?.cancel()
    if (!location) return res
    const next = new URL(location, current)
    if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new EdpoInputError(`${what}: the server redirected to a ${next.protocol} URL`)
    current = next.toString()
  }
  throw new EdpoInputError(`${what}: more than 5 redirects from ${origin}`)
}

/** A Hub answer that is not a success, as a message naming the repo and what to do. */
export function hubStatusError(
  status: number,
  repo: string,
  kind: 'model' | 'dataset',
  what: string,
  tokenSource: string | undefined,
  endpoint: string,
): EdpoInputError {
  const page = `${endpoint}/${kind === 'dataset' ? 'datasets/' : ''}${repo}`
  if (status === 401 || status === 403) {
    const how = tokenSource
      ? `the token from ${tokenSource} was refused or has no access: accept the repo's terms at ${page} with that account, or give another token (HF_TOKEN=hf_…)`
      : `accept its terms at ${page} and give a token: set HF_TOKEN=hf_… or run \`huggingface-cli login\` (it stores the token in HF_HOME/token)`
    return new EdpoInputError(`${what}: ${repo} is gated or private (the Hub answered ${status}): ${how}`)
  }
  if (status === 404) return new EdpoInputError(`${what}: not found on the Hub (${page}) and not a local path`)
  return new EdpoInputError(`${what}: the Hub answered ${status} for ${repo}`)
}
