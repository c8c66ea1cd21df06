// `edpo train|sft --nproc-per-node N`: starts N workers on this machine, each the same command
// without the flag, as rank i of N (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) with
// cores/N threads, rendezvousing through a FileStore in a private temporary folder: on one
// machine nothing listens on a network socket (Gloo's own connections bind to 127.0.0.1).
// Ctrl-C or SIGTERM is passed on once to every worker (they finish the step together and write
// one checkpoint); a worker that dies is named, and the others, whose next collective fails,
// are killed if they have not stopped within the timeout. Should the launcher itself die, even
// by SIGKILL (no handler runs), its workers exit too: each asks the kernel for SIGKILL when its
// parent goes (PR_SET_PDEATHSIG, Linux), and each watches a pipe from the launcher whose EOF
// means the same (every platform; Node cannot call prctl itself, hence both).
import { type ChildProcess, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import { nativeAddon } from '../core/native'

/** The worker's end of the launcher's lifeline pipe (a file descriptor number). */
const LIFELINE_FD = 3

export interface LaunchOptions {
  /** Workers to start (--nproc-per-node). */
  nproc: number
  /** The subcommand and its arguments, without --nproc-per-node. */
  args: readonly string[]
  /** Seconds after a worker's failure before the others are killed (--dist-timeout, plus a margin). */
  graceSeconds: number
  log: (line: string) => void
}

/** argv without `--nproc-per-node N` / `--nproc-per-node=N`. */
export function withoutFlag(argv: readonly string[], flag: string): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) i += 1
    else if (!argv[i]!.startsWith(flag + '=')) out.push(argv[i]!)
  }
  return out
}

export function parseNproc(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1024) throw new EdpoInputError(`--nproc-per-node ${text}: expected an integer in [1, 1024]`)
  return Number(text)
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`
}

/** Runs the workers to the end; resolves to the exit code the launcher should return. */
export function launchWorkers(o: LaunchOptions): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-dist-'))
  const threads = Math.max(1, Math.floor(os.availableParallelism() / o.nproc))
  const children: ChildProcess[] = []
  let firstFailure: { rank: number; code: number } | undefined
  let killTimer: NodeJS.Timeout | undefined
  let forwarded: NodeJS.Signals | undefined
  const running = new Set<number>()

  const forward = (sig: NodeJS.Signals) => {
    if (forwarded) {
      // The same signal again: stop now.
      for (const c of children) c.kill('SIGKILL')
      return
    }
    forwarded = sig
    o.log(`edpo launcher: ${sig}: passing it to ${running.size} worker${running.size === 1 ? '' : 's'} (they finish this step and write a checkpoint)`)
    for (const r of running) children[r]!.kill(sig)
  }
  const onSignal = { SIGINT: () => forward('SIGINT'), SIGTERM: () => forward('SIGTERM') }
  process.on('SIGINT', onSignal.SIGINT)
  process.on('SIGTERM', onSignal.SIGTERM)
  // Should the launcher itself go, its workers go with it.
  const killAll = () => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL'))
  process.on('exit', killAll)

  return new Promise((resolve) => {
    for (let rank = 0; rank < o.nproc; rank++) {
      const env = {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(o.nproc),
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: String(o.nproc),
        EDPO_DIST_STORE: path.join(dir, 'store'),
        OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? String(threads),
        EDPO_LAUNCHER_PID: String(process.pid),
        EDPO_LAUNCHER_FD: String(LIFELINE_FD),
      }
      // Own process group: a terminal's Ctrl-C reaches the launcher only, which passes it on once.
      // fd 3 is the lifeline: the launcher never writes to it; its end closes when the launcher dies.
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...o.args], {
        env,
        stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
        detached: true,
      })
      children.push(child)
      running.add(rank)
      child.on('exit', (code, signal) => {
        running.delete(rank)
        const failed = code !== 0 && !(forwarded && (code === 130 || code === 143))
        if (failed && !firstFailure) {
          firstFailure = { rank, code: code ?? 1 }
          o.log(`edpo launcher: rank ${rank} ${describeExit(code, signal)}; the other ranks stop at their next collective (at most ${o.graceSeconds} s)`)
          killTimer = setTimeout(() => {
            for (const r of running) {
              o.log(`edpo launcher: rank ${r} did not stop; killing it`)
              children[r]!.kill('SIGKILL')
            }
          }, o.graceSeconds * 1000)
          killTimer.unref()
        }
        if (running.size > 0) return
        if (killTimer) clearTimeout(killTimer)
        process.off('SIGINT', onSignal.SIGINT)
        process.off('SIGTERM', onSignal.SIGTERM)
        process.off('exit', killAll)
        fs.rmSync(dir, { recursive: true, force: true })
        resolve(firstFailure ? Math.max(1, firstFailure.code) : forwarded === 'SIGINT' ? 130 : forwarded === 'SIGTERM' ? 143 : 0)
      })
    }
  })
}

/**
 * In a worker that edpo's launcher started (EDPO_LAUNCHER_PID set): exit as soon as the launcher
 * is gone. The kernel's parent-death signal covers a worker busy in native code; the pipe's EOF
 * covers platforms without it. A launcher that died before this ran is caught by its pid.
 */
export function exitWithLauncher(
  env: Readonly<Record<string, string | undefined>> = process.env,
  log: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): void {
  const pid = env.EDPO_LAUNCHER_PID
  if (pid === undefined) return
  const gone = () => {
    log(`rank ${env.RANK ?? '?'}: the edpo launcher (pid ${pid}) is gone; stopping`)
    process.exit(1)
  }
  if (process.platform === 'linux' && nativeAddon().distExitWithParent(Number(pid)) === false) {
    gone()
    return
  }
  if (env.EDPO_LAUNCHER_FD === undefined) return
  const lifeline = new net.Socket({ fd: Number(env.EDPO_LAUNCHER_FD), readable: true, writable: false })
  lifeline.on('end', gone)
  lifeline.on('error', gone)
  lifeline.resume()
  // The pipe must not keep a finished worker alive.
  lifeline.unref()
}
