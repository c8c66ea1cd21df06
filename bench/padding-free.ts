// npm run bench:padding-free — the ε-DPO trainer's tokens/s with --padding-free against the padded
// batch, on a length distribution like UltraFeedback's: prompts ≈ N(150, 80) tokens, completions
// ≈ N(300, 150), clipped, 8 pairs per step. Both runs train the same llama on the same batches
// (same data, same seed); each runs in its own process, they alternate for EDPO_BENCH_ROUNDS
// rounds (default 2) and each keeps its best round. tokens/s counts real (unpadded) tokens.
//   npm run bench:padding-free     (EDPO_BENCH_STEPS=N timed steps per process, default 2;
//                                   --dtype float32|bfloat16, default float32)
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { epochPermutation } from '../lib/data/sampler'
import { runtime } from '../lib/index'
import { Trainer } from '../lib/train/engine'
import { EOS, text, writeLlama } from './step-fixture'

// A small llama body: the ratio is about padding, so the body only has to be a transformer.
const CONFIG = {
  model_type: 'llama',
  hidden_act: 'silu',
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  vocab_size: 8192,
  hidden_size: 256,
  intermediate_size: 768,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 2048,
}
const PAIRS_PER_STEP = 8
const PROMPT = { mean: 150, sd: 80, min: 8, max: 512 }
const COMPLETION = { mean: 300, sd: 150, min: 8, max: 1024 }

interface Result {
  seconds: number
  tokens: number
  padded_tokens: number
  peak_rss_mb: number
  losses: number[]
}

// Box–Muller on a seeded LCG: the same lengths every run.
function normals(seed: number): () => number {
  let s = seed >>> 0
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s + 1) / 4294967297
  }
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u())
}

function writeData(dir: string, pairs: number): void {
  const n = normals(7)
  let s = 99
  const id = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return 2 + (s % (CONFIG.vocab_size - 2))
  }
  const len = (d: typeof PROMPT) => Math.round(Math.min(d.max, Math.max(d.min, d.mean + d.sd * n())))
  const seq = (k: number) => Array.from({ length: k }, id)
  const rows = Array.from({ length: pairs }, () => ({
    prompt: text(seq(len(PROMPT))),
    chosen: text([...seq(len(COMPLETION) - 1), EOS]),
    rejected: text([...seq(len(COMPLETION) - 1), EOS]),
  }))
  fs.writeFileSync(path.join(dir, 'pairs.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
}

async function child(dir: string, dtype: 'float32' | 'bfloat16', paddingFree: boolean, steps: number): Promise<void> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-pf-run-'))
  const trainer = await Trainer.create(
    {
      model: dir,
      data: [path.join(dir, 'pairs.jsonl')],
      out,
      batchSize: PAIRS_PER_STEP,
      maxSteps: steps + 1,
      dtype,
      paddingFree,
      learningRate: 1e-6,
      lrScheduler: 'constant',
      warmupRatio: 0,
      maxLength: 4096,
      maxPromptLength: 4096,
      logEvery: 1000,
      seed: 1,
    },
    { log: () => {} },
  )
  // The batches the sampler will hand out (same seed in both runs): real and padded token counts.
  const pairs = trainer.data.train
  let seconds = 0
  const losses: number[] = []
  trainer.on('step', (state) => {
    const m = state.metrics as Record<string, number>
    losses.push(m.loss!)
    if (state.step > 1) seconds += m.step_time! // step 1 warms up
    if (state.step <= steps) return
    // Steps 2..steps+1 took the pairs at positions [8, 8·(steps+1)) of the data's permutation.
    const perm = epochPermutation(pairs.length, 1, 0)
    let tokens = 0,
      padded = 0
    for (let k = 1; k <= steps; k++) {
      const batch = Array.from(perm.subarray(k * PAIRS_PER_STEP, (k + 1) * PAIRS_PER_STEP), (i) => pairs[i]!)
      const rows = batch.flatMap((p) => [p.prompt.length + p.chosen.length, p.prompt.length + p.rejected.length])
      tokens += rows.reduce((a, b) => a + b, 0)
      padded += rows.length * Math.max(...rows)
    }
    const r: Result = { seconds, tokens, padded_tokens: padded, peak_rss_mb: process.resourceUsage().maxRSS / 1024, losses }
    console.log(JSON.stringify(r))
    fs.rmSync(out, { recursive: true, force: true })
    process.exit(0) // timing done: skip the final evaluation and checkpoint
  })
  await trainer.train()
}

function run(args: string[]): Result {
  const p = spawnSync(process.execPath, [__filename, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 })
  if (p.status !== 0) throw new Error(`padding-free bench child ${args.join(' ')} failed (${p.status ?? p.signal}):\n${p.stderr}`)
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as Result
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(argv[1]!, argv[2] as 'float32' | 'bfloat16', argv[3] === '1', Number(argv[4]))
  let dtype: 'float32' | 'bfloat16' = 'float32'
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] !== '--dtype') throw new Error(`bench:padding-free: unknown argument '${argv[i]}' (known: --dtype)`)
    const v = argv[i + 1]
    if (v !== 'float32' && v !== 'bfloat16') throw new Error(`--dtype: '${v}' is not float32 or bfloat16`)
    dtype = v
  }
  const steps = Number(process.env.EDPO_BENCH_STEPS ?? 2)
  const rounds = Number(process.env.EDPO_BENCH_ROUNDS ?? 2)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-pf-'))
  try {
    const nparams = writeLlama(dir, CONFIG)
    writeData(dir, PAIRS_PER_STEP * (steps + 1))
    console.log(
      `padding-free vs padded ε-DPO steps: llama ${(nparams / 1e6).toFixed(1)}M (hidden ${CONFIG.hidden_size}, ${CONFIG.num_hidden_layers} layers), ${dtype}, ${PAIRS_PER_STEP} pairs/step,`,
    )
    console.log(
      `prompts ~N(${PROMPT.mean}, ${PROMPT.sd}) in [${PROMPT.min}, ${PROMPT.max}], completions ~N(${COMPLETION.mean}, ${COMPLETION.sd}) in [${COMPLETION.min}, ${COMPLETION.max}]; ${steps} steps after 1 warm-up, best of ${rounds} alternating rounds`,
    )
    console.log(
      `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${runtime().threads} threads, ${new Date().toISOString()}, load ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    )
    const best: Record<string, Result | undefined> = {}
    for (let r = 0; r < rounds; r++) {
      for (const pf of [false, true]) {
        const x = run(['--child', dir, dtype, pf ? '1' : '0', String(steps)])
        const key = pf ? 'padding-free' : 'padded'
        if (!best[key] || x.seconds < best[key]!.seconds) best[key] = x
      }
    }
    const padded = best.padded!,
      free = best['padding-free']!
    const worst = Math.max(...padded.losses.map((l, i) => Math.abs(l - free.losses[i]!) / Math.abs(l)))
    console.log(`| layout | s for ${steps} steps | real tokens/s | padded tokens in the batches | peak RSS (MB) |`)
    console.log('|---|---|---|---|---|')
    for (const [name, x] of [
      ['padded', padded],
      ['padding-free', free],
    ] as const)
      console.log(
        `| ${name} | ${x.seconds.toFixed(2)} | ${(x.tokens / x.seconds).toFixed(0)} | ${x.padded_tokens} (real ${x.tokens}, ${((100 * x.tokens) / x.padded_tokens).toFixed(0)}%) | ${x.peak_rss_mb.toFixed(0)} |`,
      )
    console.log(
      `padding-free / padded tokens/s = ${(padded.seconds / free.seconds).toFixed(2)}× (load ${os.loadavg()[0]!.toFixed(2)}); losses agree to ${worst.toExponential(1)} relative`,
    )
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
