// The Node side of a GPU session (issue 16): the addon built against a CUDA libtorch, run through
// its public API and CLI on the GPU, against the same code on the CPU.
//   1. ops: ops.epsilonDpoLoss and ops.epsilonDpoLossFromHidden on cuda against the CPU op, on the
//      same inputs (every record column, the steps, the loss and the gradients);
//   1b. optimizer: 3 AdamW steps with gradient clipping (the fused CUDA kernels) against the CPU's
//      fused pass, fp32 and bf16/fp16 with fp32 masters: norms, master weights, moments, parameters;
//   2. train: `edpo train` of a tiny llama for 20 steps on cuda against the same run on the CPU
//      (loss and β per step within 1e-3), also with --padding-free, --gradient-checkpointing and
//      LoRA; and a bf16 run on cuda that must stay finite.
//   3. dist: the same llama for 6 steps as one process on the device, then through the launcher as
//      one rank (--nproc-per-node 1 --backend nccl, gloo on cpu) at ZeRO 0-3: each must exit 0, log
//      the one process's loss, β and grad_norm per step, and leave a complete checkpoint holding its weights.
// Writes $OUT/node-e2e.json; exit 1 when a check fails, 2 when the addon has no CUDA.
//   node dist/bench/gpu/node-e2e.js [--only ops|train|dist] [--device cuda|cuda:N|cpu]
// --device cpu runs the "GPU" side on the CPU too: a dry run of this script on a machine without one.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { type DType, ops, runtime, Tensor } from '../../lib/index'
import { PAIR_RECORD_COLUMNS } from '../../lib/core/ops'
import { rng } from '../../lib/core/rng'
import { EOS, text, writeLlama } from '../step-fixture'
import { DEVICE_PATTERN } from '../../lib/core/tensor'
import { AdamW } from '../../lib/train/adamw'
import { CausalLM } from '../../lib/model'
import { checkpointProblem } from '../../lib/train/checkpoints'
import { OPTIMIZER_FILE, optimizerShardFile } from '../../lib/distributed/optimizer-shards'

interface Check {
  section: string
  name: string
  ok: boolean
  detail: string
}
const checks: Check[] = []
const errors: string[] = []
const figures: Record<string, unknown> = {}
let DEVICE = 'cuda'

function check(section: string, name: string, ok: boolean, detail: string): void {
  checks.push({ section, name, ok, detail })
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${section}: ${name}: ${detail}`)
}

function host(t: Tensor): Float64Array {
  return t.to('float64', 'cpu').toArray() as Float64Array
}

/** Largest |got − want| / (atol + rtol·|want|): ≤ 1 passes. NaN/∞ anywhere fails. */
function worst(got: Float64Array, want: Float64Array, rtol: number, atol: number): number {
  if (got.length !== want.length) return Infinity
  let w = 0
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!,
      b = want[i]!
    if (Number.isNaN(a) !== Number.isNaN(b)) return Infinity
    if (a === b) continue
    const e = Math.abs(a - b) / (atol + rtol * Math.abs(b))
    if (!(e <= w)) w = e
  }
  return w
}

/** ‖got − want‖ / ‖want‖. */
function normError(got: Float64Array, want: Float64Array): number {
  let d = 0,
    n = 0
  for (let i = 0; i < want.length; i++) {
    d += (got[i]! - want[i]!) ** 2
    n += want[i]! ** 2
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-300)
}

/** Labels and a prompt/completion mask; row 1 has no completion tokens; masked labels are −100. */
function labelsAndMask(r: () => number, rows: number, steps: number, vocab: number): { labels: Tensor; mask: Tensor } {
  const labels = new BigInt64Array(rows * steps)
  const mask = new Float32Array(rows * steps)
  for (let row = 0; row < rows; row++) {
    const start = Math.floor(r() * steps * 0.7)
    for (let k = 0; k < steps; k++) {
      const on = k >= start && row !== 1
      mask[row * steps + k] = on ? 1 : 0
      labels[row * steps + k] = on ? BigInt(Math.floor(r() * vocab)) : -100n
    }
  }
  return { labels: Tensor.from(labels, [rows, steps]), mask: Tensor.from(mask, [rows, steps]) }
}

// Sums of fp32/bf16 log-probs over ≤ 64 tokens accumulate in fp32 on both devices: 1e-5 relative.
// The gradient is elementwise softmax-minus-one-hot in the logits' dtype: one rounding of that dtype.
const GRAD_RTOL: Record<string, number> = { float32: 1e-5, bfloat16: 1e-2, float16: 2e-3 }

function checkFusedOp(): void {
  const cases: Array<[number, DType]> = [
    [7, 'float32'],
    [32000, 'bfloat16'],
    [50257, 'float16'],
    [128256, 'bfloat16'],
    [128256, 'float32'],
  ]
  for (const [V, dtype] of cases) {
    const B = 2,
      T = 48
    const r = rng(V)
    Tensor.manualSeed(V)
    const policy = Tensor.randn([2 * B, T, V])
      .mul(2)
      .to(dtype)
    const reference = policy
      .to('float32')
      .add(Tensor.randn([2 * B, T, V]))
      .to(dtype)
    const { labels, mask } = labelsAndMask(r, 2 * B, T, V)
    const run = (device: string) => {
      const p = policy.to(dtype, device).clone() // a fresh leaf per run, also where .to() is a no-op
      p.requiresGrad = true
      const out = ops.epsilonDpoLoss({
        policyLogits: p,
        referenceLogits: reference.to(dtype, device),
        labels: labels.to(device),
        lossMask: mask.to(device),
        beta: 0.1,
        epsilon: 0.01,
      })
      out.loss.backward()
      return { record: host(out.record), loss: host(out.loss), grad: host(p.grad!) }
    }
    const cpu = run('cpu')
    const gpu = run(DEVICE)
    const k = PAIR_RECORD_COLUMNS.length
    const bad: string[] = []
    PAIR_RECORD_COLUMNS.forEach((col, c) => {
      const g = Float64Array.from({ length: B }, (_, i) => gpu.record[i * k + c]!)
      const w = Float64Array.from({ length: B }, (_, i) => cpu.record[i * k + c]!)
      const e = worst(g, w, 1e-5, 1e-5)
      if (!(e <= 1)) bad.push(`${col} (${e.toExponential(2)})`)
    })
    check('ops', `fused V=${V} ${dtype} record`, bad.length === 0, bad.length ? `off: ${bad.join(', ')}` : `all ${k} columns within 1e-5`)
    const le = worst(gpu.loss, cpu.loss, 1e-5, 1e-6)
    check('ops', `fused V=${V} ${dtype} loss`, le <= 1, `cuda ${gpu.loss[0]} cpu ${cpu.loss[0]}`)
    const ge = worst(gpu.grad, cpu.grad, GRAD_RTOL[dtype]!, 1e-7)
    check(
      'ops',
      `fused V=${V} ${dtype} ∂loss/∂logits`,
      ge <= 1,
      `worst error / tolerance ${ge.toExponential(2)}, norm error ${normError(gpu.grad, cpu.grad).toExponential(2)}`,
    )
  }
}

function checkChunkedOp(): void {
  // fp32: cuBLAS and the CPU BLAS sum H products in other orders (H·6e-8 relative); bf16 logits
  // round once more on each side, so bf16 is checked norm-wise against its own rounding.
  const cases: Array<[number, number, DType, number | undefined]> = [
    [50257, 256, 'float32', undefined],
    [50257, 256, 'float32', 37],
    [128256, 512, 'bfloat16', undefined],
  ]
  for (const [V, H, dtype, chunk] of cases) {
    const B = 2,
      T = 40
    const r = rng(V + H)
    Tensor.manualSeed(V + 1)
    const ph = Tensor.randn([2 * B, T, H]).to(dtype)
    const pw = Tensor.randn([V, H])
      .mul(1 / Math.sqrt(H))
      .to(dtype)
    const rh = ph
      .to('float32')
      .add(Tensor.randn([2 * B, T, H]).mul(0.1))
      .to(dtype)
    const rw = pw
      .to('float32')
      .add(Tensor.randn([V, H]).mul(0.01 / Math.sqrt(H)))
      .to(dtype)
    const { labels, mask } = labelsAndMask(r, 2 * B, T, V)
    const run = (device: string) => {
      const h = ph.to(dtype, device).clone()
      const w = pw.to(dtype, device).clone()
      h.requiresGrad = true
      w.requiresGrad = true
      const out = ops.epsilonDpoLossFromHidden({
        policyHidden: h,
        policyHead: w,
        referenceHidden: rh.to(dtype, device),
        referenceHead: rw.to(dtype, device),
        labels: labels.to(device),
        lossMask: mask.to(device),
        beta: 0.1,
        epsilon: 0.01,
        chunkTokens: chunk,
      })
      out.loss.backward()
      return { record: host(out.record), loss: host(out.loss), dh: host(h.grad!), dw: host(w.grad!), steps: host(out.steps) }
    }
    const cpu = run('cpu')
    const gpu = run(DEVICE)
    const tag = `chunked V=${V} H=${H} ${dtype} chunk=${chunk ?? 'default'}`
    const rtol = dtype === 'float32' ? 1e-4 : 2e-2
    const k = PAIR_RECORD_COLUMNS.length
    const logps = (x: Float64Array) => Float64Array.from({ length: 4 * B }, (_, i) => x[Math.floor(i / 4) * k + (i % 4)]!)
    const se = worst(logps(gpu.record), logps(cpu.record), rtol, 1e-3)
    check('ops', `${tag} sequence log-probs`, se <= 1, `worst error / tolerance ${se.toExponential(2)} (rtol ${rtol})`)
    const le = worst(gpu.loss, cpu.loss, rtol, 1e-5)
    check('ops', `${tag} loss`, le <= 1, `cuda ${gpu.loss[0]} cpu ${cpu.loss[0]}`)
    if (dtype === 'float32') check('ops', `${tag} steps`, gpu.steps.join() === cpu.steps.join(), `cuda [${gpu.steps.join()}] cpu [${cpu.steps.join()}]`)
    const gtol = dtype === 'float32' ? 1e-4 : 3e-2
    for (const [name, g, c] of [
      ['∂h', gpu.dh, cpu.dh],
      ['∂W', gpu.dw, cpu.dw],
    ] as const) {
      const e = normError(g, c)
      check('ops', `${tag} ${name}`, e <= gtol, `norm error ${e.toExponential(2)} (≤ ${gtol})`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// edpo train on cuda against the CPU.

const TINY = {
  model_type: 'llama',
  hidden_act: 'silu',
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
}

// Relative error of `got` against `want`, elementwise: max |got − want| / max(|want|, floor).
function relativeError(got: Float64Array, want: Float64Array, floor: number): number {
  let worst = 0
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(Math.abs(want[i]!), floor))
  return worst
}

function checkOptimizer(): void {
  const r = rng(11)
  const shapes = [[257, 33], [1000], [7]]
  for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[]) {
    const make = (device: string) => {
      Tensor.manualSeed(5)
      const named: [string, Tensor][] = shapes.map((shape, i) => {
        const p = Tensor.randn(shape).to(dtype, device)
        p.requiresGrad = true
        return [`p${i}`, p]
      })
      return named
    }
    const cpu = make('cpu')
    const gpu = make(DEVICE)
    const weights = shapes.map((shape) => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r() * 4 - 2))
    const optimizers = [new AdamW(cpu, { weightDecay: 0.1 }), new AdamW(gpu, { weightDecay: 0.1 })]
    const norms: number[][] = [[], []]
    for (let step = 0; step < 3; step++) {
      ;[cpu, gpu].forEach((named, k) => {
        named.forEach(([, p], i) => {
          const w = Tensor.from(weights[i]!, shapes[i]!).to(dtype, p.device)
          p.mul(w)
            .mul(step + 1)
            .sum()
            .backward()
        })
        norms[k]!.push(optimizers[k]!.clipGradNorm(step === 1 ? 1e9 : 0.5)) // steps 0 and 2 clip, step 1 does not
        optimizers[k]!.stepSync(1e-2)
        optimizers[k]!.zeroGrad()
      })
    }
    const normError = Math.max(...norms[0]!.map((n, i) => Math.abs(norms[1]![i]! - n) / n))
    check(
      'ops',
      `optimizer ${dtype}: clipped gradient norms`,
      normError <= 1e-6,
      `cpu [${norms[0]!.map((n) => n.toFixed(6))}], ${DEVICE} [${norms[1]!.map((n) => n.toFixed(6))}], worst relative ${normError.toExponential(2)}`,
    )
    const [cs, gs] = optimizers.map((o) => o.stateTensors())
    let worstState = 0
    for (const key of Object.keys(cs!)) worstState = Math.max(worstState, relativeError(host(gs![key]!), host(cs![key]!), 1e-3))
    check(
      'ops',
      `optimizer ${dtype}: master weights and moments`,
      worstState <= 1e-5,
      `worst relative error ${worstState.toExponential(2)} over ${Object.keys(cs!).length} state tensors`,
    )
    // A parameter is its master rounded to its dtype: equal, or one rounding apart where the masters differ in the last bits.
    const ulp = dtype === 'float32' ? 1e-6 : dtype === 'bfloat16' ? 2 ** -7 : 2 ** -10
    const worstParam = Math.max(...cpu.map(([, p], i) => relativeError(host(gpu[i]![1]), host(p), 1e-2)))
    check('ops', `optimizer ${dtype}: parameters`, worstParam <= ulp, `worst relative error ${worstParam.toExponential(2)} (≤ ${ulp.toExponential(1)})`)
  }
}

function writeData(file: string): void {
  const r = rng(2026)
  const seq = (n: number) => Array.from({ length: n }, () => 2 + Math.floor(r() * (TINY.vocab_size - 2)))
  const len = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1))
  const rows = Array.from({ length: 48 }, () => ({
    prompt: text(seq(len(4, 24))),
    chosen: text([...seq(len(2, 16)), EOS]),
    rejected: text([...seq(len(2, 16)), EOS]),
  }))
  fs.writeFileSync(file, rows.map((x) => JSON.stringify(x)).join('\n') + '\n')
}

interface StepMetrics {
  step: number
  loss: number
  'kl/beta': number
  'kl/avg_steps'?: number
  grad_norm?: number
}

const CLI = path.resolve(__dirname, '..', '..', 'lib', 'cli', 'main.js')
// One `edpo train` of the tiny llama may take this long; the device calls are at most 600 s.
const TRAIN_TIMEOUT_S = 240

interface TrainRun {
  out: string
  status: number | null
  signal: NodeJS.Signals | null
  /** The tail of its output, for a failure's message. */
  tail: string
  seconds: number
}

/** `edpo train` of `model` on `data` into <model's folder>/<name>, killed after timeoutS (a launcher's workers die with it: PDEATHSIG). */
function runTrain(
  model: string,
  data: string,
  name: string,
  extra: string[],
  o: { steps?: number; timeoutS?: number; env?: Record<string, string> } = {},
): TrainRun {
  const out = path.join(path.dirname(model), name)
  const args = [
    CLI,
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    out,
    '--max-steps',
    String(o.steps ?? 20),
    '--batch-size',
    '4',
    '--learning-rate',
    '1e-3',
    '--warmup-ratio',
    '0',
    '--lr-scheduler',
    'constant',
    '--seed',
    '7',
    '--log-every',
    '1',
    ...extra,
  ]
  const t0 = Date.now()
  const p = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    timeout: (o.timeoutS ?? TRAIN_TIMEOUT_S) * 1000,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...o.env },
  })
  const seconds = (Date.now() - t0) / 1000
  figures[`train_${name}_s`] = seconds
  return { out, status: p.status, signal: p.signal, tail: `${p.stderr ?? ''}${p.stdout ?? ''}`.slice(-4000), seconds }
}

function train(model: string, data: string, name: string, extra: string[]): StepMetrics[] {
  const run = runTrain(model, data, name, extra)
  if (run.status !== 0) throw new Error(`edpo train ${extra.join(' ')} exited ${run.status ?? run.signal}:\n${run.tail}`)
  return readSteps(run.out)
}

/** The optimizer steps a run logged to its metrics.jsonl. */
function readSteps(out: string): StepMetrics[] {
  const rows = fs
    .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepMetrics)
  return rows.filter((m) => typeof m.loss === 'number' && typeof m['kl/beta'] === 'number')
}

function compareRuns(tag: string, got: StepMetrics[], want: StepMetrics[]): void {
  check('train', `${tag}: steps logged`, got.length === 20 && want.length === 20, `cuda ${got.length}, cpu ${want.length}`)
  let worstLoss = 0,
    worstBeta = 0,
    at = 0
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const l = Math.abs(got[i]!.loss - want[i]!.loss) / Math.max(1, Math.abs(want[i]!.loss))
    const b = Math.abs(got[i]!['kl/beta'] - want[i]!['kl/beta']) / Math.max(1e-12, Math.abs(want[i]!['kl/beta']))
    if (!(l <= worstLoss)) {
      worstLoss = l
      at = got[i]!.step
    }
    if (!(b <= worstBeta)) worstBeta = b
  }
  check(
    'train',
    `${tag}: loss per step`,
    worstLoss <= 1e-3,
    `worst relative difference ${worstLoss.toExponential(2)} (step ${at}); final cuda ${got.at(-1)?.loss} cpu ${want.at(-1)?.loss}`,
  )
  check(
    'train',
    `${tag}: β per step`,
    worstBeta <= 1e-3,
    `worst relative difference ${worstBeta.toExponential(2)}; final cuda ${got.at(-1)?.['kl/beta']} cpu ${want.at(-1)?.['kl/beta']}`,
  )
}

function checkProfile(dir: string): void {
  const files = ['sections.json', 'trace.json', 'summary.md'].filter((f) => fs.existsSync(path.join(dir, f)))
  check('train', 'profile: files written', files.length === 3, `${files.join(', ')} in ${dir}`)
  if (files.length < 3) return
  const steps = (JSON.parse(fs.readFileSync(path.join(dir, 'sections.json'), 'utf8')) as { steps: { step: number; sections: [string, number][] }[] }).steps
  check(
    'train',
    'profile: sections of steps 3 and 4',
    steps.map((s) => s.step).join() === '3,4' && steps.every((s) => s.sections.length >= 10),
    steps.map((s) => `${s.step}: ${s.sections.map(([n, ms]) => `${n} ${ms.toFixed(2)}`).join(', ')}`).join('; '),
  )
  const events = (
    JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8')) as { traceEvents: { pid: number; ph: string; name: string }[] }
  ).traceEvents.filter((e) => e.ph === 'X')
  const onDevice = events.filter((e) => e.pid === 1).length
  const scopes = events.filter((e) => e.name === 'modelForward').length
  const wantDevice = DEVICE !== 'cpu'
  check(
    'train',
    'profile: trace',
    onDevice > 0 === wantDevice && scopes === 4,
    `${events.length} events, ${onDevice} on the device (${wantDevice ? 'want some' : 'want none'}), modelForward scopes ${scopes} (want 4)`,
  )
  figures.profile_summary = fs.readFileSync(path.join(dir, 'summary.md'), 'utf8').split('\n').slice(0, 40)
}

/** A temporary folder with the tiny llama (model/) and the preference data (pairs.jsonl). */
function tinyRun(prefix: string): { dir: string; model: string; data: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const model = path.join(dir, 'model')
  fs.mkdirSync(model)
  writeLlama(model, TINY)
  const data = path.join(dir, 'pairs.jsonl')
  writeData(data)
  return { dir, model, data }
}

function checkTrain(): void {
  const { dir, model, data } = tinyRun('edpo-gpu-e2e-')
  try {
    const cpu = train(model, data, 'cpu', ['--device', 'cpu'])
    // The loss must move, or matching would prove little.
    check('train', 'cpu run learns', cpu.length === 20 && cpu.at(-1)!.loss < cpu[0]!.loss - 0.05, `loss ${cpu[0]?.loss} → ${cpu.at(-1)?.loss}`)
    // Profiled steps 3-4 (--profile-steps) must train the same, and record the device's kernels.
    compareRuns('cuda fp32 (steps 3-4 profiled)', train(model, data, 'cuda', ['--device', DEVICE, '--profile-steps', '3-4']), cpu)
    checkProfile(path.join(dir, 'cuda', 'profile', 'steps-3-4'))
    compareRuns('cuda fp32 --padding-free', train(model, data, 'cuda-pf', ['--device', DEVICE, '--padding-free']), cpu)
    compareRuns('cuda fp32 --gradient-checkpointing', train(model, data, 'cuda-gc', ['--device', DEVICE, '--gradient-checkpointing']), cpu)
    const lora = ['--lora-r', '8', '--lora-dropout', '0']
    compareRuns('cuda fp32 LoRA', train(model, data, 'cuda-lora', ['--device', DEVICE, ...lora]), train(model, data, 'cpu-lora', ['--device', 'cpu', ...lora]))
    const bf16 = train(model, data, 'cuda-bf16', ['--device', DEVICE, '--dtype', 'bfloat16'])
    const finite = bf16.length === 20 && bf16.every((m) => Number.isFinite(m.loss) && Number.isFinite(m['kl/beta']))
    const drift = Math.max(...bf16.map((m, i) => Math.abs(m.loss - (cpu[i]?.loss ?? NaN))))
    check(
      'train',
      'cuda bf16: 20 finite steps',
      finite,
      `final loss ${bf16.at(-1)?.loss} (fp32 cpu ${cpu.at(-1)?.loss}); largest |bf16 − fp32| loss ${drift.toFixed(4)}`,
    )
    checkMemoryReport(model, data)
    figures.train_loss_cpu = cpu.map((m) => m.loss)
    figures.train_beta_cpu = cpu.map((m) => m['kl/beta'])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * EDPO_MEMORY_REPORT=1 on the device: a GPU run's report reads CUDA's caching allocator (the
 * memory/device_* fields), whose step peak holds the run's state, and measures the forward's
 * activations there; a CPU run has no device fields and measures them on its own allocator.
 */
function checkMemoryReport(model: string, data: string): void {
  const run = runTrain(model, data, 'memory', ['--device', DEVICE], { steps: 3, env: { EDPO_MEMORY_REPORT: '1' } })
  const steps = run.status === 0 ? readSteps(run.out) : []
  const last = (steps.at(-1) ?? {}) as Record<string, number>
  const bytes = (k: string) => last[`memory/${k}_bytes`]
  const state = ['policy_weights', 'reference_weights', 'master_weights', 'optimizer_moments'].reduce((n, k) => n + (bytes(k) ?? 0), 0)
  const onGpu = DEVICE !== 'cpu'
  const peak = bytes('device_peak_tensors')
  check(
    'train',
    'memory report on the device',
    run.status === 0 &&
      (bytes('activations') ?? 0) > 0 &&
      (onGpu ? peak !== undefined && peak >= state && (bytes('device_peak_reserved') ?? 0) >= peak : peak === undefined),
    run.status !== 0
      ? `exit ${run.status ?? run.signal}: ${run.tail.slice(-400)}`
      : `state ${state} B, activations ${bytes('activations')} B, device peak ${peak ?? 'absent'} B (reserved peak ${bytes('device_peak_reserved') ?? 'absent'})${onGpu ? '' : ', want no device fields on cpu'}`,
  )
  if (peak !== undefined) figures.memory_device_peak_bytes = peak
}

// ---------------------------------------------------------------------------------------------
// dist: `edpo train --nproc-per-node 1` at ZeRO 0-3 (NCCL on cuda, Gloo on cpu) against one process.

const DIST_STEPS = 6
// Each launcher run: CUDA and NCCL start-up plus 6 steps of the tiny llama take seconds; a hang is cut here.
const DIST_TIMEOUT_S = 90
// A world of 1 reduces nothing: all-reduce, reduce and reduce-scatter over one rank return their input,
// the mean divides by 1 and the rank's loss weight is 1, so on the CPU the runs come out bit-identical.
// What may still differ is rounding: ZeRO-2/3 sum the gradient norm's squares through the group (another
// order than the local clip), and on cuda kernels whose accumulation order is not fixed (atomics, split-K)
// may round differently run to run: fp32 ulps (6e-8) per step. 1e-5 relative leaves ~100 of them over
// 6 steps and is 100x tighter than the cuda-vs-cpu train check (1e-3). A gradient averaged wrongly
// shows in grad_norm (Adam and clipping hide its scale from the loss), a lost bucket or step in all three.
const DIST_RTOL = 1e-5

/** cuda:N for a launcher, whose rank 0 takes cuda:LOCAL_RANK: CUDA_VISIBLE_DEVICES makes N that device. */
function visibleAsOne(device: string): { device: string; env: Record<string, string> } {
  const m = /^cuda:(\d+)$/.exec(device)
  if (!m) return { device, env: {} }
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',')
  return { device: 'cuda', env: { CUDA_VISIBLE_DEVICES: visible?.[Number(m[1])] ?? m[1]! } }
}

/** The newest checkpoint-<step> folder of a run, or undefined. */
function newestCheckpoint(out: string): string | undefined {
  const steps = fs
    .readdirSync(out)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
  return steps.length ? path.join(out, `checkpoint-${Math.max(...steps)}`) : undefined
}

async function checkpointWeights(dir: string): Promise<Map<string, Float64Array>> {
  const model = await CausalLM.fromPretrained(dir, { trainable: false })
  return new Map([...model.namedParameters()].map(([name, t]) => [name, host(t)]))
}

/** Per step, the worst relative difference of loss, β and grad_norm against the reference run. */
function stepDifference(got: StepMetrics[], want: StepMetrics[]): { worst: number; at: number; what: string } {
  let worst = got.length === want.length ? 0 : Infinity,
    at = 0,
    what = 'step count'
  for (let i = 0; i < Math.min(got.length, want.length); i++)
    for (const key of ['loss', 'kl/beta', 'grad_norm'] as const) {
      const [g, w] = [got[i]![key], want[i]![key]]
      const e = g === undefined || w === undefined ? Infinity : Math.abs(g - w) / Math.max(Math.abs(w), 1e-12)
      if (!(e <= worst)) [worst, at, what] = [e, got[i]!.step, key]
    }
  return { worst, at, what }
}

async function checkDist(): Promise<void> {
  const { dir, model, data } = tinyRun('edpo-gpu-dist-')
  try {
    const { device, env } = visibleAsOne(DEVICE)
    // The same threads in the one process and in the launcher's rank, which would otherwise take cores/1.
    const runEnv = { ...env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? String(os.availableParallelism()) }
    const run = (name: string, extra: string[]) =>
      runTrain(model, data, name, ['--device', device, ...extra], { steps: DIST_STEPS, timeoutS: DIST_TIMEOUT_S, env: runEnv })
    const one = run('one-process', [])
    if (one.status !== 0) throw new Error(`the one-process reference run exited ${one.status ?? one.signal}:\n${one.tail}`)
    const want = readSteps(one.out)
    const wantCk = newestCheckpoint(one.out)
    if (wantCk === undefined) throw new Error(`the one-process reference run wrote no checkpoint in ${one.out}`)
    const wantWeights = await checkpointWeights(wantCk)
    check(
      'dist',
      'one process: steps logged, β moves',
      want.length === DIST_STEPS && want.at(-1)!['kl/beta'] !== want[0]!['kl/beta'],
      `${want.length} steps, β ${want[0]?.['kl/beta']} → ${want.at(-1)?.['kl/beta']}`,
    )
    const backend = device === 'cpu' ? 'gloo' : 'nccl'
    for (const stage of [0, 1, 2, 3]) {
      const tag = `${backend} --nproc-per-node 1 --zero-stage ${stage}`
      const r = run(`zero${stage}`, ['--nproc-per-node', '1', '--backend', backend, '--zero-stage', String(stage), '--dist-timeout', '60'])
      check(
        'dist',
        `${tag}: exits 0`,
        r.status === 0,
        r.status === 0
          ? `${r.seconds.toFixed(1)} s`
          : `exited ${r.status ?? r.signal} after ${r.seconds.toFixed(1)} s: ${r.tail.trim().split('\n').slice(-3).join(' | ')}`,
      )
      if (r.status !== 0) continue
      const got = readSteps(r.out)
      const d = stepDifference(got, want)
      check(
        'dist',
        `${tag}: loss, β, grad_norm per step`,
        d.worst <= DIST_RTOL,
        `${got.length}/${want.length} steps; worst relative difference ${d.worst.toExponential(2)}${d.worst > 0 ? ` (${d.what}, step ${d.at})` : ''} (≤ ${DIST_RTOL}); final loss ${got.at(-1)?.loss} vs ${want.at(-1)?.loss}`,
      )
      const ck = newestCheckpoint(r.out)
      const problem = ck === undefined ? 'no checkpoint' : checkpointProblem(ck)
      // ZeRO-1-3 write their rank's optimizer shard (a resume re-shards it for any layout); ZeRO-0 the whole state.
      const optimizer = stage === 0 ? OPTIMIZER_FILE : optimizerShardFile(0, 1)
      const files = ck === undefined ? [] : fs.readdirSync(ck)
      check(
        'dist',
        `${tag}: checkpoint complete`,
        problem === undefined && path.basename(ck!) === path.basename(wantCk) && files.includes(optimizer),
        `${ck === undefined ? 'none' : path.basename(ck)} (want ${path.basename(wantCk)}): ${problem ?? 'complete'}; ${files.filter((f) => f.endsWith('.safetensors') || f.endsWith('.json')).join(', ')} (want ${optimizer})`,
      )
      if (ck === undefined || problem !== undefined) continue
      const weights = await checkpointWeights(ck)
      const missing = [...wantWeights.keys()].filter((k) => !weights.has(k)).concat([...weights.keys()].filter((k) => !wantWeights.has(k)))
      let d2 = 0,
        n2 = 0
      for (const [name, w] of wantWeights) {
        const g = weights.get(name)
        for (let i = 0; g && i < w.length; i++) [d2, n2] = [d2 + (g[i]! - w[i]!) ** 2, n2 + w[i]! ** 2]
      }
      const e = Math.sqrt(d2 / n2)
      check(
        'dist',
        `${tag}: checkpoint loads, weights as one process's`,
        missing.length === 0 && e <= DIST_RTOL,
        `${weights.size} tensors${missing.length ? `, not in both: ${missing.join(', ')}` : ''}; ‖Δw‖/‖w‖ ${e.toExponential(2)} (≤ ${DIST_RTOL})`,
      )
    }
    figures.dist_loss_one_process = want.map((m) => m.loss)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2)
  let only: string | undefined
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]]
    if (name === '--only' && (value === 'ops' || value === 'train' || value === 'dist')) only = value
    else if (name === '--device' && value !== undefined && DEVICE_PATTERN.test(value)) DEVICE = value
    else {
      console.error(`node-e2e: bad arguments '${argv.join(' ')}' (known: --only ops|train|dist, --device cuda|cuda:N|cpu)`)
      return 2
    }
  }
  const rt = runtime()
  figures.runtime = rt
  figures.device = DEVICE
  console.log(
    `node-e2e: libtorch ${rt.libtorchVersion}, cudaBuild ${rt.cudaBuild}, cudaAvailable ${rt.cudaAvailable}, device ${DEVICE}, ${new Date().toISOString()}`,
  )
  if (DEVICE !== 'cpu' && (!rt.cudaBuild || !rt.cudaAvailable)) {
    console.error('node-e2e: this addon has no CUDA or sees no device')
    return 2
  }
  const sections: Array<[string, () => void | Promise<void>]> = [
    ['ops', checkFusedOp],
    ['ops', checkChunkedOp],
    ['ops', checkOptimizer],
    ['train', checkTrain],
    ['dist', checkDist],
  ]
  for (const [name, fn] of sections) {
    if (only !== undefined && only !== name) continue
    const t0 = Date.now()
    try {
      await fn()
    } catch (e) {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e)
      errors.push(`${name}: ${msg}`)
      console.log(`ERROR ${name}: ${msg}`)
    }
    figures[`${name}_${fn.name}_s`] = (Date.now() - t0) / 1000
  }
  const failed = checks.filter((c) => !c.ok)
  const out = process.env.OUT
  if (out) fs.writeFileSync(path.join(out, 'node-e2e.json'), JSON.stringify({ date: new Date().toISOString(), checks, errors, figures }, null, 1))
  console.log(`node-e2e: ${checks.length - failed.length}/${checks.length} checks passed, ${errors.length} section error(s)`)
  return failed.length || errors.length ? 1 : 0
}

void main().then((code) => {
  process.exitCode = code
})
