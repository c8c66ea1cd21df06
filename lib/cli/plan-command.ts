// `edpo plan`: the per-device memory of a training run before it starts (lib/model/memory-plan.ts),
// from a model folder or a bare config.json, full fine-tuning or LoRA, 1 or N devices with ZeRO 0–3.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { residentBytes } from '../core/memory'
import { parseModelConfig } from '../model'
import { readConfigJson } from '../model/checkpoint-files'
import { resolveTargets } from '../model/lora'
import { formatBytes, type MemoryPlan, type PlanOptions, planMemory } from '../model/memory-plan'
import { Tensor } from '../core/tensor'
import { TRAIN_OPTIONS, type OptionSpec } from '../train/config'
import { DEFAULT_TRAIN_METHOD, METHOD_NAMES, methodPlanShape, methodWithoutLora } from '../train/methods'
import { LORA_OPTIONS } from '../train/lora-options'
import { formatHelp, parseCommand } from './args'

export const PLAN_OPTIONS = {
  model: { schema: z.string().min(1), kind: 'string', help: 'model folder, or its config.json (no weights needed)' },
  loraR: { ...LORA_OPTIONS.loraR, help: 'plan LoRA of rank r (default: full fine-tuning)' },
  loraTargetModules: LORA_OPTIONS.loraTargetModules,
  dtype: TRAIN_OPTIONS.dtype,
  device: {
    ...TRAIN_OPTIONS.device,
    help: "'cpu', 'cuda' or 'cuda:N': the CPU runs fused layer kernels that keep less for backward (fp32/fp64), and its plan adds this process's runtime",
  },
  method: {
    schema: z.enum(METHOD_NAMES).default(DEFAULT_TRAIN_METHOD),
    kind: 'string',
    help: 'the training method: it says whether a reference runs, and pairs or single rows',
  },
  batchSize: { ...TRAIN_OPTIONS.batchSize, help: 'preference pairs (sft: rows) per micro-batch and device' },
  maxLength: TRAIN_OPTIONS.maxLength,
  maxPromptLength: { ...TRAIN_OPTIONS.maxPromptLength, help: "prompt tokens per sequence; the loss's logits cover the rest" },
  gradientCheckpointing: TRAIN_OPTIONS.gradientCheckpointing,
  chunkTokens: TRAIN_OPTIONS.chunkTokens,
  nprocPerNode: { schema: z.number().int().positive().default(1), kind: 'integer', help: 'data-parallel devices' },
  zeroStage: {
    schema: z.number().int().min(0).max(3).default(0),
    kind: 'integer',
    help: 'ZeRO stage (DeepSpeed meanings): 1 shards the fp32 master weights and AdamW moments, 2 also the gradients, 3 also the weights',
  },
  shardReference: TRAIN_OPTIONS.shardReference,
  gradAccumulation: TRAIN_OPTIONS.gradAccumulation,
  gradOverlap: TRAIN_OPTIONS.gradOverlap,
  bucketMb: TRAIN_OPTIONS.bucketMb,
} satisfies Record<string, OptionSpec>

export const PLAN_HELP = formatHelp(
  'edpo plan --model <dir | config.json> [--lora-r 16] [--dtype bfloat16] [--device cuda] [--nproc-per-node N --zero-stage S] [--batch-size B --max-length T] [--gradient-checkpointing]',
  'Prints the memory one device needs to train the model: weights, the reference, gradients, optimizer state, activations\n' +
    "and the loss's logits (chunked as edpo runs it, and what materialising them would take), and the runtime: this\n" +
    'process with node, libtorch and edpo loaded, which a CPU run holds beside its tensors. Reads only config.json.',
  PLAN_OPTIONS,
)

export function planCommand(argv: readonly string[]): number {
  const o = parseCommand(argv, PLAN_OPTIONS, PLAN_HELP, 'edpo plan')
  if (!o) return 0
  const file = o.model.endsWith('.json') ? o.model : path.join(o.model, 'config.json')
  if (!fs.existsSync(file)) throw new EdpoInputError(`--model ${o.model}: no ${file}`)
  const config = parseModelConfig(o.model.endsWith('.json') ? readJsonObject(file) : readConfigJson(o.model), file)
  if (o.zeroStage > 0 && o.nprocPerNode === 1) throw new EdpoInputError('--zero-stage shards over --nproc-per-node devices: give --nproc-per-node N > 1')
  if (o.zeroStage === 3 && o.loraR !== undefined)
    throw new EdpoInputError('--zero-stage 3 --lora-r: ZeRO-3 shards full fine-tuning only; LoRA trains at --zero-stage 0-2')
  if (!o.shardReference && o.zeroStage !== 3) throw new EdpoInputError('--no-shard-reference: only ZeRO-3 shards the reference; give --zero-stage 3')
  const method = methodPlanShape(o.method)
  const withoutLora = methodWithoutLora(o.method)
  if (withoutLora !== undefined && o.loraR !== undefined) throw new EdpoInputError(`--method ${o.method} --lora-r: ${withoutLora}`)
  const targets = o.loraTargetModules
    ? resolveTargets(
        o.loraTargetModules.flatMap((t) => t.split(',')),
        '--lora-target-modules',
        'edpo plan',
      )
    : undefined
  if (targets && o.loraR === undefined) throw new EdpoInputError('--lora-target-modules needs --lora-r')
  const options: PlanOptions = {
    dtype: o.dtype,
    loraR: o.loraR,
    loraTargetModules: targets,
    batchSize: o.batchSize,
    maxLength: o.maxLength,
    ...method,
    gradientCheckpointing: o.gradientCheckpointing,
    chunkTokens: o.chunkTokens ?? 0,
    maxPromptLength: method.data === 'sequences' ? 0 : o.maxPromptLength,
    nprocPerNode: o.nprocPerNode,
    zeroStage: o.zeroStage as 0 | 1 | 2 | 3,
    shardReference: o.shardReference,
    gradAccumulation: o.gradAccumulation,
    bucketBytes: o.bucketMb * 2 ** 20,
    gradOverlap: o.gradOverlap,
    device: o.device === 'cpu' ? 'cpu' : 'cuda',
    // The runtime is host memory: it shares a CPU run's RSS, not a GPU's memory.
    runtimeBytes: o.device === 'cpu' ? measureRuntime() : 0,
  }
  process.stdout.write(formatPlan(planMemory(config, options), options) + '\n')
  return 0
}

// The resident size of this process once libtorch has run an op: the same node, libtorch and
// addon a training process starts from (bench/lora.ts measures its runs from the same point).
function measureRuntime(): number {
  Tensor.zeros([1]).dispose()
  return residentBytes() ?? 0
}

function readJsonObject(file: string): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`--model ${file}: not a readable JSON file (${(e as Error).message})`, { cause: e })
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new EdpoInputError(`--model ${file}: expected a JSON object`)
  return json as Record<string, unknown>
}

/** What the 'gradient buckets' row counts: what a rank holds beside its gradients during the backward. */
function bucketNote(zero: number, overlap: boolean, accumulating: boolean): string {
  if (zero === 3) return 'during the backward: the full gradients of the unit reduce-scattering and the one before it'
  if (zero < 2 || accumulating) return overlap ? "during the backward: one bucket's flattened copy" : 'none: reduced after the backward, in place'
  return overlap
    ? 'during the backward: the buckets reducing onto their owners, and the one filling'
    : 'during the backward: every other gradient, until the sync (--no-grad-overlap)'
}

/** The plan as a table, one row per holder of memory. */
export function formatPlan(p: MemoryPlan, o: PlanOptions): string {
  const { loraR, dtype, nprocPerNode: n, zeroStage: zero } = o
  const overlap = o.gradOverlap ?? true
  const accumulating = (o.gradAccumulation ?? 1) > 1
  const what = loraR !== undefined ? `LoRA r=${loraR}` : 'full fine-tuning'
  const m = (x: number) => `${(x / 1e6).toFixed(1)}M`
  const over = ` sharded over ${n}`
  const z3 = zero === 3
  const referenceNote =
    p.reference === 0
      ? loraR !== undefined
        ? 'the base with adapters off: no copy'
        : 'none'
      : z3 && (o.shardReference ?? true)
        ? `a frozen copy of the weights,${over}`
        : 'a frozen copy of the weights'
  const gradientNote = zero < 2 ? '' : zero === 2 && accumulating ? ', whole: the earlier micro-batches accumulate locally' : `,${over}`
  const rows: [string, number, string][] = [
    ['weights', p.weights, `${m(p.parameters)} parameters in ${dtype}${loraR !== undefined ? ' + fp32 adapters' : ''}${z3 ? `,${over}` : ''}`],
    ['reference', p.reference, referenceNote],
    ...(z3
      ? [['gathered weights', p.gatheredWeights, "the unit computing and the next one (prefetched), or the loss's heads"] as [string, number, string]]
      : []),
    ['gradients', p.gradients, `${m(p.trainableParameters)} trainable${gradientNote}`],
    ...(n > 1 ? [['gradient buckets', p.gradientBuckets, bucketNote(zero, overlap, accumulating)] as [string, number, string]] : []),
    [
      'optimizer state',
      p.optimizer,
      `AdamW m, v${loraR === undefined && (dtype === 'bfloat16' || dtype === 'float16') ? ' + fp32 master' : ''}${zero >= 1 ? `, sharded over ${n}` : ''}`,
    ],
    ['activations', p.activations, 'kept for backward'],
    ['loss logits', p.logitsChunked, `chunked (materialised: ${formatBytes(p.logitsMaterialised)})`],
    ['layer temporaries', p.layerTemporaries, "the forward beside the kept activations (the reference's layer, attention scores)"],
  ]
  const lines = [`${what}, ${n} device${n > 1 ? 's' : ''}${zero > 0 ? `, ZeRO-${zero}` : ''}: per device`]
  for (const [name, bytes, note] of rows) lines.push(`  ${name.padEnd(17)} ${formatBytes(bytes).padStart(11)}   ${note}`)
  lines.push(
    z3
      ? `  ${'peak'.padEnd(17)} ${formatBytes(p.total).padStart(11)}   = weights + reference + optimizer + gradients + gathered weights + max(activations + max(logits, layer temporaries), gradient buckets + 1 layer)`
      : `  ${'peak'.padEnd(17)} ${formatBytes(p.total).padStart(11)}   = weights + reference + optimizer + max(activations + max(logits, layer temporaries), gradients + gradient buckets + 1 layer)`,
  )
  if (p.runtime > 0)
    lines.push(
      `  ${'on CPU'.padEnd(17)} ${formatBytes(p.total + p.runtime).padStart(11)}   = peak + ${formatBytes(p.runtime)} runtime (node, libtorch, edpo: this process's RSS)`,
    )
  return lines.join('\n')
}
