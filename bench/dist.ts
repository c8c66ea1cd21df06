// Data-parallel training on this machine (issue #12), every case in its own processes through the
// CLI (`edpo train`), as a user runs it:
//   1. tokens/s of 1 process × 2 threads against 2 ranks × 1 thread (--nproc-per-node 2, Gloo),
//      same global batch (8 pairs), on a tiny llama and a ~33M llama;
//   2. Gloo all-reduce of 100 MB between 2 ranks (algorithm bandwidth; for 2 ranks the bus
//      bandwidth, 2(n−1)/n × size / time, is the same number);
//   3. per-rank peak RSS, optimizer-state bytes and step time at ZeRO 0/1/2/3 (2 ranks, the ~33M
//      llama), with gradients reduced during the backward (--grad-overlap, the default) and, at
//      ZeRO 0 and 2, after it (--no-grad-overlap); ZeRO-3 reduce-scatters each unit during the
//      backward whatever --grad-overlap says.
//   npm run bench:dist       (EDPO_BENCH_STEPS=N optimizer steps per run, default 5)
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { writeRandomLlama } from '../lib/demo/init-model'
import { demoAssets } from '../lib/demo/pipeline'
import { makePrompts, rng } from '../lib/demo/task'
import { readDistEnv } from '../lib/distributed/env'
import { DistGroup } from '../lib/distributed/group'
import { Tensor } from '../lib/core/tensor'
import { readMetrics } from '../lib/train/metrics-log'

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'main.js')
const STEPS = Number(process.env.EDPO_BENCH_STEPS ?? 5)
const MODELS = {
  tiny: {
    vocabSize: 99,
    hiddenSize: 64,
    intermediateSize: 128,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    maxPositions: 128,
    bosTokenId: 1,
    eosTokenId: 2,
    padTokenId: 0,
  },
  '33M': {
    vocabSize: 8192,
    hiddenSize: 512,
    intermediateSize: 1536,
    layers: 8,
    heads: 8,
    kvHeads: 4,
    maxPositions: 128,
    bosTokenId: 1,
    eosTokenId: 2,
    padTokenId: 0,
  },
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

function writeData(file: string, n: number): void {
  const next = rng(7)
  const digits = (k: number) => Array.from({ length: k }, () => String(Math.floor(next() * 10))).join('')
  const rows = makePrompts(n, 3).map((prompt) => ({ prompt, chosen: digits(40), rejected: digits(40) }))
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
}

interface RunResult {
  tokensPerSecond: number
  /** Median seconds per optimizer step (after the first). */
  stepSeconds: number
  perRank: { peakRssMiB: number }[]
  optimizerBytes: number[]
  wallSeconds: number
}

function train(work: string, name: string, model: string, data: string, o: { ranks: number; threads: number; zero?: number; overlap?: boolean }): RunResult {
  const out = path.join(work, name)
  const debug = path.join(work, `${name}-debug`)
  const batch = 8 / o.ranks
  const args = [
    CLI,
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    out,
    '--batch-size',
    String(batch),
    '--max-steps',
    String(STEPS),
    '--max-length',
    '96',
    '--learning-rate',
    '1e-4',
    '--warmup-ratio',
    '0',
  ]
  if (o.ranks > 1)
    args.push('--nproc-per-node', String(o.ranks), '--dist-timeout', '600', '--zero-stage', String(o.zero ?? 0), `--grad-overlap=${o.overlap ?? true}`)
  const env = { ...process.env, OMP_NUM_THREADS: String(o.threads), ...(o.ranks > 1 ? { EDPO_DIST_DEBUG_DIR: debug } : {}) }
  const started = performance.now()
  const r = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 1_800_000 })
  if (r.status !== 0) throw new Error(`${name}: edpo train failed (${r.status}): ${r.stderr.slice(-2000)}`)
  const steps = readMetrics(out).filter((m) => m.tokens_per_second !== undefined)
  const ckpt = path.join(out, `checkpoint-${STEPS}`)
  const optimizerBytes = fs
    .readdirSync(ckpt)
    .filter((f) => f.startsWith('optimizer'))
    .sort()
    .map((f) => fs.statSync(path.join(ckpt, f)).size)
  const perRank =
    o.ranks > 1
      ? Array.from({ length: o.ranks }, (_, r) => {
          const lines = fs
            .readFileSync(path.join(debug, `rank-${r}.jsonl`), 'utf8')
            .trim()
            .split('\n')
          return { peakRssMiB: (JSON.parse(lines.at(-1)!) as { peak_rss_mib: number }).peak_rss_mib }
        })
      : []
  // The first step includes warm-up (allocations, the first rendezvous messages).
  const later = steps.slice(1)
  return {
    tokensPerSecond: median(later.map((m) => m.tokens_per_second!)),
    stepSeconds: median(later.map((m) => m.step_time!)),
    perRank,
    optimizerBytes,
    wallSeconds: (performance.now() - started) / 1000,
  }
}

/** One rank of the all-reduce measurement (run by main with RANK etc. set). */
async function allreduceWorker(): Promise<void> {
  const group = await DistGroup.join(readDistEnv()!, { device: 'cpu', timeoutSeconds: 600 })
  const t = Tensor.full([25 * 1024 * 1024], 1, { dtype: 'float32' })
  await group.allreduce([t]) // warm-up: connections, buffers
  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    await group.barrier()
    const s = performance.now()
    await group.allreduce([t])
    times.push((performance.now() - s) / 1000)
  }
  if (group.rank === 0) process.stdout.write(JSON.stringify({ seconds: median(times) }) + '\n')
}

async function main(): Promise<void> {
  if (process.argv.includes('--allreduce-worker')) return allreduceWorker()
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-dist-'))
  try {
    const data = path.join(work, 'pairs.jsonl')
    writeData(data, 256)
    const load = () =>
      os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')
    console.log(`edpo bench:dist — ${os.cpus()[0]?.model} × ${os.availableParallelism()}, ${STEPS} steps per run, global batch 8 pairs, load ${load()}`)
    console.log('\n| model | 1 process × 2 threads tok/s | 2 ranks × 1 thread tok/s | ratio | load |')
    console.log('|---|---|---|---|---|')
    const dirs: Record<string, string> = {}
    for (const [name, shape] of Object.entries(MODELS)) {
      dirs[name] = writeRandomLlama(
        path.join(work, `model-${name}`),
        shape,
        1,
        ['tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(demoAssets(), f)),
      )
      const one = train(work, `${name}-one`, dirs[name]!, data, { ranks: 1, threads: 2 })
      const two = train(work, `${name}-two`, dirs[name]!, data, { ranks: 2, threads: 1 })
      console.log(
        `| ${name} | ${one.tokensPerSecond.toFixed(0)} | ${two.tokensPerSecond.toFixed(0)} | ${(two.tokensPerSecond / one.tokensPerSecond).toFixed(2)}× | ${load()} |`,
      )
    }

    const store = path.join(work, 'allreduce-store')
    const outputs = await Promise.all(
      [0, 1].map(
        (rank) =>
          new Promise<string>((resolve, reject) => {
            const c = spawn(process.execPath, [__filename, '--allreduce-worker'], {
              env: { ...process.env, OMP_NUM_THREADS: '1', RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), EDPO_DIST_STORE: store },
              stdio: ['ignore', 'pipe', 'inherit'],
            })
            let text = ''
            c.stdout.on('data', (d: Buffer) => (text += d.toString()))
            c.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`all-reduce rank ${rank} exited ${code}`))))
          }),
      ),
    )
    const { seconds } = JSON.parse(outputs[0]!.trim()) as { seconds: number }
    const mb = (25 * 1024 * 1024 * 4) / 1e6
    console.log(
      `\nGloo all-reduce, 2 ranks on loopback, 100 MiB float32 (${mb.toFixed(0)} MB): ${(seconds * 1000).toFixed(0)} ms median of 5 → ${(mb / 1000 / seconds).toFixed(2)} GB/s (load ${load()})`,
    )

    console.log(
      '\n| ZeRO stage (2 ranks, 33M, fp32) | gradient sync | rank 0 peak RSS MiB | rank 1 peak RSS MiB | optimizer state per rank MiB | step s | tok/s | load |',
    )
    console.log('|---|---|---|---|---|---|---|---|')
    for (const [zero, overlap] of [
      [0, true],
      [0, false],
      [1, true],
      [2, true],
      [2, false],
      [3, true],
    ] as const) {
      const r = train(work, `zero${zero}-${overlap ? 'overlap' : 'after'}`, dirs['33M']!, data, { ranks: 2, threads: 1, zero, overlap })
      const perRankState = r.optimizerBytes.length === 1 ? [r.optimizerBytes[0]!, r.optimizerBytes[0]!] : r.optimizerBytes
      const sync = overlap ? 'during the backward' : 'after it'
      console.log(
        `| ${zero} | ${sync} | ${r.perRank[0]!.peakRssMiB.toFixed(0)} | ${r.perRank[1]!.peakRssMiB.toFixed(0)} | ${perRankState.map((b) => (b / 2 ** 20).toFixed(0)).join(' / ')} | ${r.stepSeconds.toFixed(2)} | ${r.tokensPerSecond.toFixed(0)} | ${load()} |`,
      )
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
