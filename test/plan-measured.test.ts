// `edpo plan`'s terms against what the addon's counting allocator sees in a real ε-DPO run of the
// tiny llama (EDPO_MEMORY_REPORT=1: memory/*_bytes of each step), fp32, full fine-tuning and LoRA.
// - State (weights, reference, gradients, AdamW moments) follows from the parameter shapes: equal
//   to the byte.
// - Activations and the step's peak of live tensors are modelled from the tensors the layer keeps
//   and holds (lib/model/memory-plan.ts). Tensor bytes are a function of the shapes (no allocator
//   caching, no timing), so the bound is not noise: it is the 15%, which covers what the
//   plan leaves out on purpose (per-token scalars such as RMSNorm's rsqrt, masks, RoPE tables,
//   the loss's per-row values: O(tokens) against O(tokens · (hidden + intermediate + heads · T))).
// RSS is not asserted here (it depends on glibc's heap and the machine): bench/lora.ts measures it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { parseModelConfig } from '../lib/model'
import { planMemory } from '../lib/model/memory-plan'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeLongPreferences } from './helpers/train-fixtures'

const [BATCH, MAX_LENGTH, PROMPT, LORA_R] = [4, 64, 48, 8]

const RUN = path.join(__dirname, 'helpers', 'memory-report-run.ts')

// The last step's memory report of a run in its own process (nothing of another run alive).
function measure(model: string, data: string, out: string, lora: boolean): Record<string, number> {
  const options = {
    batchSize: BATCH,
    maxLength: MAX_LENGTH,
    maxPromptLength: PROMPT,
    maxSteps: 2,
    learningRate: 1e-3,
    ...(lora ? { loraR: LORA_R, loraDropout: 0 } : {}),
  }
  const r = spawnSync(process.execPath, [...process.execArgv, RUN, model, data, out, JSON.stringify(options)], { encoding: 'utf8', timeout: 300_000 })
  if (r.status !== 0) throw new Error(`memory-report-run failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>
}

t.test("the plan's terms match the counting allocator's categories on the tiny llama", (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeLongPreferences(path.join(work, 'long.jsonl'), 8, PROMPT + 8, 32)
  const config = parseModelConfig(JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')) as Record<string, unknown>, 'config.json')
  const within = (measured: number, planned: number, what: string) =>
    t.ok(Math.abs(planned / measured - 1) <= 0.15, `${what}: plan ${planned} B, measured ${measured} B (ratio ${(planned / measured).toFixed(3)}, bound ±15%)`)
  for (const lora of [false, true]) {
    const m = measure(model, data, path.join(work, lora ? 'lora' : 'full'), lora)
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
    })
    const label = lora ? `LoRA r=${LORA_R}` : 'full FT'
    t.equal(m.policy_weights, plan.parameters * 4, `${label}: the base weights`)
    t.equal(m.optimizer_moments, plan.optimizer, `${label}: AdamW's m and v`)
    if (lora) {
      // The engine's owners list the base's parameters only; the adapters and their gradients
      // are the report's "other" (live tensors of no listed owner) at the time of the report.
      t.equal(m.reference_weights, 0, `${label}: no reference copy`)
      t.equal(m.other, plan.weights - plan.parameters * 4 + plan.gradients, `${label}: fp32 adapters and their gradients`)
    } else {
      t.equal(m.reference_weights, plan.reference, `${label}: the reference copy`)
      t.equal(m.gradients, plan.gradients, `${label}: gradients`)
      t.equal(m.other, 0, `${label}: nothing else lives between steps`)
    }
    within(m.activations!, plan.activations, `${label}: activations kept for backward`)
    within(m.peak_tensors!, plan.total, `${label}: the step's peak of live tensors`)
  }
  t.end()
})
