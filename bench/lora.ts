// Full fine-tuning (policy + a frozen reference copy) against LoRA (the reference is the base with
// the adapters off) in ε-DPO training, on the tiny test llama and the 33M bench llama
// (bench/model.ts), each case in its own process, once with glibc's default malloc and once with
// MALLOC_MMAP_THRESHOLD_=65536 (freed blocks go back to the OS at once; on Linux the addon's
// allocator maps tensors of 256 KiB and more itself, so there the threshold moves only the smaller
// ones: the two rows show that glibc's settings no longer decide RSS). Beside each measurement,
// `edpo plan`'s estimate for the same run and the ratio (planned / measured):
// - tensors: the plan's peak against the peak of live tensor bytes (the addon's counting allocator);
// - RSS: the plan's peak + runtime (the process's RSS once libtorch has run an op, measured here as
//   `edpo plan` measures it) against the process's peak RSS (VmHWM);
// and the step's wall and CPU time (user + system, all threads; the median of steps 2..N).
//   npm run bench:lora            (EDPO_BENCH_STEPS=N optimizer steps per case, default 4)
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { io, runtime, Tensor, Trainer } from '../lib/index'
import { memoryStats, resetPeakTensorBytes } from '../lib/core/memory'
import { parseModelConfig } from '../lib/model'
import { planMemory } from '../lib/model/memory-plan'
import { tokenizerConfig, tokenizerJson, WORDS } from '../test/helpers/data-fixtures'
import { writeLongPreferences } from '../test/helpers/train-fixtures'
import { peakRssSince, rssBytes } from './memory'
import { LLAMA_33M } from './llama-33m'
import { llamaWeights } from './step-fixture'

const MODELS = {
  tiny: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: WORDS.length },
  '33M': LLAMA_33M,
} as const
type ModelName = keyof typeof MODELS
const [BATCH, MAX_LENGTH, PROMPT] = [4, 128, 96]
const LORA_R = 16

function writeModel(dir: string, name: ModelName): void {
  const c = {
    model_type: 'llama',
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 1024,
    tie_word_embeddings: false,
    hidden_act: 'silu',
    torch_dtype: 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
    ...MODELS[name],
  }
  const w = llamaWeights(c)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()))
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig()))
  io.saveSafetensors(path.join(dir, 'model.safetensors'), w)
}

interface Result {
  model: ModelName
  lora: boolean
  malloc: Malloc
  runtime_mb: number
  peak_tensors_mb: number
  peak_rss_mb: number
  plan_mb: number
  step_s: number
  cpu_s: number
}
const MALLOC = { default: {}, 'mmap threshold 64 KiB': { MALLOC_MMAP_THRESHOLD_: '65536' } } as const
type Malloc = keyof typeof MALLOC

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function child(dir: string, name: ModelName, lora: boolean, steps: number, malloc: Malloc): Promise<void> {
  Tensor.zeros([1]).dispose() // libtorch initialised: the runtime, as `edpo plan` measures it
  const runtimeBytes = rssBytes()
  resetPeakTensorBytes()
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-lora-run-'))
  const trainer = await Trainer.create(
    {
      model: dir,
      data: [path.join(dir, 'data.jsonl')],
      out,
      batchSize: BATCH,
      maxLength: MAX_LENGTH,
      maxPromptLength: PROMPT,
      maxSteps: steps,
      learningRate: 1e-4,
      ...(lora ? { loraR: LORA_R, loraDropout: 0 } : {}),
    },
    { log: () => {} },
  )
  const times: number[] = []
  const cpu: number[] = []
  let cpuMark = process.cpuUsage()
  trainer.on('step', (s) => {
    const used = process.cpuUsage(cpuMark)
    cpuMark = process.cpuUsage()
    times.push(s.metrics.step_time ?? NaN)
    cpu.push((used.user + used.system) / 1e6)
  })
  await trainer.train()
  const peakRss = peakRssSince(0)
  const peakTensors = memoryStats().peakTensorBytes
  fs.rmSync(out, { recursive: true, force: true })
  const config = parseModelConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), 'config.json')
  const plan = planMemory(config, {
    dtype: 'float32',
    loraR: lora ? LORA_R : undefined,
    batchSize: BATCH,
    maxLength: MAX_LENGTH,
    data: 'pairs',
    reference: true,
    gradientCheckpointing: false,
    chunkTokens: 0,
    maxPromptLength: PROMPT,
    nprocPerNode: 1,
    zeroStage: 0,
    runtimeBytes,
  })
  const mb = (n: number) => n / 2 ** 20
  const r: Result = {
    model: name,
    lora,
    malloc,
    runtime_mb: mb(plan.runtime),
    peak_tensors_mb: mb(peakTensors),
    peak_rss_mb: mb(peakRss),
    plan_mb: mb(plan.total),
    step_s: median(times.slice(1)),
    cpu_s: median(cpu.slice(1)),
  }
  console.log(JSON.stringify(r))
}

function run(args: string[], malloc: Malloc): Result {
  const env: NodeJS.ProcessEnv = { ...process.env, ...MALLOC[malloc] }
  if (malloc === 'default') for (const k of Object.keys(env)) if (k.startsWith('MALLOC_')) delete env[k]
  const p = spawnSync(process.execPath, [...process.execArgv, __filename, ...args, malloc], { encoding: 'utf8', env })
  if (p.status !== 0) throw new Error(`case ${args.join(' ')} failed:\n${p.stderr}`)
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as Result
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(argv[1]!, argv[2] as ModelName, argv[3] === '1', Number(argv[4]), argv[5] as Malloc)
  const steps = Number(process.env.EDPO_BENCH_STEPS ?? 4)
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-lora-'))
  try {
    console.log(`ε-DPO, fp32, ${BATCH} pairs × ${MAX_LENGTH} tokens, median of steps 2–${steps}; LoRA r=${LORA_R} on all 7 projections`)
    console.log(
      `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${runtime().threads} threads, ${new Date().toISOString()}, load ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    )
    console.log('| model | training | malloc | peak tensors | plan | plan / tensors | peak RSS | plan + runtime | plan / RSS | step wall | step CPU |')
    console.log('|---|---|---|---|---|---|---|---|---|---|---|')
    const f = (x: number) => `${x.toFixed(1)} MiB`
    for (const name of Object.keys(MODELS) as ModelName[]) {
      const dir = path.join(root, name)
      writeModel(dir, name)
      writeLongPreferences(path.join(dir, 'data.jsonl'), 32, PROMPT + 16, 64) // every sequence truncated to MAX_LENGTH
      const rows: Result[] = []
      for (const lora of ['0', '1']) for (const malloc of Object.keys(MALLOC) as Malloc[]) rows.push(run(['--child', dir, name, lora, String(steps)], malloc))
      for (const r of rows)
        console.log(
          `| ${name} | ${r.lora ? `LoRA r=${LORA_R}` : 'full FT'} | ${r.malloc} | ${f(r.peak_tensors_mb)} | ${f(r.plan_mb)} | ${(r.plan_mb / r.peak_tensors_mb).toFixed(2)} | ` +
            `${f(r.peak_rss_mb)} | ${f(r.plan_mb + r.runtime_mb)} | ${((r.plan_mb + r.runtime_mb) / r.peak_rss_mb).toFixed(2)} | ${(r.step_s * 1000).toFixed(0)} ms | ${(r.cpu_s * 1000).toFixed(0)} ms |`,
        )
      const [fullDefault, fullMmap, loraDefault, loraMmap] = rows as [Result, Result, Result, Result]
      for (const [what, a, b] of [
        ['full FT', fullDefault, fullMmap],
        [`LoRA r=${LORA_R}`, loraDefault, loraMmap],
      ] as const)
        console.log(
          `| ${name} | ${what} | mmap threshold / default | | | | ${(b.peak_rss_mb / a.peak_rss_mb).toFixed(2)}× | | | ${(b.step_s / a.step_s).toFixed(2)}× | ${(b.cpu_s / a.cpu_s).toFixed(2)}× |`,
        )
      console.log(
        `| ${name} | LoRA / full | default | ${(loraDefault.peak_tensors_mb / fullDefault.peak_tensors_mb).toFixed(2)}× | | | ${(loraDefault.peak_rss_mb / fullDefault.peak_rss_mb).toFixed(2)}× | | | ${(loraDefault.step_s / fullDefault.step_s).toFixed(2)}× | ${(loraDefault.cpu_s / fullDefault.cpu_s).toFixed(2)}× |`,
      )
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
}

void main()
