// Runs `edpo train|sft` as a subprocess (one process, or N ranks through --nproc-per-node) with
// one thread per process, every run bounded by a timeout; returns its output and exit status.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'

export const MAIN = path.join(__dirname, '..', '..', 'lib', 'cli', 'main.ts')

export interface CliResult {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

const ENV = { ...process.env, OMP_NUM_THREADS: '1' }

export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 240_000): CliResult {
  const r = spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: timeoutMs, env: { ...ENV, ...env } })
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

export function startCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...ENV, ...env } })
}

/** Resolves when the child exits (or rejects after timeoutMs, killing it). */
export function exited(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const start = Date.now()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`no exit within ${timeoutMs} ms`))
    }, timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, ms: Date.now() - start })
    })
  })
}
