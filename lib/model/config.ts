// config.json of the supported Hugging Face causal LMs: one zod schema per model_type with the
// real field names and transformers' defaults, the tensors a checkpoint must hold, and the
// resolved form the native forward reads.
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import type { NativeModelConfig } from '../core/native'
import { formatZodError } from '../core/validate'

const int = z.number().int()
const positive = int.positive()
const tokenIds = z
  .union([int, z.array(int)])
  .nullable()
  .optional()

const ropeScaling = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    factor: z.number().positive().optional(),
    low_freq_factor: z.number().positive().optional(),
    high_freq_factor: z.number().positive().optional(),
    original_max_position_embeddings: positive.optional(),
  })
  .nullable()
  .default(null)

// Fields every supported model_type shares (defaults differ per type; see below).
function base(d: { vocab: number; hidden: number; intermediate: number; layers: number; heads: number; maxPos: number; tie: boolean }) {
  return {
    vocab_size: positive.default(d.vocab),
    hidden_size: positive.default(d.hidden),
    intermediate_size: positive.default(d.intermediate),
    num_hidden_layers: positive.default(d.layers),
    num_attention_heads: positive.default(d.heads),
    num_key_value_heads: positive.nullable().optional(),
    head_dim: positive.nullable().optional(),
    max_position_embeddings: positive.default(d.maxPos),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: ropeScaling,
    tie_word_embeddings: z.boolean().default(d.tie),
    bos_token_id: tokenIds,
    eos_token_id: tokenIds,
    pad_token_id: tokenIds,
    torch_dtype: z.string().nullable().optional(),
  }
}

const silu = z.literal('silu', { message: "only 'silu' is supported for this model_type" })

export const llamaConfigSchema = z.object({
  model_type: z.literal('llama'),
  ...base({ vocab: 32000, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, maxPos: 2048, tie: false }),
  hidden_act: silu.default('silu'),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
})

export const mistralConfigSchema = z.object({
  model_type: z.literal('mistral'),
  ...base({ vocab: 32000, hidden: 4096, intermediate: 14336, layers: 32, heads: 32, maxPos: 131072, tie: false }),
  num_key_value_heads: positive.nullable().default(8),
  hidden_act: silu.default('silu'),
  sliding_window: positive.nullable().default(4096),
})

export const qwen2ConfigSchema = z.object({
  model_type: z.literal('qwen2'),
  ...base({ vocab: 151936, hidden: 4096, intermediate: 22016, layers: 32, heads: 32, maxPos: 32768, tie: false }),
  hidden_act: silu.default('silu'),
  use_sliding_window: z.boolean().default(false),
  sliding_window: positive.nullable().default(4096),
  max_window_layers: int.nonnegative().default(28),
})

export const gemma2ConfigSchema = z.object({
  model_type: z.literal('gemma2'),
  ...base({ vocab: 256000, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, maxPos: 8192, tie: true }),
  num_key_value_heads: positive.nullable().default(4),
  head_dim: positive.default(256),
  hidden_activation: z.literal('gelu_pytorch_tanh', { message: "only 'gelu_pytorch_tanh' is supported" }).nullable().optional(),
  hidden_act: z.string().optional(), // transformers' Gemma2 ignores it; hidden_activation decides
  attention_bias: z.boolean().default(false),
  query_pre_attn_scalar: z.number().positive().default(256),
  sliding_window: positive.nullable().default(4096),
  attn_logit_softcapping: z.number().positive().nullable().default(50),
  final_logit_softcapping: z.number().positive().nullable().default(30),
})

export type LlamaConfig = z.infer<typeof llamaConfigSchema>
export type MistralConfig = z.infer<typeof mistralConfigSchema>
export type Qwen2Config = z.infer<typeof qwen2ConfigSchema>
export type Gemma2Config = z.infer<typeof gemma2ConfigSchema>
/** config.json as parsed, with transformers' defaults filled in. */
export type ModelConfig = LlamaConfig | MistralConfig | Qwen2Config | Gemma2Config

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gemma2'] as const
const schemas = { llama: llamaConfigSchema, mistral: mistralConfigSchema, qwen2: qwen2ConfigSchema, gemma2: gemma2ConfigSchema }

/** Parses a config.json object; `where` names the file in error messages. */
export function parseModelConfig(raw: unknown, where = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new EdpoInputError(`${where}: expected a JSON object`)
  const type = (raw as { model_type?: unknown }).model_type
  // Own keys only: 'toString', '__proto__' or 'constructor' are inherited, not schemas.
  if (typeof type !== 'string' || !Object.hasOwn(schemas, type))
    throw new EdpoInputError(`${where}: model_type ${JSON.stringify(type)} is not supported (expected one of ${SUPPORTED_MODEL_TYPES.join(', ')})`)
  const r = schemas[type as keyof typeof schemas].safeParse(raw)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, where))
  const c = r.data
  const heads = c.num_attention_heads
  const kv = c.num_key_value_heads ?? heads
  if (heads % kv !== 0) throw new EdpoInputError(`${where}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kv})`)
  if (c.head_dim == null && c.hidden_size % heads !== 0)
    throw new EdpoInputError(`${where}: hidden_size (${c.hidden_size}) must be a multiple of num_attention_heads (${heads}) when head_dim is absent`)
  if (headDim(c) % 2 !== 0) throw new EdpoInputError(`${where}: head_dim (${headDim(c)}) must be even for RoPE`)
  ropeSettings(c, where)
  return c
}

export function headDim(c: ModelConfig): number {
  return c.head_dim ?? c.hidden_size / c.num_attention_heads
}

function ropeSettings(
  c: ModelConfig,
  where: string,
): Pick<NativeModelConfig, 'ropeType' | 'ropeFactor' | 'ropeLowFreqFactor' | 'ropeHighFreqFactor' | 'ropeOriginalMaxPositions'> {
  const s = c.rope_scaling
  const type = s?.rope_type ?? s?.type ?? 'default'
  const out = { ropeType: type, ropeFactor: 1, ropeLowFreqFactor: 1, ropeHighFreqFactor: 4, ropeOriginalMaxPositions: 8192 }
  if (!s || type === 'default') return { ...out, ropeType: 'default' }
  if (s.factor === undefined) throw new EdpoInputError(`${where}: rope_scaling.factor is required for rope_type '${type}'`)
  if (type === 'linear') return { ...out, ropeFactor: s.factor }
  if (type === 'llama3') {
    const low = s.low_freq_factor,
      high = s.high_freq_factor,
      orig = s.original_max_position_embeddings
    if (low === undefined || high === undefined || orig === undefined || !(high > low))
      throw new EdpoInputError(`${where}: rope_scaling of type 'llama3' needs low_freq_factor < high_freq_factor and original_max_position_embeddings`)
    return { ropeType: 'llama3', ropeFactor: s.factor, ropeLowFreqFactor: low, ropeHighFreqFactor: high, ropeOriginalMaxPositions: orig }
  }
  throw new EdpoInputError(`${where}: rope_scaling type '${type}' is not supported (expected default, linear or llama3)`)
}

/** The config as the native forward reads it. */
export function nativeModelConfig(c: ModelConfig): NativeModelConfig {
  const hd = headDim(c)
  const gemma = c.model_type === 'gemma2'
  const windows = Array.from({ length: c.num_hidden_layers }, (_, i) => {
    if (c.model_type === 'mistral') return c.sliding_window ?? 0
    if (c.model_type === 'qwen2') return c.use_sliding_window && i >= c.max_window_layers ? (c.sliding_window ?? 0) : 0
    if (c.model_type === 'gemma2') return i % 2 === 0 ? (c.sliding_window ?? 0) : 0 // even layers slide
    return 0
  })
  return {
    modelType: c.model_type,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: hd,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    tieWordEmbeddings: c.tie_word_embeddings,
    geluTanh: gemma,
    gemmaNorm: gemma,
    attnScale: gemma ? c.query_pre_attn_scalar ** -0.5 : hd ** -0.5,
    attnSoftcap: gemma ? (c.attn_logit_softcapping ?? 0) : 0,
    finalSoftcap: gemma ? (c.final_logit_softcapping ?? 0) : 0,
    layerWindows: windows,
    ...ropeSettings(c, 'config.json'),
  }
}

/** Every tensor a checkpoint of this config holds, in HF names and shapes (lm_head only when untied). */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const H = c.hidden_size,
    I = c.intermediate_size,
    hd = headDim(c)
  const q = c.num_attention_heads * hd,
    kv = (c.num_key_value_heads ?? c.num_attention_heads) * hd
  const qkvBias = c.model_type === 'qwen2' || ((c.model_type === 'llama' || c.model_type === 'gemma2') && c.attention_bias)
  const oBias = (c.model_type === 'llama' || c.model_type === 'gemma2') && c.attention_bias
  const mlpBias = c.model_type === 'llama' && c.mlp_bias
  const out = new Map<string, number[]>([['model.embed_tokens.weight', [c.vocab_size, H]]])
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`
    out.set(`${p}input_layernorm.weight`, [H])
    out.set(`${p}post_attention_layernorm.weight`, [H])
    if (c.model_type === 'gemma2') {
      out.set(`${p}pre_feedforward_layernorm.weight`, [H])
      out.set(`${p}post_feedforward_layernorm.weight`, [H])
    }
    for (const [name, rows] of [
      ['q_proj', q],
      ['k_proj', kv],
      ['v_proj', kv],
    ] as const) {
      out.set(`${p}self_attn.${name}.weight`, [rows, H])
      if (qkvBias) out.set(`${p}self_attn.${name}.bias`, [rows])
    }
    out.set(`${p}self_attn.o_proj.weight`, [H, q])
    if (oBias) out.set(`${p}self_attn.o_proj.bias`, [H])
    out.set(`${p}mlp.gate_proj.weight`, [I, H])
    out.set(`${p}mlp.up_proj.weight`, [I, H])
    out.set(`${p}mlp.down_proj.weight`, [H, I])
    if (mlpBias) {
      out.set(`${p}mlp.gate_proj.bias`, [I])
      out.set(`${p}mlp.up_proj.bias`, [I])
      out.set(`${p}mlp.down_proj.bias`, [H])
    }
  }
  out.set('model.norm.weight', [H])
  if (!c.tie_word_embeddings) out.set('lm_head.weight', [c.vocab_size, H])
  return out
}
