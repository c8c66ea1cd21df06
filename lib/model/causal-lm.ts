// CausalLM: a Hugging Face causal LM (llama, mistral, qwen2, gemma2) loaded from and saved to a
// safetensors checkpoint folder, running on the native runtime (csrc/models).
import { z } from 'zod'

import { EdpoInputError, native } from '../errors'
import { type NativeModel, nativeAddon } from '../native'
import type { ModelGenerateArgs } from '../ops-generated'
import { type OpMode, type OpReturn, runOp } from '../ops'
import { liveTensorSchema, Tensor } from '../tensor'
import { formatZodError } from '../validate'
import { readCheckpointTensors, readConfigJson, writeCheckpoint } from './checkpoint-files'
import { expectedTensors, type ModelConfig, nativeModelConfig, parseModelConfig } from './config'

export type ModelDtype = 'float32' | 'bfloat16' | 'float16' | 'float64'

export interface FromPretrainedOptions {
  /** Parameter dtype; checkpoints in fp32/bf16/fp16 are converted. Default: float32. float64 is for tests. */
  dtype?: ModelDtype
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string
  /** Default true: parameters require grad. false loads a frozen model (a reference) without a copy. */
  trainable?: boolean
}

export interface ForwardOptions {
  /** [B, T], 1 = token, 0 = padding. */
  attentionMask?: Tensor
  /** [B, T] int64; default 0..T-1. */
  positionIds?: Tensor
  /** Default true: build an autograd graph when parameters require grad. false: inference only. */
  grad?: boolean
}

export interface ForwardResult {
  logits: Tensor // [B, T, V]
  hidden: Tensor // [B, T, H], after the final norm
}

export interface GenerateOptions {
  maxNewTokens: number
  /** 0 or undefined: greedy. */
  temperature?: number
  topP?: number
  topK?: number
  /** Seeds a private generator: the same seed gives the same tokens. */
  seed?: number
  eosTokenId?: number | number[]
  /** [B, T] with zeros on the left for left-padded prompts. */
  attentionMask?: Tensor
  /**
   * Per-row prompt lengths for right-padded inputIds (row b's prompt is its first lengths[b]
   * tokens). The prompts are left-aligned into a left-padded batch, which the result holds.
   */
  lengths?: number[]
}

export interface SaveOptions {
  /** Shard the weights past this many bytes per file. Default 5 GB. */
  maxShardBytes?: number
}

const fromPretrainedSchema = z
  .object({
    dtype: z.enum(['float32', 'bfloat16', 'float16', 'float64']).optional(),
    device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, "expected 'cpu', 'cuda' or 'cuda:N'").optional(),
    trainable: z.boolean().optional(),
  })
  .strict()
  .optional()
// Live tensors only: a handle-less or disposed Tensor as attentionMask/positionIds was read as "absent".
const tensorSchema = liveTensorSchema
const forwardSchema = z
  .object({ attentionMask: tensorSchema.optional(), positionIds: tensorSchema.optional(), grad: z.boolean().optional() })
  .strict()
  .optional()
const tokenId = z.number().int().nonnegative()
const generateSchema = z
  .object({
    maxNewTokens: z.number().int().nonnegative(),
    temperature: z.number().nonnegative().optional(),
    topP: z.number().gt(0).lte(1).optional(),
    topK: z.number().int().nonnegative().optional(),
    seed: z.number().int().nonnegative().optional(),
    eosTokenId: z.union([tokenId, z.array(tokenId)]).optional(),
    attentionMask: tensorSchema.optional(),
    lengths: z.array(z.number().int().positive()).optional(),
  })
  .strict()
  .refine((o) => !(o.lengths && o.attentionMask), { message: 'give attentionMask or lengths, not both' })
const saveSchema = z.object({ maxShardBytes: z.number().int().positive().optional() }).strict().optional()

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, what))
  return r.data
}

export class CausalLM {
  /** config.json as parsed (transformers' defaults filled in). */
  readonly config: ModelConfig
  private readonly handle: NativeModel
  private readonly rawConfig: Record<string, unknown>
  private readonly storedTiedHead: boolean
  private trainingMode = false

  private constructor(handle: NativeModel, config: ModelConfig, rawConfig: Record<string, unknown>, storedTiedHead: boolean) {
    this.handle = handle
    this.config = config
    this.rawConfig = rawConfig
    this.storedTiedHead = storedTiedHead
  }

  /** Loads config.json and the safetensors weights of a Hugging Face checkpoint folder. */
  static async fromPretrained(dir: string, opts?: FromPretrainedOptions): Promise<CausalLM> {
    const o = parse(fromPretrainedSchema, opts, 'opts')
    const raw = readConfigJson(dir)
    const config = parseModelConfig(raw, `${dir}/config.json`)
    const dtype = o?.dtype ?? 'float32'
    const device = o?.device ?? 'cpu'
    // Converted batch by batch as read: one copy of the weights alive, not two.
    const { tensors, storedTiedHead } = await readCheckpointTensors(dir, expectedTensors(config), config.model_type, (t) => {
      if (t.dtype === dtype && device === 'cpu') return t
      const moved = t.to(dtype, o?.device)
      t.dispose()
      return moved
    })
    const names = [...tensors.keys()]
    const params = names.map((n) => {
      const t = tensors.get(n)!
      t.requiresGrad = o?.trainable ?? true
      return t.handle
    })
    const handle = native(() => nativeAddon().createModel(nativeModelConfig(config), names, params))
    return new CausalLM(handle, config, raw, storedTiedHead)
  }

  /** Logits and final hidden states; builds an autograd graph when parameters require grad. */
  forward(inputIds: Tensor, opts?: ForwardOptions): ForwardResult {
    return withLogits(this.runForward(inputIds, opts, true, 'sync'))
  }

  /** forward() on the thread pool. */
  async forwardAsync(inputIds: Tensor, opts?: ForwardOptions): Promise<ForwardResult> {
    return withLogits(await this.runForward(inputIds, opts, true, 'async'))
  }

  /**
   * Final hidden states [B, T, H] only (no lm_head), on the thread pool: what the trainer's chunked
   * loss consumes. `grad: false` runs without an autograd graph (evaluation, the reference).
   */
  async forwardHiddenAsync(inputIds: Tensor, opts?: ForwardOptions): Promise<Tensor> {
    return (await this.runForward(inputIds, opts, false, 'async')).hidden
  }

  /** The output projection: weight [V, H] (the embedding when tied) and Gemma-2's final logit soft-cap (0: none). */
  lmHead(): { weight: Tensor; bias?: Tensor; finalLogitSoftcap: number } {
    const r = native(() => nativeAddon().modelLmHead(this.handle))
    return { weight: new Tensor(r.weight), finalLogitSoftcap: r.finalLogitSoftcap }
  }

  /** Samples (or greedily decodes) up to maxNewTokens per row; returns [B, T + n] int64. */
  generate(inputIds: Tensor, opts: GenerateOptions): Tensor {
    return runOp('modelGenerate', this.generateArgs(inputIds, opts), 'sync').tokens
  }

  /** generate() on the thread pool. */
  async generateAsync(inputIds: Tensor, opts: GenerateOptions): Promise<Tensor> {
    return (await runOp('modelGenerate', this.generateArgs(inputIds, opts), 'async')).tokens
  }

  /** The live parameters by HF name (a tied lm_head is the embedding and not listed). */
  namedParameters(): Map<string, Tensor> {
    const { names, tensors } = native(() => nativeAddon().modelParameters(this.handle))
    return new Map(names.map((n, i) => [n, new Tensor(tensors[i]!)]))
  }

  get training(): boolean {
    return this.trainingMode
  }
  train(): this {
    this.trainingMode = true
    native(() => nativeAddon().modelSetTraining(this.handle, true))
    return this
  }
  eval(): this {
    this.trainingMode = false
    native(() => nativeAddon().modelSetTraining(this.handle, false))
    return this
  }
  /** Recompute each decoder layer in backward instead of keeping its activations (train mode only). */
  setGradientCheckpointing(enabled: boolean): this {
    if (typeof enabled !== 'boolean') throw new EdpoInputError('setGradientCheckpointing: expected a boolean')
    native(() => nativeAddon().modelSetGradientCheckpointing(this.handle, enabled))
    return this
  }

  /** A frozen deep copy (no grad, eval mode): the reference model. */
  clone(): CausalLM {
    return new CausalLM(native(() => nativeAddon().modelClone(this.handle)), this.config, this.rawConfig, this.storedTiedHead)
  }

  /** Writes config.json and the weights (sharded past opts.maxShardBytes) in Hugging Face layout. */
  async save(dir: string, opts?: SaveOptions): Promise<void> {
    const o = parse(saveSchema, opts, 'opts')
    if (typeof dir !== 'string' || dir === '') throw new EdpoInputError('dir: expected a folder path')
    const params = [...this.namedParameters()]
    const embed = params.find(([n]) => n === 'model.embed_tokens.weight')![1]
    if (this.storedTiedHead) params.push(['lm_head.weight', embed])
    const config = { ...this.rawConfig, torch_dtype: embed.dtype }
    writeCheckpoint(dir, params, config, o?.maxShardBytes ?? 5_000_000_000)
  }

  private generateArgs(inputIds: Tensor, opts: GenerateOptions): ModelGenerateArgs {
    let ids = parse(tensorSchema, inputIds, 'inputIds')
    const o = parse(generateSchema, opts, 'opts')
    let mask = o.attentionMask
    if (o.lengths) [ids, mask] = leftAlign(ids, o.lengths)
    const eos = o.eosTokenId === undefined ? [] : Array.isArray(o.eosTokenId) ? o.eosTokenId : [o.eosTokenId]
    return {
      model: this.handle,
      inputIds: ids,
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature ?? 0,
      topP: o.topP ?? 1,
      topK: o.topK ?? 0,
      seed: o.seed,
      eosTokenIds: eos,
      attentionMask: mask,
    }
  }

  // The one forward call, in either mode; `logits: false` skips the lm_head.
  private runForward<M extends OpMode>(inputIds: Tensor, opts: ForwardOptions | undefined, logits: boolean, mode: M): OpReturn<'modelForward', M> {
    const ids = parse(tensorSchema, inputIds, 'inputIds')
    const o = parse(forwardSchema, opts, 'opts')
    const args = { model: this.handle, inputIds: ids, attentionMask: o?.attentionMask, positionIds: o?.positionIds, logits, grad: o?.grad ?? true }
    return runOp('modelForward', args, mode)
  }
}

// Right-padded ids [B, T] with per-row lengths → left-padded ids and their attention mask.
function leftAlign(ids: Tensor, lengths: number[]): [Tensor, Tensor] {
  const shape = ids.shape
  if (shape.length !== 2 || ids.dtype !== 'int64') throw new EdpoInputError(`inputIds: expected int64 [B, T], got ${ids.dtype} [${shape.join(', ')}]`)
  const [B, T] = shape as [number, number]
  if (lengths.length !== B || lengths.some((n) => n > T))
    throw new EdpoInputError(`opts.lengths: expected ${B} lengths in [1, ${T}], got [${lengths.join(', ')}]`)
  const src = ids.to('cpu').toArray() as BigInt64Array
  const out = new BigInt64Array(B * T)
  const mask = new BigInt64Array(B * T)
  lengths.forEach((n, b) => {
    out.set(src.subarray(b * T, b * T + n), b * T + T - n)
    mask.fill(1n, b * T + T - n, (b + 1) * T)
  })
  return [Tensor.from(out, [B, T], { device: ids.device }), Tensor.from(mask, [B, T], { device: ids.device })]
}

function withLogits(r: { logits?: Tensor; hidden: Tensor }): ForwardResult {
  return { logits: r.logits!, hidden: r.hidden }
}
