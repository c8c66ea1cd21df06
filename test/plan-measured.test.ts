// `edpo plan`'s terms against what the addon's counting allocator sees in a real ε-DPO run of the
// tiny llama (EDPO_MEMORY_REPORT=1: memory/*_bytes of each step), fp32, full fine-tuning and LoRA.
// - State (weights, reference, gradients, AdamW moments) follows from the parameter shapes: equal
//   to the byte.
// - Activations and the step's peak of live tensors are modelled from the tensors the layer keeps
//   and holds (lib/model/memory-plan.ts). Tensor bytes are a function of the shapes (no allocator
//   caching, no timing), so the bound is not noise: it is the 15%, which covers what the
//   plan leaves out on purpose (per-token scalars such as RMSNorm's rsqrt, masks, RoPE tables,
//   the loss's per-row values: O(tokens) against O(tokens · (hidden + intermediate + heads · T))).
// - ZeRO-3 on 2 ranks (rank 0's report): the shards are equal to the byte; the peak adds the
//   gathered units and the reduce-scatters in flight to the same activations, within the same 15%.
// RSS is not asserted here (it depends on glibc's heap and the machine): bench/lora.ts measures it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { parseModelConfig } from '../lib/model'
import { readMetrics } from '../lib/train/metrics-log'
import { planMemory } from '../lib/model/memory-plan'
import { makeModelDir, tempDir, WORDS } from './helpers/data-fixtures'
import { startRankPair } from './helpers/dist-run'
import { tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'
import { makeTrainableModel, writeLongPreferences } from './helpers/train-fixtures'
import { LLAMA_33M } from '../bench/llama-33m'

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
      headGradientInForward: true,
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

t.test('ZeRO-3 on 2 ranks: the plan matches what rank 0 holds, on the tiny llama and the 33M llama', async (t) => {
  const work = tempDir(t)
  const data = writeLongPreferences(path.join(work, 'long.jsonl'), 16, PROMPT + 8, 32)
  // The 33M llama of bench/dist.ts (hidden 512, 8 layers, vocabulary 8192; the toy tokenizer uses its first ids).
  const big = makeModelDir(t)
  const bigConfig = tinyConfig('llama', { ...LLAMA_33M, max_position_embeddings: 128, bos_token_id: 1, eos_token_id: 2 })
  t.ok(WORDS.length < 8192, 'the toy tokenizer fits the 33M vocabulary')
  writeTiny(big, bigConfig, tinyWeights(bigConfig, 2))
  const models = { tiny: makeTrainableModel(t), '33M': big }
  const options = { data: [data], batchSize: BATCH, maxLength: MAX_LENGTH, maxPromptLength: PROMPT, maxSteps: 2, learningRate: 1e-3, zeroStage: 3 }
  const cases = Object.entries(models).flatMap(([name, model]) =>
    [false, true].map((gradientCheckpointing) => ({ name: `${name}${gradientCheckpointing ? ' checkpointing' : ''}`, model, gradientCheckpointing })),
  )
  const out = (name: string) => path.join(work, name.replace(/ /g, '-'))
  for (const c of cases) {
    // Each case on a fresh pair of ranks: the report counts every live tensor of the process, and
    // a finished Trainer's state is not all freed before the next one is made (seen at every stage).
    // The reference is the policy's own folder (the default), sharded like it.
    const job = { kind: 'train', config: { ...options, model: c.model, gradientCheckpointing: c.gradientCheckpointing, out: out(c.name) } }
    const pairDir = path.join(work, `${c.name.replace(/ /g, '-')}-ranks`)
    fs.mkdirSync(pairDir)
    const { codes, stderr } = await startRankPair(pairDir, [job], 600_000, { EDPO_MEMORY_REPORT: '1' }).done
    t.same(codes, [0, 0], `${c.name}: both ranks finished (stderr: ${stderr})`)
    const last = readMetrics(out(c.name))
      .filter((m) => m['memory/peak_tensors_bytes'] !== undefined)
      .at(-1)!
    const m = (k: string) => last[`memory/${k}_bytes`] as number
    const config = parseModelConfig(JSON.parse(fs.readFileSync(path.join(c.model, 'config.json'), 'utf8')) as Record<string, unknown>, 'config.json')
    const plan = planMemory(config, {
      dtype: 'float32',
      batchSize: BATCH,
      maxLength: MAX_LENGTH,
      data: 'pairs',
      reference: true,
      headGradientInForward: true,
      gradientCheckpointing: c.gradientCheckpointing,
      chunkTokens: 0,
      maxPromptLength: PROMPT,
      nprocPerNode: 2,
      zeroStage: 3,
    })
    t.equal(m('policy_weights'), plan.weights, `${c.name}: the policy's shards`)
    t.equal(m('reference_weights'), plan.reference, `${c.name}: the reference's shards`)
    t.equal(m('optimizer_moments'), plan.optimizer, `${c.name}: AdamW's m and v of the shards`)
    t.equal(m('gradients'), plan.gradients, `${c.name}: the gradient shards`)
    const within = (measured: number, planned: number, what: string) =>
      t.ok(
        Math.abs(planned / measured - 1) <= 0.15,
        `${c.name}: ${what}: plan ${planned} B, measured ${measured} B (ratio ${(planned / measured).toFixed(3)}, bound ±15%)`,
      )
    // At most a stray scalar (a step's 8-byte value still held by an async callback); the smallest
    // gathered unit is 30 KB even on the tiny llama.
    t.ok(m('other') < 1024, `${c.name}: nothing else lives between steps (no gathered unit stays behind): ${m('other')} B`)
    // The policy's head unit stays gathered from the loss to its backward (the plan counts it with the gathered weights).
    const head = config.vocab_size * config.hidden_size * 4
    within(m('activations'), plan.activations + head, 'activations kept for backward, with the gathered head')
    within(m('peak_tensors'), plan.total, "the step's peak of live tensors")
  }
})
