// Per-step host overhead of the ε-DPO trainer on a tiny model: optimizer-step wall time minus the
// time spent inside native calls (every function of the addon and every method of the Tensor
// facade is wrapped with a timer; an async call counts until its Promise settles, which is its thread-pool
// run since the trainer awaits one call at a time). What is left is JS work between native calls:
// argument checks, result wrapping, reads, metrics. Also prints the device→host reads per step
// when the runtime counts them (runtime().hostSyncs).
//   node dist/bench/step-overhead.js [--steps N] [--accumulation K]
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { writeRandomLlama } from '../lib/demo/init-model'
import { runtime, Tensor } from '../lib/index'
import { nativeAddon } from '../lib/core/native'
import { Trainer } from '../lib/train/engine'

const args = process.argv.slice(2)
const flag = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback)
const steps = flag('--steps', 20)
const accumulation = flag('--accumulation', 4)

let nativeMs = 0
let depth = 0
// Times a call; nested native calls (a method calling back into the addon) count once.
const perName = new Map<string, number>()
function timed<F extends (...a: never[]) => unknown>(fn: F, name = fn.name): F {
  return function (this: unknown, ...a: Parameters<F>) {
    if (depth > 0) return fn.apply(this, a)
    depth++
    const t0 = performance.now()
    let result: unknown
    try {
      result = fn.apply(this, a)
    } finally {
      depth--
    }
    if (result instanceof Promise)
      return result.finally(() => {
        nativeMs += performance.now() - t0
        perName.set(name, (perName.get(name) ?? 0) + performance.now() - t0)
      })
    nativeMs += performance.now() - t0
    perName.set(name, (perName.get(name) ?? 0) + performance.now() - t0)
    return result
  } as F
}

function wrapAll(target: Record<string, unknown>): void {
  for (const key of Object.getOwnPropertyNames(target)) {
    const d = Object.getOwnPropertyDescriptor(target, key)
    if (!d || key === 'constructor') continue
    if (typeof d.value === 'function' && d.writable) target[key] = timed(d.value as (...a: never[]) => unknown, key)
    else if (d.get || d.set) Object.defineProperty(target, key, { ...d, get: d.get && timed(d.get, `get ${key}`), set: d.set && timed(d.set, `set ${key}`) })
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-overhead-'))
  const assets = path.join(__dirname, '..', '..', 'assets', 'demo')
  const tokenizerFiles = ['tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(assets, f))
  const vocab = (JSON.parse(fs.readFileSync(tokenizerFiles[0]!, 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab
  const model = writeRandomLlama(
    path.join(work, 'model'),
    {
      vocabSize: Object.keys(vocab).length,
      hiddenSize: 64,
      intermediateSize: 128,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      maxPositions: 128,
      eosTokenId: vocab['</s>'] ?? 2,
    },
    1,
    tokenizerFiles,
  )
  const rows = Array.from({ length: 256 }, (_, i) => ({ prompt: `${i % 97} 3 1 2`, chosen: `1 2 3 ${i % 7}`, rejected: `3 2 1 ${i % 5}` }))
  const data = path.join(work, 'prefs.jsonl')
  fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')

  // Classes (the Tensor handle) keep their identity, for instanceof checks; their methods are wrapped.
  const addon = nativeAddon() as unknown as Record<string, unknown>
  const isClass = (v: unknown) => typeof v === 'function' && Object.getOwnPropertyNames((v as { prototype?: object }).prototype ?? {}).length > 1
  // The native handle's methods are read-only (N-API), so the Tensor facade's methods are timed
  // instead: each is a thin call into its handle (backward, item, dispose, …).
  wrapAll(Tensor.prototype as unknown as Record<string, unknown>)
  for (const [key, v] of Object.entries(addon)) {
    if (isClass(v)) wrapAll((v as { prototype: Record<string, unknown> }).prototype)
    else if (typeof v === 'function') addon[key] = timed(v as (...a: never[]) => unknown, key)
  }
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out: path.join(work, 'run'),
      batchSize: 4,
      gradAccumulation: accumulation,
      maxSteps: steps + 2,
      saveEvery: 0,
      evalEvery: 0,
      logEvery: 1000,
      warmupRatio: 0,
      maxLength: 64,
    },
    { log: () => {} },
  )
  const perStep: { wall: number; native: number; syncs: number }[] = []
  let t0 = 0
  let n0 = 0
  let s0 = 0
  const syncs = () => (runtime() as { hostSyncs?: number }).hostSyncs ?? NaN
  trainer.on('step', () => {
    const now = performance.now()
    if (t0 > 0) perStep.push({ wall: now - t0, native: nativeMs - n0, syncs: syncs() - s0 })
    t0 = now
    n0 = nativeMs
    s0 = syncs()
  })
  await trainer.train()
  const tail = perStep.slice(1) // the first measured step still warms caches
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const wall = median(tail.map((s) => s.wall))
  const overhead = median(tail.map((s) => s.wall - s.native))
  console.log(`| steps | accumulation | step wall ms (median) | native ms | host overhead ms | overhead share | host reads / step |`)
  console.log(`|---|---|---|---|---|---|---|`)
  console.log(
    `| ${tail.length} | ${accumulation} | ${wall.toFixed(1)} | ${(wall - overhead).toFixed(1)} | ${overhead.toFixed(1)} | ${((100 * overhead) / wall).toFixed(1)}% | ${median(tail.map((s) => s.syncs))} |`,
  )
  if (process.env.EDPO_BENCH_DETAIL)
    for (const [k, v] of [...perName].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.error(k, (v / (steps + 2)).toFixed(2), 'ms/step')
  fs.rmSync(work, { recursive: true, force: true })
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
