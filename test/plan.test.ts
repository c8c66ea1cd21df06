// `edpo plan`: the byte counts of weights, reference, gradients and AdamW state follow from the
// parameter counts (Llama-3-8B: 8,030,261,248; LoRA r=16 on all seven projections: 41,943,040),
// ZeRO 1 shards the optimizer state, 2 also the gradients, 3 also the weights and the reference
// (gathered a unit at a time), LoRA has no reference copy, and bad flags are named. (bench/lora.ts checks the totals against measured peak RSS.)
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { parseModelConfig } from '../lib/model'
import { gatherUnits, planMemory, type PlanOptions } from '../lib/model/memory-plan'
import { tempDir } from './helpers/data-fixtures'
import { LLAMA3_8B } from '../bench/llama3-8b'

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
  t.equal(z2.weights, 2 * P, 'weights are sharded only at stage 3')
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
  // With gradient accumulation the earlier micro-batches build every gradient (the reducer runs in the last).
  const z2acc = planMemory(config, { ...base, nprocPerNode: 8, zeroStage: 2, gradAccumulation: 2 })
  t.equal(z2acc.gradients, 2 * P, 'ZeRO-2 with accumulation holds every gradient')
  t.equal(z2acc.gradientBuckets, B, "and one bucket's flattened copy")
  t.end()
})

// Llama-3-8B's units: the embedding and the head (128256 × 4096 each), 32 layers of 218,112,000
// (q, o 4096²; k, v 1024 × 4096; gate, up, down 14336 × 4096; two norms) and the final norm.
const EMBED = 128256 * 4096
const LAYER = 2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096 + 2 * 4096

t.test('ZeRO-3: weights, reference, master, moments and gradients over N, two units gathered', (t) => {
  const units = gatherUnits(config)
  t.same(units, [EMBED, ...Array<number>(32).fill(LAYER), 4096, EMBED], 'embedding, 32 layers, final norm, head')
  t.equal(
    units.reduce((a, b) => a + b, 0),
    P,
  )
  const N = 16
  const shard = units.reduce((a, u) => a + Math.ceil(u / N), 0)
  t.ok(shard >= P / N && shard < P / N + units.length, 'each unit padded to a multiple of N')
  const z3 = planMemory(config, { ...base, nprocPerNode: N, zeroStage: 3 })
  t.equal(z3.weights, 2 * shard, 'bf16 weights: this device’s shard')
  t.equal(z3.reference, 2 * shard, 'the reference is sharded by default')
  t.equal(z3.gradients, 2 * shard)
  t.equal(z3.optimizer, 12 * shard, 'fp32 master + m + v of the shard')
  t.equal(z3.gatheredWeights, 2 * (2 * EMBED), "the loss's two heads (the policy's and the sharded reference's) outweigh the embedding and layer 0")
  // --bucket-mb (25 MiB) is below one unit: one unit's full gradient in flight (the largest, the
  // head's), and the next one the backward is assembling.
  t.equal(z3.gradientBuckets, 2 * (EMBED + EMBED), 'one unit reduce-scattering and one being assembled')
  const wide = planMemory(config, { ...base, nprocPerNode: N, zeroStage: 3, bucketBytes: 2 * 2 * (EMBED + LAYER) })
  t.equal(wide.gradientBuckets, 2 * (EMBED + LAYER) * 2 + 2 * EMBED, 'a wider --bucket-mb lets that many bytes reduce-scatter at once')
  const whole = planMemory(config, { ...base, nprocPerNode: N, zeroStage: 3, shardReference: false })
  t.equal(whole.reference, 2 * P, 'or a whole reference')
  t.equal(whole.gatheredWeights, 2 * (EMBED + LAYER), 'whose head is not gathered: the embedding and layer 0 are the most at once')
  t.equal(whole.total - z3.total, 2 * P - 2 * shard - 2 * (2 * EMBED - EMBED - LAYER))
  t.equal(planMemory(config, { ...base, nprocPerNode: N, zeroStage: 3, data: 'sequences', reference: false }).reference, 0)
  t.throws(() => planMemory(config, { ...base, nprocPerNode: N, zeroStage: 3, loraR: 16 }), /LoRA/)
  t.end()
})

t.test("the paper's run: Llama-3-8B ε-DPO on 16 × 40 GB fits at ZeRO-3, not at ZeRO-2", (t) => {
  // bf16 on GPUs, gradient checkpointing, 2 pairs × 1024 tokens per device. A 40 GB card holds 37.25 GiB.
  const paper: PlanOptions = { ...base, device: 'cuda', batchSize: 2, nprocPerNode: 16, headGradientInForward: true }
  const z2 = planMemory(config, { ...paper, zeroStage: 2 })
  const z3 = planMemory(config, { ...paper, zeroStage: 3 })
  t.ok(z2.total > 37 * 2 ** 30, `ZeRO-2: ${(z2.total / 2 ** 30).toFixed(2)} GiB`)
  t.ok(z3.total <= 37 * 2 ** 30, `ZeRO-3: ${(z3.total / 2 ** 30).toFixed(2)} GiB`)
  // The peak holds the sharded weights, reference and moments, the gathered units, and the larger
  // of the forward's working set and the backward's (whose gradient shards arrive as it goes).
  const state = z3.weights + z3.reference + z3.optimizer
  t.ok(z3.total >= state + z3.gatheredWeights + Math.max(z3.activations + z3.layerTemporaries, z3.gradients + z3.gradientBuckets))
  // The fused loss's fp32 head gradient (128256 × 4096) is among the activations.
  t.ok(z3.activations - planMemory(config, { ...paper, zeroStage: 3, headGradientInForward: false }).activations >= 128256 * 4096 * 4)
  t.ok(z3.total < z2.total - 2 * P, 'it saves more than the whole weights and reference over ZeRO-2')
  t.end()
})

t.test("the loss's logits follow the device's default chunk (ops.chunkTokensDefault); a given chunk wins", (t) => {
  const long: PlanOptions = { ...base, batchSize: 4, maxLength: 2048 }
  const cpu = planMemory(config, { ...long, device: 'cpu' })
  const gpu = planMemory(config, { ...long, device: 'cuda' })
  // 2048 rows on a GPU at V = 128256, 261 on the CPU; two [rows, V] bf16 tensors per chunk.
  t.equal(cpu.logitsChunked, 261 * 128256 * 2 * 2)
  t.equal(gpu.logitsChunked, 2048 * 128256 * 2 * 2)
  t.equal(planMemory(config, { ...long, device: 'cuda', chunkTokens: 261 }).logitsChunked, cpu.logitsChunked)
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
  // The fused loss makes no head gradient for LoRA (the head is frozen): only the hidden states' gradient.
  const withHead = (loraR: number | undefined) =>
    planMemory(config, { ...base, loraR, headGradientInForward: true }).activations - planMemory(config, { ...base, loraR }).activations
  t.equal(withHead(16), 2 * 4096 * 2 * 1024, "LoRA: the hidden states' bf16 gradient only")
  t.equal(withHead(undefined), 128256 * 4096 * 4 + 2 * 4096 * 2 * 1024, "full fine-tuning: the head's fp32 gradient too")
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
  t.match(edpo(['plan', '--model', file, '--zero-stage', '4']).stderr, /--zero-stage: .*3/)
  const z3 = edpo(['plan', '--model', file, '--dtype', 'bf16', '--nproc-per-node', '16', '--zero-stage', '3', '--device', 'cuda'])
  t.equal(z3.status, 0, z3.stderr)
  t.match(z3.stdout, /^ {2}weights +957\.3 MiB .*sharded over 16$/m)
  t.match(z3.stdout, /^ {2}reference +957\.3 MiB .*sharded over 16$/m)
  t.match(z3.stdout, /^ {2}gathered weights +1\.96 GiB /m)
  t.match(
    edpo(['plan', '--model', file, '--dtype', 'bf16', '--nproc-per-node', '16', '--zero-stage', '3', '--no-shard-reference']).stdout,
    /^ {2}reference +14\.96 GiB +a frozen copy of the weights$/m,
  )
  t.match(edpo(['plan', '--model', file, '--nproc-per-node', '2', '--zero-stage', '3', '--lora-r', '8']).stderr, /--zero-stage 3 --lora-r/)
  t.match(edpo(['plan', '--model', file, '--nproc-per-node', '2', '--no-shard-reference']).stderr, /--no-shard-reference: .*--zero-stage 3/)
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
  // On a GPU attention runs SDPA, which keeps no [T, T] scores: twice the tokens per sequence keep
  // twice the activations. The CPU's eager attention keeps its softmax, which grows with T².
  const perLength = (device: 'cpu' | 'cuda', maxLength: number) =>
    planMemory(parseModelConfig(LLAMA3_8B, file), { ...o, device, maxLength, maxPromptLength: maxLength / 2 }).activations
  t.equal(perLength('cuda', 2048) / perLength('cuda', 1024), 2)
  t.ok(perLength('cpu', 2048) / perLength('cpu', 1024) > 2.2)
  // Gemma-2's soft-capped scores cannot run SDPA: its GPU plan keeps them.
  const gemma = parseModelConfig({ model_type: 'gemma2' }, 'config.json')
  const gemmaLength = (maxLength: number) =>
    planMemory(gemma, { ...o, dtype: 'bfloat16', device: 'cuda', maxLength, maxPromptLength: maxLength / 2 }).activations
  t.ok(gemmaLength(2048) / gemmaLength(1024) > 2.2)
  t.not(activations(gpu.stdout), activations(cpu.stdout))
  t.match(edpo(['plan', '--model', file, '--device', 'tpu']).stderr, /--device/)
  t.end()
})
