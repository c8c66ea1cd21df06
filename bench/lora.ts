// Full fine-tuning (policy + a frozen reference copy) against LoRA (the reference is the base with
// the adapters off) in ε-DPO training: peak RSS above the process's start and step time, on the
// tiny test llama and the 33M bench llama (bench/model.ts), each case in its own process; beside
// each measured peak, `edpo plan`'s estimate for the same run and the ratio (planned / measured).
//   npm run bench:lora            (EDPO_BENCH_STEPS=N optimizer steps per case, default 3)
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { io, runtime, Tensor, Trainer } from '../lib/index'
import { parseModelConfig } from '../lib/model'
import { planMemory } from '../lib/model/memory-plan'
import { tokenizerConfig, tokenizerJson, WORDS } from '../test/helpers/data-fixtures'
import { peakRssSince, resetPeakRss, rssBytes } from './memory'
import { llamaWeights } from './step-fixture'

const MODELS = {
  tiny: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: WORDS.length },
  '33M': { hidden_size: 512, intermediate_size: 1536, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 8192 },
} as const
type ModelName = keyof typeof MODELS
const [BATCH, MAX_LENGTH, PROMPT] = [4, 128, 96]
const LORA_R = 16

function writeModel(dir: string, name: ModelName): void {
  const c = { model_type: 'llama', rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 1024, tie_word_embeddings: false, hidden_act: 'silu', torch_dtype: 'float32', bos_token_id: 1, eos_token_id: 2, ...MODELS[name] }
  const w = llamaWeights(c)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()))
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig()))
  io.saveSafetensors(path.join(dir, 'model.safetensors'), w)
}

// Rows long enough that every sequence is truncated to exactly MAX_LENGTH tokens.
function writeData(file: string): void {
  const words = WORDS.filter((x) => /^[a-z]+$/.test(x))
  const text = (seed: number, n: number) => Array.from({ length: n }, (_, i) => words[(seed * 31 + i * 7) % words.length]).join(' ')
  const rows = Array.from({ length: 32 }, (_, i) => ({ prompt: text(i, PROMPT + 16), chosen: text(i + 1, 64), rejected: text(i + 2, 64) }))
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
}

interface Result {
  model: ModelName
  lora: boolean
  peak_mb: number
  plan_mb: number
  step_s: number
}

async function child(dir: string, name: ModelName, lora: boolean, steps: number): Promise<void> {
  Tensor.zeros([1]).dispose() // libtorch initialised before the baseline
  const base = rssBytes()
  resetPeakRss()
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
  trainer.on('step', (s) => times.push(s.metrics.step_time ?? NaN))
  await trainer.train()
  const peak = peakRssSince(base)
  fs.rmSync(out, { recursive: true, force: true })
  const config = parseModelConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), 'config.json')
  const plan = planMemory(config, {
    dtype: 'float32',
    loraR: lora ? LORA_R : undefined,
    batchSize: BATCH,
    maxLength: MAX_LENGTH,
    method: 'preference',
    gradientCheckpointing: false,
    chunkTokens: 0,
    maxPromptLength: PROMPT,
    nprocPerNode: 1,
    zeroStage: 0,
  })
  const r: Result = { model: name, lora, peak_mb: peak / 2 ** 20, plan_mb: plan.total / 2 ** 20, step_s: Math.min(...times.slice(1)) }
  console.log(JSON.stringify(r))
}

function run(args: string[]): Result {
  const p = spawnSync(process.execPath, [...process.execArgv, __filename, ...args], { encoding: 'utf8' })
  if (p.status !== 0) throw new Error(`case ${args.join(' ')} failed:\n${p.stderr}`)
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as Result
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(argv[1]!, argv[2] as ModelName, argv[3] === '1', Number(argv[4]))
  const steps = Number(process.env.EDPO_BENCH_STEPS ?? 3)
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-bench-lora-'))
  try {
    console.log(`ε-DPO, fp32, ${BATCH} pairs × ${MAX_LENGTH} tokens, best step of ${steps}; LoRA r=${LORA_R} on all 7 projections`)
    console.log(`${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${runtime().threads} threads, ${new Date().toISOString()}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
    console.log('| model | training | peak RSS above start | edpo plan | plan / measured | step time |')
    console.log('|---|---|---|---|---|---|')
    for (const name of Object.keys(MODELS) as ModelName[]) {
      const dir = path.join(root, name)
      writeModel(dir, name)
      writeData(path.join(dir, 'data.jsonl'))
      const rows = [run(['--child', dir, name, '0', String(steps)]), run(['--child', dir, name, '1', String(steps)])]
      for (const r of rows)
        console.log(
          `| ${name} | ${r.lora ? `LoRA r=${LORA_R}` : 'full FT (policy + reference copy)'} | ${r.peak_mb.toFixed(1)} MiB | ${r.plan_mb.toFixed(1)} MiB | ${(r.plan_mb / r.peak_mb).toFixed(2)} | ${(r.step_s * 1000).toFixed(0)} ms |`,
        )
      const [full, lora] = rows as [Result, Result]
      console.log(`| ${name} | LoRA / full | ${(lora.peak_mb / full.peak_mb).toFixed(2)}× | | | ${(lora.step_s / full.step_s).toFixed(2)}× |`)
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
}

void main()
