// `edpo plan`: the byte counts of weights, reference, gradients and AdamW state follow from the
// parameter counts (Llama-3-8B: 8,030,261,248; LoRA r=16 on all seven projections: 41,943,040),
// ZeRO 1 shards the optimizer state and 2 also the gradients, LoRA has no reference copy, and bad
// flags are named. (bench/lora.ts checks the totals against measured peak RSS.)
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { parseModelConfig } from '../lib/model'
import { planMemory, type PlanOptions } from '../lib/model/memory-plan'
import { tempDir } from './helpers/data-fixtures'

const LLAMA3_8B = {
  model_type: 'llama',
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  max_position_embeddings: 8192,
  tie_word_embeddings: false,
  hidden_act: 'silu',
}
const config = parseModelConfig(LLAMA3_8B, 'config.json')
const base: PlanOptions = {
  dtype: 'bfloat16',
  batchSize: 1,
  maxLength: 1024,
  maxPromptLength: 512,
  data: 'pairs',
  reference: true,
  gradientCheckpointing: true,
  chunkTokens: 0,
  nprocPerNode: 1,
  zeroStage: 0,
}
const P = 8_030_261_248

t.test('full fine-tuning: 2 + 2 + 2 + 12 bytes per parameter, ZeRO shards', (t) => {
  const one = planMemory(config, base)
  t.equal(one.parameters, P)
  t.equal(one.weights, 2 * P)
  t.equal(one.reference, 2 * P, 'a frozen bf16 copy')
  t.equal(one.gradients, 2 * P)
  t.equal(one.optimizer, 12 * P, 'fp32 master + m + v')
  const z1 = planMemory(config, { ...base, nprocPerNode: 8, zeroStage: 1 })
  t.equal(z1.optimizer, (12 * P) / 8)
  t.equal(z1.gradients, 2 * P, 'stage 1 keeps whole gradients')
  const z2 = planMemory(config, { ...base, nprocPerNode: 8, zeroStage: 2 })
  t.equal(z2.gradients, (2 * P) / 8)
  t.equal(z2.weights, 2 * P, 'weights are never sharded (stage 3 would)')
  t.ok(z2.total < one.total && z2.total > 4 * P, 'ZeRO-2 saves most of the optimizer state, not the weights')
  // During the backward ZeRO-2 holds, beside its share, the buckets in flight: two reducing and
  // the one filling with its flattened copy, where the largest gradient (the 128256 × 4096
  // embedding or lm_head) is a bucket of its own.
  const B = 25 * 2 ** 20
  t.equal(z2.gradientBuckets, 2 * B + 2 * 128256 * 4096, 'ZeRO-2: two 25 MiB buckets reducing + the largest gradient filling')
  t.equal(one.gradientBuckets, 0, 'one device reduces nothing')
  t.equal(z1.gradientBuckets, B, "ZeRO-0/1: one bucket's flattened copy")
  const z2off = planMemory(config, { ...base, nprocPerNode: 8, zeroStage: 2, gradOverlap: false })
  t.equal(z2off.gradients + z2off.gradientBuckets, 2 * P, 'ZeRO-2 without overlap builds every gradient during the backward')
  t.ok(z2off.total > z2.total, 'so its peak is higher')
  t.equal(planMemory(config, { ...base, data: 'sequences', reference: false }).reference, 0, 'SFT has no reference')
  t.end()
})

t.test('LoRA: no reference copy, adapter-only gradients and optimizer state', (t) => {
  const lora = planMemory(config, { ...base, loraR: 16 })
  t.equal(lora.trainableParameters, 41_943_040)
  t.equal(lora.reference, 0)
  t.equal(lora.weights, 2 * P + 4 * 41_943_040, 'bf16 base + fp32 adapters')
  t.equal(lora.gradients, 4 * 41_943_040)
  t.equal(lora.optimizer, 8 * 41_943_040)
  t.equal(planMemory(config, { ...base, loraR: 8, loraTargetModules: ['q_proj', 'v_proj'] }).trainableParameters, 32 * 8 * (4096 + 4096 + 4096 + 1024))
  t.ok(lora.total < planMemory(config, base).total / 5)
  // Chunked logits are bounded by the chunk; materialised ones grow with the completion tokens.
  const long = planMemory(config, { ...base, batchSize: 8, maxLength: 4096, maxPromptLength: 1024 })
  t.ok(long.logitsMaterialised > 20 * long.logitsChunked)
  t.end()
})

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
const edpo = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })

t.test('edpo plan prints the rows; bad flags are named', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'llama3-8b.json')
  fs.writeFileSync(file, JSON.stringify(LLAMA3_8B))
  const r = edpo(['plan', '--model', file, '--dtype', 'bf16', '--lora-r', '16', '--nproc-per-node', '8', '--zero-stage', '2'])
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /LoRA r=16, 8 devices, ZeRO-2: per device/)
  for (const row of ['weights', 'reference', 'gradients', 'gradient buckets', 'optimizer state', 'activations', 'loss logits', 'peak'])
    t.match(r.stdout, new RegExp(`^  ${row} `, 'm'))
  t.match(edpo(['plan', '--model', file, '--zero-stage', '3']).stderr, /--zero-stage: .*2/)
  t.match(edpo(['plan', '--model', file, '--zero-stage', '1']).stderr, /--zero-stage shards over --nproc-per-node devices/)
  t.match(edpo(['plan', '--model', file, '--lora-r', '4', '--lora-target-modules', 'wq']).stderr, /'wq' is not a linear module of this model/)
  t.match(edpo(['plan', '--model', dir]).stderr, /no .*config\.json/)
  t.end()
})

t.test("edpo plan --device: a GPU plan has no runtime row and the ATen layer's fp32 activations", (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'llama3-8b.json')
  fs.writeFileSync(file, JSON.stringify(LLAMA3_8B))
  const activations = (out: string) => /^ {2}activations +(.+?) {3}/m.exec(out)?.[1]
  const cpu = edpo(['plan', '--model', file, '--dtype', 'float32'])
  const gpu = edpo(['plan', '--model', file, '--dtype', 'float32', '--device', 'cuda'])
  t.equal(gpu.status, 0, gpu.stderr)
  t.match(cpu.stdout, /^ {2}on CPU /m)
  t.notMatch(gpu.stdout, /on CPU/)
  // The same numbers as the API's plan for each device.
  const o: PlanOptions = { ...base, dtype: 'float32', gradientCheckpointing: false }
  const api = (device: 'cpu' | 'cuda') => planMemory(parseModelConfig(LLAMA3_8B, file), { ...o, device }).activations
  t.ok(api('cuda') > api('cpu'), 'the GPU layer keeps more in fp32')
  t.not(activations(gpu.stdout), activations(cpu.stdout))
  t.match(edpo(['plan', '--model', file, '--device', 'tpu']).stderr, /--device/)
  t.end()
})
