// Runs `edpo train|sft` as a subprocess (one process, or N ranks through --nproc-per-node) with
// one thread per process, every run bounded by a timeout; returns its output and exit status.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { loadSafetensors } from '../../lib/io'
import { tempDir } from './data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './train-fixtures'

export const MAIN = path.join(__dirname, '..', '..', 'lib', 'cli', 'main.ts')
const WORKER = path.join(__dirname, 'dist-worker.ts')

/**
 * The equivalence tests' run: the policy and reference models (seeds 3 and 4), 17 training rows (a
 * global micro-batch of 8 leaves one row for the third, so a second rank has none there) and 7 eval
 * rows (split 4 / 3), with RUN_SETTINGS; `work` is the test's folder.
 */
export function equivalenceRun(t: { teardown(fn: () => void): void }): { work: string; base: Record<string, unknown>; referenceModel: string } {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 17)
  const evalData = writeToyPreferences(work, 7, 'eval.jsonl')
  return { work, referenceModel, base: { model, data: [data], evalData: [evalData], ...RUN_SETTINGS } }
}

/** The short run both dist tests train, on ranks and in one process alike. */
export const RUN_SETTINGS = { maxSteps: 3, learningRate: 1e-3, warmupRatio: 0, adamEpsilon: 1e-6, weightDecay: 0.01, maxLength: 32, seed: 5, logEvery: 1 }

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

/**
 * Two ranks of test/helpers/dist-worker.ts (one thread each, a FileStore in `work`) running
 * `jobs` in one pair of processes; `done` settles when both have exited or `timeoutMs` passed.
 */
export function startRankPair(
  work: string,
  jobs: readonly unknown[],
  timeoutMs: number,
  env: Record<string, string> = {},
): { done: Promise<{ codes: (number | null)[]; stderr: string }> } {
  const jobFile = path.join(work, 'jobs.json')
  fs.writeFileSync(jobFile, JSON.stringify(jobs))
  const store = path.join(work, 'store')
  const ranks = [0, 1].map((rank) =>
    spawn(process.execPath, [...process.execArgv, '--expose-gc', WORKER, jobFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1', ...env, RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), EDPO_DIST_STORE: store },
    }),
  )
  const stderr = ['', '']
  ranks.forEach((r, i) => r.stderr!.on('data', (d: Buffer) => (stderr[i] += d.toString())))
  const done = Promise.all(ranks.map((r) => exited(r, timeoutMs))).then((ends) => ({ codes: ends.map((e) => e.code), stderr: stderr.join(' | ').slice(-2000) }))
  return { done }
}

/** The metrics rank `rank` logged each step of a job run with stepLog (<out>/rank-<r>-steps.jsonl). */
export function rankSteps(out: string, rank: number): Record<string, number>[] {
  return fs
    .readFileSync(path.join(out, `rank-${rank}-steps.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
}

/** The newest checkpoint-<step> folder of a run. */
export function lastCheckpoint(out: string): string {
  const steps = fs
    .readdirSync(out)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .map((n) => Number(n.split('-')[1]))
  return path.join(out, `checkpoint-${Math.max(...steps)}`)
}

/** A run's trained weights: the full model, or a LoRA run's adapters. */
export function trainedWeights(out: string): Record<string, Float32Array> {
  return folderWeights(lastCheckpoint(out))
}

/** The weights of a model (or adapter) folder. */
export function folderWeights(ck: string): Record<string, Float32Array> {
  const adapter = path.join(ck, 'adapter_model.safetensors')
  // One file, or (ZeRO-3 writes one per gather unit) the files the index names.
  const index = path.join(ck, 'model.safetensors.index.json')
  const files = fs.existsSync(adapter)
    ? [adapter]
    : fs.existsSync(index)
      ? [...new Set(Object.values((JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map))].map((f) =>
          path.join(ck, f),
        )
      : [path.join(ck, 'model.safetensors')]
  const weights: Record<string, Float32Array> = {}
  for (const f of files) for (const [k, v] of Object.entries(loadSafetensors(f))) weights[k] = v.toArray() as Float32Array
  return weights
}

/** The largest |Δw| between two runs' trained weights (checking they hold the same tensors). */
export function weightDifference(t: { same(a: unknown, b: unknown, m: string): void }, label: string, a: string, b: string): number {
  const wa = trainedWeights(a)
  const wb = trainedWeights(b)
  t.same(Object.keys(wa).sort(), Object.keys(wb).sort(), `${label}: same tensors`)
  let maxDiff = 0
  for (const [k, va] of Object.entries(wa)) {
    const vb = wb[k]!
    for (let i = 0; i < va.length; i++) maxDiff = Math.max(maxDiff, Math.abs(va[i]! - vb[i]!))
  }
  return maxDiff
}
