// Per-device memory of a training run, from config.json alone (`edpo plan`): weights, the reference,
// gradients, AdamW state, activations kept for backward and the loss's logits, for full fine-tuning
// or LoRA, on 1 or N data-parallel devices with DeepSpeed's ZeRO stage meanings (1 shards the fp32
// master weights and both moments, 2 also the gradients, as edpo's GradReducer runs it: each rank
// keeps its own share and the buckets in flight; 3 also the weights and, by default, the
// reference, each gathered one unit at a time: see gatherUnits). Activations are counted from the
// tensors this implementation's layer (csrc/models/layers.cc) keeps for backward.
import { chunkTokensDefault } from '../core/ops'
import { expectedTensors, type ModelConfig } from './config'
import { LINEAR_MODULES, type LinearModule } from './lora'

export type PlanDtype = 'float32' | 'bfloat16' | 'float16' | 'float64'

export interface PlanOptions {
  dtype: PlanDtype
  /** LoRA rank; undefined: full fine-tuning. */
  loraR?: number
  loraTargetModules?: readonly LinearModule[]
  /** Preference pairs (two sequences each) or, for SFT, sequences per micro-batch and device. */
  batchSize: number
  maxLength: number
  /** What one example is: a preference pair (chosen and rejected: two sequences) or one sequence (SFT). */
  data: 'pairs' | 'sequences'
  /** Whether the method runs a reference forward (the method registry says: lib/train/methods/index.ts). */
  reference: boolean
  /** The loss makes the head's gradient in its forward (the fused ε-DPO op: ε-DPO, DPO, TR-DPO; the registry says). */
  headGradientInForward?: boolean
  gradientCheckpointing: boolean
  /** Completion tokens per chunk of the fused lm_head + loss; 0: the op's default for V and the device (ops.chunkTokensDefault). */
  chunkTokens: number
  /** Prompt tokens per sequence: the loss's logits cover only the rest (the completion). */
  maxPromptLength: number
  nprocPerNode: number
  zeroStage: 0 | 1 | 2 | 3
  /** ZeRO-3: the frozen reference sharded like the policy (default true); false: a whole copy per device. */
  shardReference?: boolean
  /** Micro-batches per optimizer step (default 1): at ZeRO-2 the earlier ones build every gradient locally. */
  gradAccumulation?: number
  /** Several devices: bytes per gradient bucket (default 25 MiB, --bucket-mb). */
  bucketBytes?: number
  /** Several devices: gradients reduced during the backward (default true, --grad-overlap). */
  gradOverlap?: boolean
  /** Resident bytes of the process before any model is loaded (node, libtorch, edpo), measured by the caller; 0 if unknown. */
  runtimeBytes?: number
  /** 'cpu' (default) or 'cuda': on the CPU, fp32/fp64 layers run edpo's fused RMSNorm, RoPE and SwiGLU, which keep less; on a GPU attention runs SDPA, which keeps no scores. */
  device?: 'cpu' | 'cuda'
}

/** Bytes per device, by what holds them. */
export interface MemoryPlan {
  parameters: number
  trainableParameters: number
  weights: number
  reference: number
  /** ZeRO-3: the gathered weights held at once (the unit computing and the one prefetched, or the loss's heads); 0 below stage 3. */
  gatheredWeights: number
  /** This device's gradients: all of them, or at ZeRO-2 (one micro-batch per step) and ZeRO-3 its own share. */
  gradients: number
  /**
   * Several devices, during the backward: gradient bytes beside `gradients`. ZeRO-2 with overlap:
   * the buckets in flight (two non-owned buckets reducing, plus the one filling and its flattened
   * copy, where one tensor larger than a bucket is a bucket); without overlap every non-owned
   * gradient until the sync. ZeRO-0/1 (and ZeRO-2 with gradient accumulation): one bucket's
   * flattened copy. ZeRO-3: the full gradients of the unit being reduce-scattered and the one
   * still in flight.
   */
  gradientBuckets: number
  optimizer: number
  activations: number
  /** The loss's logits as edpo computes them (chunked) … */
  logitsChunked: number
  /** … and what materialising [tokens, V] logits would take. */
  logitsMaterialised: number
  /** The forward's working set beside the kept activations: the reference's layer (no grad) or the policy's attention temporaries. */
  layerTemporaries: number
  /**
   * The step's peak of tensor bytes: weights + reference + optimizer + max(activations +
   * max(logits, layer temporaries), gradients + gradient buckets + one layer's activations); at
   * ZeRO-3 the gradient shards and the gathered weights are counted outside the max (they live
   * beside the activations).
   */
  total: number
  /** The process before training (PlanOptions.runtimeBytes): a CPU run's resident peak is runtime + total. */
  runtime: number
}

const BYTES: Record<PlanDtype, number> = { float32: 4, bfloat16: 2, float16: 2, float64: 8 }

/** Elements the trainer's layer keeps for backward per token (E = activation bytes, acc = 4 or 8). */
function layerActivationBytes(
  c: ModelConfig,
  E: number,
  acc: number,
  tokensPerSeq: number,
  lora: { r: number; inputs: number; targets: number } | undefined,
  fused: boolean,
  sdpa: boolean,
): number {
  const H = c.hidden_size,
    I = c.intermediate_size
  const hd = c.head_dim ?? H / c.num_attention_heads
  const q = c.num_attention_heads * hd,
    kv = (c.num_key_value_heads ?? c.num_attention_heads) * hd
  const rep = q / kv
  // Two RMSNorms: the fp32 input (x itself in fp32) and, when the norm's weight trains, the normed
  // output in the activations' dtype that the multiplication by the weight keeps for its gradient
  // (LoRA freezes the norms: autograd then keeps only the weight).
  // The fused CPU kernels (csrc/models/layer_kernels.cc) keep the input (or the residual sum) and
  // one rstd per token, and their output is a new tensor that the next projections keep.
  const norms = fused ? 2 * (2 * E * H + acc) : 2 * (acc * H + (lora ? 0 : E * H))
  // Attention: q and k out of their projections and their rotated halves (RoPE), q after RoPE,
  // k and v after repeat_kv (copies when heads share a kv head), and o_proj's input (a copy).
  // Fused RoPE keeps only the shared cos/sin tables, not q, k and their rotated halves.
  const attention = fused ? (rep > 1 ? E * 4 * q : E * (2 * q + 2 * kv)) : rep > 1 ? E * (6 * q + 2 * kv) : E * (4 * q + 4 * kv)
  // The softmax output (kept by softmax and by the matmul with v), and its cast when E ≠ acc.
  // SDPA keeps its output (o_proj's input, above) and a per-row log-sum-exp instead.
  const scores = sdpa ? c.num_attention_heads * acc : scoreElements(c, tokensPerSeq) * (acc + (E === acc ? 0 : E))
  // SwiGLU: gate, silu(gate), up and their product.
  // (the fused CPU SwiGLU keeps gate and up only).
  const mlp = E * (fused ? 2 : 4) * I
  // LoRA: each adapted input cast to the fp32 adapters (a new tensor only over a reduced base),
  // plus each A output.
  const adapters = lora ? (E === 4 ? 0 : lora.inputs * 4) + lora.r * 4 * lora.targets : 0
  return norms + attention + scores + mlp + adapters
}

/** The lm_head's gradient as the fused op accumulates it: [V, H] (and the bias, if any) in fp32, or fp64 for fp64. */
function headGradientBytes(shapes: Map<string, number[]>, E: number, acc: number): number {
  const head = shapes.get('lm_head.weight') ?? shapes.get('model.embed_tokens.weight')!
  const bias = shapes.get('lm_head.bias')?.[0] ?? 0
  return (head[0]! * head[1]! + bias) * Math.max(E, acc)
}

/** Attention score elements per token of one layer: heads × key positions. */
function scoreElements(c: ModelConfig, tokensPerSeq: number): number {
  return c.num_attention_heads * tokensPerSeq
}

export function planMemory(c: ModelConfig, o: PlanOptions): MemoryPlan {
  const E = BYTES[o.dtype]
  const acc = o.dtype === 'float64' ? 8 : 4
  const reduced = E < 4
  const shapes = expectedTensors(c)
  let parameters = 0
  for (const s of shapes.values()) parameters += s.reduce((a, b) => a * b, 1)

  // LoRA: r·(in + out) per adapted projection and layer, fp32.
  let loraParams = 0
  let loraInputs = 0
  if (o.loraR !== undefined) {
    const targets = o.loraTargetModules ?? (Object.keys(LINEAR_MODULES) as LinearModule[])
    for (const m of targets) {
      const s = shapes.get(`model.layers.0.${LINEAR_MODULES[m]}.weight`)!
      loraParams += o.loraR * (s[0]! + s[1]!)
      loraInputs += s[1]!
    }
    loraParams *= c.num_hidden_layers
  }
  const lora = o.loraR !== undefined
  const trainable = lora ? loraParams : parameters
  const N = o.nprocPerNode
  if (o.zeroStage === 3 && lora) throw new RangeError('ZeRO-3 shards full fine-tuning only: LoRA has no stage-3 plan')
  const zero3 = o.zeroStage === 3 && N > 1
  // ZeRO-2 reduces only in the last micro-batch's backward: the earlier ones build every gradient.
  const accumulating = (o.gradAccumulation ?? 1) > 1
  const shard = (stage: number) => (o.zeroStage >= stage && !(stage === 2 && o.zeroStage === 2 && accumulating) ? N : 1)
  const units = gatherUnits(c, shapes)
  // ZeRO-3: each unit is flattened and padded to a multiple of N; a device keeps 1/N of each.
  const shardElements = units.reduce((a, u) => a + Math.ceil(u / N), 0)
  // The unit computing and the next one, whose gather is prefetched: the largest adjacent pair;
  // during the loss, the policy's head and (sharded) the reference's, or in the backward the
  // policy's head beside the last layer it prefetches.
  const adjacentPair = units.reduce((m, u, i) => Math.max(m, u + (units[i + 1] ?? 0)), 0)
  const head = c.tie_word_embeddings ? units[0]! : units[units.length - 1]!
  const referenceGathered = o.reference && (o.shardReference ?? true)
  const gathered = Math.max(adjacentPair, head * (referenceGathered ? 2 : 1), head + units[1]!)

  const weights = zero3 ? shardElements * E : parameters * E + (lora ? loraParams * 4 : 0)
  // Full FT keeps a frozen copy of the base; LoRA's reference is the base with adapters off; a reference-free method has none.
  const reference = o.reference && !lora ? (zero3 && (o.shardReference ?? true) ? shardElements : parameters) * E : 0
  const gatheredWeights = zero3 ? gathered * E : 0
  const gradBytes = lora ? 4 : E
  const gradients = zero3 ? shardElements * E : (trainable * gradBytes) / shard(2)
  // ZeRO-3: the full gradients reduce-scattering, at most --bucket-mb of them (but always one
  // unit), beside the unit's gradient the backward is assembling.
  const largestUnit = Math.max(...units)
  const gradientBuckets = zero3
    ? Math.min(units.reduce((a, u) => a + u, 0) * E, Math.max(o.bucketBytes ?? 25 * 2 ** 20, largestUnit * E)) + largestUnit * E
    : N > 1
      ? inFlightGradientBytes(o, shard(2) > 1, trainable * gradBytes, gradients, largestTrainable(shapes, lora, o) * gradBytes)
      : 0
  // AdamW: m and v in fp32 (the param dtype for fp32/fp64), plus an fp32 master copy of reduced-precision params.
  const stateBytes = lora ? 8 : reduced ? 4 + 4 + 4 : 2 * E
  const optimizer = zero3 ? shardElements * stateBytes : (trainable * stateBytes) / shard(1)

  const sequences = o.data === 'pairs' ? 2 * o.batchSize : o.batchSize
  const tokens = sequences * o.maxLength
  // model_uses_fused_layer_kernels: CPU tensors other than bf16/fp16.
  const fused = (o.device ?? 'cpu') === 'cpu' && E >= 4
  // csrc/models/layers.cc use_sdpa: a GPU build (on libtorch >= 2.1, as every CUDA build edpo ships)
  // runs attention through SDPA unless the scores are soft-capped (Gemma-2) or fp64.
  const sdpa = o.device === 'cuda' && E < 8 && !(c.model_type === 'gemma2' && (c.attn_logit_softcapping ?? 0) > 0)
  const perLayer =
    layerActivationBytes(
      c,
      E,
      acc,
      o.maxLength,
      lora ? { r: o.loraR!, inputs: loraInputs, targets: (o.loraTargetModules ?? Object.keys(LINEAR_MODULES)).length } : undefined,
      fused,
      sdpa,
    ) * tokens
  const layerInputs = E * c.hidden_size * tokens * c.num_hidden_layers
  // The fused ε-DPO op's gradients, made in its forward: the head's (fp32 for a reduced head, as
  // csrc/ops/chunked_linear.cc accumulates it; none for LoRA, whose head is frozen) and the
  // policy's final hidden states'.
  const headGradient = lora ? 0 : headGradientBytes(shapes, E, acc)
  const forwardGradients = o.headGradientInForward ? headGradient + E * c.hidden_size * tokens : 0
  // With checkpointing: every layer's input plus one layer recomputed in backward.
  const activations =
    (o.gradientCheckpointing ? layerInputs + perLayer : perLayer * c.num_hidden_layers + layerInputs) +
    // The embedding output and the final hidden states of the policy (and the reference's, no grad).
    E * c.hidden_size * tokens * (o.reference ? 3 : 2) +
    forwardGradients
  // Logits of the completion tokens (prompts assumed to fill maxPromptLength). Materialised, as an
  // eager composition holds them: every row's logits and fp32 log-softmax per model, plus the
  // gradient of the policy's. Chunked (the fused op, csrc/ops/chunked_linear.cc): one chunk of rows
  // holds two [rows, V] tensors in the model's dtype at a time, the policy's logits beside the
  // reference's (dropped after the row pass) or beside their gradient; Gemma-2's final soft-cap
  // adds the two temporaries of its derivative. (Measured on the CPU at V = 128256: 2.0 bytes per
  // logit per E byte, fp32 and bf16.)
  const V = c.vocab_size
  const models = o.reference ? 2 : 1
  const rows = sequences * Math.max(1, o.maxLength - Math.min(o.maxPromptLength, o.maxLength - 1))
  // The chunked op's own default for this vocabulary and device.
  const rowsPerChunk = o.chunkTokens > 0 ? o.chunkTokens : chunkTokensDefault(V, o.device ?? 'cpu')
  const logitsMaterialised = rows * V * ((E + acc) * models + acc)
  const softcapped = c.model_type === 'gemma2' && (c.final_logit_softcapping ?? 0) > 0
  const logitsChunked = Math.min(rows, rowsPerChunk) * V * E * (softcapped ? 4 : 2)
  // Inside a layer's forward the eager attention (csrc/models/layers.cc attend) holds the scaled
  // scores and the masked scores (fp32, plus the scores' own dtype when E ≠ acc) beside the
  // softmax until its matmul with v returns: two or three score-sized temporaries that no layer keeps.
  // SDPA holds none of them; with padding it takes an additive mask in the activations' dtype.
  const scoreTemporaries = sdpa ? o.maxLength * tokens * E : scoreElements(c, o.maxLength) * tokens * (2 * acc + (E === acc ? 0 : E))
  // After the policy's forward has kept every layer's activations, the reference's forward runs
  // without grad: it holds one layer's tensors at a time (the same set the policy's layer keeps,
  // the softmax included) plus those temporaries. Without a reference only the policy's own temporaries.
  const layerTemporaries = o.reference ? perLayer + scoreTemporaries : scoreTemporaries
  // Backward frees each layer's activations as it fills the gradients: the step's peak is the
  // larger of (activations + the loss's or the forward's working set) and (gradients + one layer's activations).
  const layerShare = o.gradientCheckpointing ? perLayer : activations / c.num_hidden_layers
  // The forward's working set; the gradients of earlier micro-batches live beside it when accumulating.
  const forward = activations + Math.max(logitsChunked, layerTemporaries) + (accumulating ? gradients : 0)
  // The backward: the gradients (full at its end), the buckets in flight and one layer's
  // activations. (Its start, where the forward's activations are still alive, is the forward's term.)
  const backward = gradients + gradientBuckets + layerShare
  // ZeRO-3 adds the gathered units (the loss's heads, or the unit computing and the one prefetched).
  const total = weights + reference + optimizer + gatheredWeights + Math.max(forward, backward)
  const runtime = o.runtimeBytes ?? 0
  return {
    parameters,
    trainableParameters: trainable,
    weights,
    reference,
    gatheredWeights,
    gradients,
    gradientBuckets,
    optimizer,
    activations,
    logitsChunked,
    logitsMaterialised,
    layerTemporaries,
    total,
    runtime,
  }
}

/** Elements of the largest trainable tensor: a bucket of its own when it exceeds the bucket size. */
function largestTrainable(shapes: Map<string, number[]>, lora: boolean, o: PlanOptions): number {
  if (lora) {
    // Each adapter pair is r × in and out × r; the largest is the widest projection's.
    let widest = 0
    for (const s of shapes.values()) if (s.length === 2) widest = Math.max(widest, s[0]!, s[1]!)
    return o.loraR! * widest
  }
  let largest = 0
  for (const s of shapes.values())
    largest = Math.max(
      largest,
      s.reduce((a, b) => a * b, 1),
    )
  return largest
}

/**
 * ZeRO-3's units, in the forward's order, as element counts: the embedding, each decoder layer,
 * the final norm and (untied) the head. Each is one flat tensor per rank (csrc/dist/layer_shards.cc).
 */
export function gatherUnits(c: ModelConfig, shapes: Map<string, number[]> = expectedTensors(c)): number[] {
  const units = new Map<string, number>()
  for (const [name, s] of shapes) {
    const key = /^model\.layers\.(\d+)\./.exec(name)?.[0] ?? name
    units.set(key, (units.get(key) ?? 0) + s.reduce((a, b) => a * b, 1))
  }
  const order = [
    'model.embed_tokens.weight',
    ...Array.from({ length: c.num_hidden_layers }, (_, l) => `model.layers.${l}.`),
    'model.norm.weight',
    'lm_head.weight',
  ]
  return order.filter((k) => units.has(k)).map((k) => units.get(k)!)
}

/** MemoryPlan.gradientBuckets below ZeRO-3: of `full` gradient bytes this device keeps `kept`; `largest` is the largest gradient's. */
function inFlightGradientBytes(o: PlanOptions, reducedOntoOwners: boolean, full: number, kept: number, largest: number): number {
  const bucket = o.bucketBytes ?? 25 * 2 ** 20
  const nonOwned = full - kept
  if (!reducedOntoOwners) return (o.gradOverlap ?? true) ? Math.min(bucket, full) : 0
  if (!(o.gradOverlap ?? true)) return nonOwned
  return Math.min(nonOwned, 2 * bucket + Math.max(largest, 2 * bucket))
}

/** Bytes as GiB / MiB text. */
export function formatBytes(n: number): string {
  if (n === 0) return '0'
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`
  return `${(n / 2 ** 10).toFixed(1)} KiB`
}
