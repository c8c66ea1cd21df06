// npm run bench:step — the whole ε-DPO optimizer step (policy forward+backward, reference forward
// without grad, the loss, gradient clipping, AdamW) of `edpo train` (the Trainer itself) against
// the authors' trainer step in plain eager PyTorch (bench/step_torch.py: the same llama, full
// logits, the eager ε-DPO composition, torch.optim.AdamW; bf16 keeps fp32 master weights as
// DeepSpeed does), on the same weights and the same batch. Each engine runs in its own process;
// the engines alternate for EDPO_BENCH_ROUNDS rounds (default 2) and each keeps its best step,
// so load from other processes skews both alike. Prints the tokens/s ratio per workload.
//   npm run bench:step            (EDPO_BENCH_ITERS=N timed steps per process, default 2 or 1;
//                                  --only 33m|llama3-vocab|llama3-350m|33m-lora|llama3-8b-lora,
//                                  --dtype float32|bfloat16, --device cpu|cuda[:N]: both engines on
//                                  that device; the 350M and 8B workloads run only on cuda unless
//                                  --only names them;
//                                  EDPO_BENCH_STEP_CONFIG='{"chunkTokens":8192}': trainer options
//                                  for edpo's side only, to see what a setting costs;
//                                  --profile DIR: in the first round each engine profiles one more
//                                  step after its timed ones (--profile-steps; step_torch.py's
//                                  EDPO_BENCH_PROFILE), written to DIR/<engine>-<workload>-<dtype>/,
//                                  and the two section tables print side by side)
// The LoRA workloads (r 16 on all seven projections, gradient checkpointing) also print each
// engine's peak device memory beside `edpo plan`'s for the same run. The bench exits non-zero when
// the engines' first-step logps/chosen disagree beyond the dtype's tolerance or a loss is not finite.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { io, runtime, Tensor } from '../lib/index'
import { expectedTensors, parseModelConfig } from '../lib/model'
import { LINEAR_MODULES, type LinearModule, loraScale } from '../lib/model/lora'
import { Trainer } from '../lib/train/engine'
import { LLAMA_33M } from './llama-33m'
import { LLAMA3_8B } from './llama3-8b'
import { torchPython } from './python'
import { EOS, text, writeLlama } from './step-fixture'
import { FIRST_LOGPS_TOLERANCE, relativeDifference, roundProblems } from './step-checks'
import { planStep } from './step-plan'
import { DEVICE_PATTERN } from '../lib/core/tensor'

/** LoRA as a workload trains it on both engines: dropout 0 (the PyTorch side draws no masks), gradient checkpointing on. */
interface LoraWorkload {
  r: number
  alpha: number
  targets: LinearModule[]
}

interface Workload {
  name: string
  config: Record<string, number | string | boolean>
  pairs: number
  /** Tokens of the prompt and of each completion (EOS included): rows of prompt + completion, unpadded. */
  prompt: number
  completion: number
  /** Timed steps per process (after one warm-up step); EDPO_BENCH_ITERS overrides. */
  iters: number
  /** Sized for a GPU: left out of a CPU run unless --only names it. */
  gpu?: boolean
  /** Train LoRA adapters (with gradient checkpointing) instead of the whole model. */
  lora?: LoraWorkload
  /** The fixture in bf16, its normals drawn on the run's device: an 8B model's weights (16 GB, not 32; seconds, not minutes). */
  bigFixture?: boolean
}

// All seven projections at r = 16 with edpo's default α (32, TRL's ModelConfig), written out so
// both engines read the same numbers; the seed is A's initialisation (edpo's --seed, its default).
const LORA_16: LoraWorkload = { r: 16, alpha: 32, targets: Object.keys(LINEAR_MODULES) as LinearModule[] }
const LORA_SEED = 42

const LLAMA = { model_type: 'llama', hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, torch_dtype: 'float32' }
const WORKLOADS: Workload[] = [
  {
    name: '33m',
    // bench/model.ts's llama: 33.6M parameters.
    config: LLAMA_33M,
    pairs: 2,
    prompt: 128,
    completion: 128,
    iters: 2,
  },
  {
    name: 'llama3-vocab',
    // Llama-3's vocabulary on a small body: the loss over V = 128256 dominates the step.
    config: {
      ...LLAMA,
      vocab_size: 128256,
      hidden_size: 512,
      intermediate_size: 1536,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      max_position_embeddings: 1024,
    },
    pairs: 2,
    prompt: 128,
    completion: 128,
    iters: 1, // a step takes seconds: the rounds give the samples
  },
  {
    name: 'llama3-350m',
    // A GPU-sized step: Llama-3's vocabulary on a 1024-wide, 8-layer body (357M), 4 pairs of 2×1024 tokens.
    config: {
      ...LLAMA,
      vocab_size: 128256,
      hidden_size: 1024,
      intermediate_size: 2816,
      num_hidden_layers: 8,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      max_position_embeddings: 2048,
    },
    pairs: 4,
    prompt: 512,
    completion: 512,
    iters: 3,
    gpu: true,
  },
  {
    name: '33m-lora',
    // The 8B LoRA run's settings on the 33m body: its whole path on a CPU (and in CI).
    config: LLAMA_33M,
    pairs: 2,
    prompt: 128,
    completion: 128,
    iters: 2,
    lora: LORA_16,
  },
  {
    name: 'llama3-8b-lora',
    // Issue 26's one-GPU leg: Llama-3-8B's shape (random weights), LoRA r 16, 2 pairs of 2×1024 tokens, 5 steps.
    config: { ...LLAMA3_8B, torch_dtype: 'bfloat16' },
    pairs: 2,
    prompt: 512,
    completion: 512,
    iters: 4,
    gpu: true,
    lora: LORA_16,
    bigFixture: true,
  },
]

/** edpo's trainer options for `w` beside the shared ones. */
function trainerOptions(w: Workload): Record<string, unknown> {
  if (!w.lora) return {}
  const { r, alpha, targets } = w.lora
  return { loraR: r, loraAlpha: alpha, loraDropout: 0, loraTargetModules: targets, seed: LORA_SEED, gradientCheckpointing: true }
}

/** The same settings for step_torch.py (hyper.json): the scale as edpo computes it, the modules by path. */
function torchOptions(w: Workload): Record<string, unknown> {
  if (!w.lora) return {}
  const { r, alpha, targets } = w.lora
  return {
    lora: { r, scale: loraScale({ r, alpha, useRslora: false }), targets: targets.map((m) => LINEAR_MODULES[m]), seed: LORA_SEED },
    gradientCheckpointing: true,
  }
}

// Training settings both engines use (the trainer's defaults where the authors' config agrees).
const HYPER = { beta: 0.1, epsilon: 0.01, learningRate: 1e-6, maxGradNorm: 1.0, adamBeta1: 0.9, adamBeta2: 0.999, adamEpsilon: 1e-8, weightDecay: 0 }

interface Result {
  engine: string
  seconds: number
  tokens_per_s: number
  peak_rss_mb: number
  /** The first step's logps/chosen (mean Σ log π over chosen completions): the same weights and batch give the same value. */
  first_logps: number | null
  /** Every step's loss (null: not finite). */
  losses: (number | null)[]
  /**
   * Peak tensor bytes on the run's device in a step after the warm-up: edpo's memory report (the CUDA
   * allocator's peak, or on a CPU its allocator's), PyTorch's max_memory_allocated over its timed
   * steps (cuda only); null where not measured.
   */
  peak_device_bytes: number | null
}

/** Weights, tokenizer, the data file and the batch ids (for PyTorch); returns the parameter count. */
function prepare(dir: string, w: Workload, device: string): number {
  const c = w.config as Record<string, number>
  const nparams = writeLlama(dir, w.config, w.bigFixture ? { dtype: 'bfloat16', device } : {})
  // Deterministic ids in [2, V): the prompt, then the completion ending in EOS.
  let s = 12345
  const id = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return 2 + (s % (c.vocab_size! - 2))
  }
  const seq = (n: number) => Array.from({ length: n }, id)
  const rows: number[][] = []
  const pairs = Array.from({ length: w.pairs }, () => {
    const prompt = seq(w.prompt)
    const chosen = [...seq(w.completion - 1), EOS]
    const rejected = [...seq(w.completion - 1), EOS]
    return { prompt, chosen, rejected }
  })
  for (const p of pairs) rows.push([...p.prompt, ...p.chosen])
  for (const p of pairs) rows.push([...p.prompt, ...p.rejected])
  fs.writeFileSync(
    path.join(dir, 'pairs.jsonl'),
    pairs.map((p) => JSON.stringify({ prompt: text(p.prompt), chosen: text(p.chosen), rejected: text(p.rejected) })).join('\n') + '\n',
  )
  const T = w.prompt + w.completion
  const ids = BigInt64Array.from(rows.flat(), (x) => BigInt(x))
  // Loss positions as the collator makes them: position t predicts a completion token t+1.
  const mask = new Float32Array(rows.length * T)
  for (let r = 0; r < rows.length; r++) for (let k = w.prompt - 1; k < T - 1; k++) mask[r * T + k] = 1
  io.saveSafetensors(path.join(dir, 'batch.safetensors'), { input_ids: Tensor.from(ids, [rows.length, T]), loss_mask: Tensor.from(mask, [rows.length, T]) })
  fs.writeFileSync(path.join(dir, 'hyper.json'), JSON.stringify({ ...HYPER, ...torchOptions(w), pairs: w.pairs }))
  return nparams
}

/** EDPO_BENCH_STEP_CONFIG: a JSON object of trainer options; Trainer.create validates its keys. */
function extraConfig(): Record<string, unknown> {
  const raw = process.env.EDPO_BENCH_STEP_CONFIG
  if (raw === undefined || raw === '') return {}
  const parsed: unknown = JSON.parse(raw)
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`EDPO_BENCH_STEP_CONFIG: expected a JSON object, got ${raw}`)
  return parsed as Record<string, unknown>
}

// The memory report's peak for `device`: the CUDA caching allocator's peak allocated bytes over the
// step there (a metric only CUDA builds report), the addon's CPU allocator's peak on a CPU.
const PEAK_METRIC = (device: string) => (device === 'cpu' ? 'memory/peak_tensors_bytes' : 'memory/device_peak_tensors_bytes')

async function child(dir: string, dtype: 'float32' | 'bfloat16', iters: number, device: string, name: string, profileDir: string | undefined): Promise<void> {
  const w = WORKLOADS.find((x) => x.name === name)!
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-step-run-'))
  // LoRA workloads: one more step after the timed ones runs with EDPO_MEMORY_REPORT=1, so the
  // report's bookkeeping touches no timed step; a steady step, as PyTorch's timed steps are.
  const memoryStep = w.lora ? iters + 2 : undefined
  // A profiled step runs after the timed ones (and the memory step): its synchronisations do not touch their times.
  const profileStep = profileDir ? (memoryStep ?? iters + 1) + 1 : undefined
  const lastStep = profileStep ?? memoryStep ?? iters + 1
  const batch = io.loadSafetensors(path.join(dir, 'batch.safetensors'))
  const [rows, T] = batch.input_ids!.shape as [number, number]
  const trainer = await Trainer.create(
    {
      model: dir,
      data: [path.join(dir, 'pairs.jsonl')],
      out,
      batchSize: rows / 2,
      maxSteps: lastStep,
      dtype,
      device,
      ...(profileStep ? { profileSteps: String(profileStep) } : {}),
      ...HYPER,
      lrScheduler: 'constant',
      warmupRatio: 0,
      maxLength: 4096,
      maxPromptLength: 4096,
      logEvery: 1000,
      ...trainerOptions(w),
      ...extraConfig(),
    },
    { log: () => {} },
  )
  // The data the trainer tokenized must be the batch PyTorch reads.
  const ids = batch.input_ids!.toArray() as BigInt64Array
  const pairs = trainer.data.train
  pairs.forEach((p, i) => {
    const chosen = [...p.prompt, ...p.chosen].map(BigInt)
    if (chosen.length !== T || chosen.some((x, k) => x !== ids[i * T + k])) throw new Error(`bench: pair ${i} tokenized differently from batch.safetensors`)
  })
  const times: number[] = []
  const losses: (number | null)[] = []
  let firstLogps = NaN
  let peak: number | null = null
  const memoryEnv = process.env.EDPO_MEMORY_REPORT
  const report = () => {
    const sec = Math.min(...times) // best step: the least disturbed by other load on the machine
    const r: Result = {
      engine: `edpo (libtorch ${runtime().libtorchVersion})${device === 'cpu' ? '' : ` on ${device}`}`,
      seconds: sec,
      tokens_per_s: (rows * T) / sec,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      first_logps: Number.isFinite(firstLogps) ? firstLogps : null,
      losses,
      peak_device_bytes: peak,
    }
    console.log(JSON.stringify(r))
    fs.rmSync(out, { recursive: true, force: true })
    process.exit(0) // the timing is done: skip the final evaluation and checkpoint
  }
  trainer.on('step', (state) => {
    const m = state.metrics as Record<string, number>
    losses.push(Number.isFinite(m.loss) ? m.loss! : null)
    if (state.step === 1) firstLogps = m['logps/chosen']!
    else if (state.step <= iters + 1) times.push(m.step_time!)
    // The engine reads EDPO_MEMORY_REPORT at the start of each step.
    if (memoryStep !== undefined && state.step === memoryStep - 1) process.env.EDPO_MEMORY_REPORT = '1'
    if (state.step === memoryStep) {
      peak = m[PEAK_METRIC(device)] ?? null
      if (memoryEnv === undefined) delete process.env.EDPO_MEMORY_REPORT
      else process.env.EDPO_MEMORY_REPORT = memoryEnv
    }
    if (state.step === lastStep && profileStep === undefined) report()
  })
  trainer.on('profile', (summary) => {
    fs.cpSync(path.dirname(summary), profileDir!, { recursive: true })
    report()
  })
  await trainer.train()
}

/** The mean ms of each section over a sections.json's steps (edpo's --profile-steps or step_torch.py's). */
function meanSections(file: string): Map<string, number> {
  const steps = (JSON.parse(fs.readFileSync(file, 'utf8')) as { steps: { sections: [string, number][] }[] }).steps
  const out = new Map<string, number>()
  for (const s of steps) for (const [name, ms] of s.sections) out.set(name, (out.get(name) ?? 0) + ms / steps.length)
  return out
}

/** Both engines' sections side by side (a section one engine lacks is blank there). */
function sectionsTable(ours: Map<string, number>, torch: Map<string, number>): string[] {
  const names = [...new Set([...ours.keys(), ...torch.keys()])]
  const cell = (m: Map<string, number>, n: string) => (m.has(n) ? m.get(n)!.toFixed(2) : '')
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0).toFixed(2)
  return [
    '| section | edpo ms | PyTorch ms |',
    '|---|---:|---:|',
    ...names.map((n) => `| ${n} | ${cell(ours, n)} | ${cell(torch, n)} |`),
    `| **step** | ${total(ours)} | ${total(torch)} |`,
  ]
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Result {
  const p = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, ...env } })
  if (p.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${p.status ?? p.signal}):\n${p.stderr}`)
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as Result
}

/** A positive integer from the environment variable `name`, or `fallback` when it is unset. */
function positiveEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got '${raw}'`)
  return n
}

// A fixture of several GB goes to /dev/shm when it has room: the writer fsyncs the file, which on
// a slow disk costs more than the whole 8B step; tmpfs makes that free and the children read it from RAM.
function fixtureRoot(w: Workload): string {
  if (!w.bigFixture) return os.tmpdir()
  let params = 0
  for (const s of expectedTensors(parseModelConfig(w.config, `${w.name} config`)).values()) params += s.reduce((a, b) => a * b, 1)
  const bytes = 2 * params
  try {
    const st = fs.statfsSync('/dev/shm')
    // Room for the file and as much again: the children's own host memory comes out of the same RAM.
    if (st.bavail * st.bsize > 2 * bytes) return '/dev/shm'
  } catch {
    // No /dev/shm (not Linux): the temporary folder.
  }
  return os.tmpdir()
}

const GIB = 2 ** 30

/** peak memory: edpo X GiB, plan Y GiB (measured/plan Z×), PyTorch W GiB — for a LoRA workload. */
function memoryLine(dir: string, w: Workload, dtype: 'float32' | 'bfloat16', device: string, ours: Result, torch: Result): string {
  const extra = extraConfig()
  const plan = planStep(dir, {
    dtype,
    device,
    pairs: w.pairs,
    prompt: w.prompt,
    completion: w.completion,
    loraR: w.lora!.r,
    loraTargetModules: w.lora!.targets,
    gradientCheckpointing: true,
    chunkTokens: typeof extra.chunkTokens === 'number' ? extra.chunkTokens : undefined,
  }).total
  const gib = (x: number) => `${(x / GIB).toFixed(2)} GiB`
  const edpo =
    ours.peak_device_bytes === null
      ? `edpo n/a (no ${PEAK_METRIC(device)} in the step metrics of this build)`
      : `edpo ${gib(ours.peak_device_bytes)}, plan ${gib(plan)} (measured/plan ${(ours.peak_device_bytes / plan).toFixed(2)}×)`
  const theirs =
    torch.peak_device_bytes === null
      ? `PyTorch n/a on ${device} (no allocator peak; peak RSS ${gib(torch.peak_rss_mb * 2 ** 20)})`
      : `PyTorch ${gib(torch.peak_device_bytes)}`
  return `peak memory: ${edpo}, ${theirs}`
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name)
  if (i < 0) return undefined
  const v = argv[i + 1]
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`)
  return v
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(argv[1]!, argv[2] as 'float32' | 'bfloat16', Number(argv[3]), argv[4]!, argv[5]!, argv[6])
  const known = new Set(['--only', '--dtype', '--device', '--profile'])
  for (let i = 0; i < argv.length; i += 2)
    if (!known.has(argv[i]!)) throw new Error(`bench:step: unknown argument '${argv[i]}' (known: --only, --dtype, --device, --profile)`)
  const profileRoot = flag(argv, '--profile')
  const device = flag(argv, '--device') ?? 'cpu'
  if (!DEVICE_PATTERN.test(device)) throw new Error(`--device: '${device}' is not cpu, cuda or cuda:N`)
  const only = flag(argv, '--only')
  if (only !== undefined && !WORKLOADS.some((w) => w.name === only))
    throw new Error(`--only: '${only}' is not one of ${WORKLOADS.map((w) => w.name).join(', ')}`)
  const dtypeFlag = flag(argv, '--dtype')
  const isDtype = (x: string): x is 'float32' | 'bfloat16' => x === 'float32' || x === 'bfloat16'
  if (dtypeFlag !== undefined && !isDtype(dtypeFlag)) throw new Error(`--dtype: '${dtypeFlag}' is not float32 or bfloat16`)
  const dtypes = dtypeFlag !== undefined ? [dtypeFlag] : (['float32', 'bfloat16'] as const)
  const rounds = positiveEnv('EDPO_BENCH_ROUNDS', 2)
  const info = runtime()
  const python = torchPython()
  const script = path.resolve(__dirname, '..', '..', 'bench', 'step_torch.py')
  console.log(`whole ε-DPO optimizer step on ${device}, the best step (after 1 warm-up) of ${rounds} alternating rounds`)
  // Loading the addon set OMP_WAIT_POLICY (lib/core/native.ts) unless it was set; the baseline inherits it.
  console.log(
    `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${info.threads} threads, OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? ''}, ${new Date().toISOString()}, load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  )
  const table: string[] = []
  const failures: string[] = []
  const onGpu = device !== 'cpu'
  for (const w of WORKLOADS.filter((x) => (only === undefined ? onGpu || !x.gpu : x.name === only))) {
    const dir = fs.mkdtempSync(path.join(fixtureRoot(w), 'edpo-bench-step-'))
    try {
      const started = performance.now()
      const nparams = prepare(dir, w, device)
      const fixtureSeconds = (performance.now() - started) / 1000
      const shape = `${w.name} (${(nparams / 1e6).toFixed(1)}M, V=${w.config.vocab_size}), ${w.pairs}×(2×${w.prompt + w.completion}) tokens`
      if (w.bigFixture) {
        const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size
        console.log(
          `${w.name}: fixture ${(bytes / 2 ** 30).toFixed(1)} GiB written to ${dir} in ${fixtureSeconds.toFixed(1)} s (${(bytes / 2 ** 30 / fixtureSeconds).toFixed(2)} GiB/s)`,
        )
      }
      const iters = positiveEnv('EDPO_BENCH_ITERS', w.iters)
      for (const dtype of dtypes) {
        let ours: Result | undefined, torch: Result | undefined
        const best = (a: Result | undefined, b: Result): Result =>
          !a
            ? b
            : {
                ...(a.seconds <= b.seconds ? a : b),
                peak_rss_mb: Math.max(a.peak_rss_mb, b.peak_rss_mb),
                peak_device_bytes: a.peak_device_bytes === null || b.peak_device_bytes === null ? null : Math.max(a.peak_device_bytes, b.peak_device_bytes),
              }
        const profiles = profileRoot
          ? { ours: path.resolve(profileRoot, `edpo-${w.name}-${dtype}`), torch: path.resolve(profileRoot, `pytorch-${w.name}-${dtype}`) }
          : undefined
        for (let r = 0; r < rounds; r++) {
          const profile = r === 0 ? profiles : undefined
          const o = run(process.execPath, [__filename, '--child', dir, dtype, String(iters), device, w.name, ...(profile ? [profile.ours] : [])])
          const t = run(python, [script, dir, dtype, String(iters), String(info.threads), device], profile ? { EDPO_BENCH_PROFILE: profile.torch } : {})
          failures.push(...roundProblems(`${w.name} ${dtype} round ${r + 1}`, dtype, o, t))
          ours = best(ours, o)
          torch = best(torch, t)
        }
        const ratio = ours!.tokens_per_s / torch!.tokens_per_s
        console.log(`${shape}, ${dtype}: edpo / PyTorch tokens/s = ${ratio.toFixed(2)}× (load ${os.loadavg()[0]!.toFixed(2)})`)
        const [a, b] = [ours!.first_logps, torch!.first_logps]
        console.log(
          `first-step logps/chosen: edpo ${a}, PyTorch ${b}` +
            (a !== null && b !== null ? ` (relative difference ${relativeDifference(a, b).toExponential(2)}, tolerance ${FIRST_LOGPS_TOLERANCE[dtype]})` : ''),
        )
        if (w.lora) console.log(memoryLine(dir, w, dtype, device, ours!, torch!))
        if (profiles) {
          console.log(`profiled step (${profiles.ours}, ${profiles.torch}):`)
          for (const line of sectionsTable(meanSections(path.join(profiles.ours, 'sections.json')), meanSections(path.join(profiles.torch, 'sections.json'))))
            console.log(line)
        }
        for (const x of [ours!, torch!])
          table.push(
            `| ${w.name} | ${dtype} | ${x.engine} | ${x.seconds.toFixed(3)} | ${x.tokens_per_s.toFixed(0)} | ${x.peak_rss_mb.toFixed(0)} | ${x.first_logps?.toFixed(3) ?? 'n/a'} |`,
          )
        table.push(`| ${w.name} | ${dtype} | **ratio** | | **${ratio.toFixed(2)}×** | | |`)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  console.log('| workload | dtype | engine | s / step | tokens/s | peak RSS (MB) | first-step logps/chosen |')
  console.log('|---|---|---|---|---|---|---|')
  for (const row of table) console.log(row)
  for (const f of failures) console.log(`FAIL: ${f}`)
  if (failures.length > 0) process.exitCode = 1
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
