// Where the Hub cache is, which server to ask, whether to ask at all, and the token: the same
// environment variables, defaults and token file as Python's huggingface_hub, so both share one cache.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export interface HubSettings {
  /** HF_HUB_CACHE (default HF_HOME/hub): holds models--org--name/ and datasets--org--name/. */
  cacheDir: string
  /** HF_ENDPOINT without a trailing slash (default https://huggingface.co). */
  endpoint: string
  /** HF_HUB_OFFLINE=1: the cache only, never the network. */
  offline: boolean
  /** HF_TOKEN, else the stored token (HF_TOKEN_PATH, default HF_HOME/token). Never logged. */
  token?: string
  /** Where the token came from, for messages ("HF_TOKEN", "the stored token <file>"). */
  tokenSource?: string
}

const TRUE = new Set(['1', 'on', 'yes', 'true'])

/** Python's defaults: HF_HOME = $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HOME) return env.HF_HOME
  const xdg = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(xdg, 'huggingface')
}

export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const home = hfHome(env)
  const cacheDir = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || path.join(home, 'hub')
  const endpoint = (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '')
  const offline = TRUE.has((env.HF_HUB_OFFLINE ?? '').toLowerCase())
  const settings: HubSettings = { cacheDir: path.resolve(cacheDir), endpoint, offline }
  const fromEnv = (env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN ?? '').trim()
  if (fromEnv) return { ...settings, token: fromEnv, tokenSource: 'HF_TOKEN' }
  const file = env.HF_TOKEN_PATH || path.join(home, 'token')
  try {
    const stored = fs.readFileSync(file, 'utf8').trim()
    if (stored) return { ...settings, token: stored, tokenSource: `the stored token ${file}` }
  } catch {
    // no stored token: anonymous access
  }
  return settings
}
