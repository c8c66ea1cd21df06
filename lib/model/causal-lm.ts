// CausalLM: a Hugging Face causal LM (llama, mistral, qwen2, gemma2) loaded from and saved to a
// safetensors checkpoint folder, running on the native runtime (csrc/models).
import { z } from 'zod'

import { EdpoInputError, native } from '../core/errors'
import { type LoraDropoutState, type NativeModel, nativeAddon } from '../core/native'
import type * as generated from '../core/ops-generated'
import { type OpMode, type OpReturn, runOp } from '../core/ops'
import { liveTensorSchema, Tensor, DEVICE_PATTERN } from '../core/tensor'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { loadSafetensorsAsync, saveSafetensors } from '../io'
import { formatZodError } from '../core/validate'
import { CONFIG_FILE, readCheckpointTensors, readConfigJson, writeCheckpoint } from './checkpoint-files'
import { expectedTensors, type ModelConfig, nativeModelConfig, parseModelConfig } from './config'
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  LINEAR_MODULES,
  type LoraOptions,
  type LoraSettings,
  PEFT_PREFIX,
  peftKey,
  readAdapterConfig,
  resolveLora,
  writeAdapterConfig,
} from './lora'

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
  /**
   * Padding-free (TRL's padding_free): the token count of each right-padded row of inputIds. The
   * rows then run packed, without their padding: each attends only to itself, positions restart
   * at 0, and the outputs come back in the padded [B, T] layout (zeros on padding). Replaces
   * attentionMask and positionIds.
   */
  sequenceLengths?: number[]
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

export interface LoadAdapterOptions {
  /** Default true: the adapter trains. false loads it frozen. */
  trainable?: boolean
  /** Replaces adapter_config.json's lora_dropout (a training setting; the weights do not depend on it). */
  dropout?: number
}

export interface SaveAdapterOptions {
  /** adapter_config.json's base_model_name_or_path. Default: the folder the model was loaded from. */
  baseModelNameOrPath?: string
}

export interface SaveOptions {
  /** Shard the weights past this many bytes per file. Default 5 GB. */
  maxShardBytes?: number
}

const fromPretrainedSchema = z
  .object({
    dtype: z.enum(['float32', 'bfloat16', 'float16', 'float64']).optional(),
    device: z.string().regex(DEVICE_PATTERN, "expected 'cpu', 'cuda' or 'cuda:N'").optional(),
    trainable: z.boolean().optional(),
  })
  .strict()
  .optional()
// Live tensors only: a handle-less or disposed Tensor as attentionMask/positionIds was read as "absent".
const tensorSchema = liveTensorSchema
const forwardSchema = z
  .object({
    attentionMask: tensorSchema.optional(),
    positionIds: tensorSchema.optional(),
    grad: z.boolean().optional(),
    sequenceLengths: z.array(z.number().int().positive()).min(1).optional(),
  })
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

/** Drops the handles of a parameter map (they alias the model's tensors: nothing is freed while it lives). */
function disposeAll(tensors: Map<string, Tensor>): void {
  for (const t of tensors.values()) t.dispose()
}

// The native models whose tensors dispose() dropped (a model and its views share one handle).
const RELEASED = new WeakSet<NativeModel>()

export class CausalLM {
  /** config.json as parsed (transformers' defaults filled in). */
  readonly config: ModelConfig
  private readonly handle: NativeModel
  private readonly rawConfig: Record<string, unknown>
  private readonly storedTiedHead: boolean
  private trainingMode = false
  /** The folder the base weights came from (adapter_config.json's base_model_name_or_path). */
  private readonly sourceDir: string | undefined
  private loraSettings: LoraSettings | undefined
  /** > 0 inside withAdaptersDisabled(); a base view (adaptersDisabledView) is always off. */
  private adaptersOff = 0
  private readonly baseView: boolean

  private constructor(
    handle: NativeModel,
    config: ModelConfig,
    rawConfig: Record<string, unknown>,
    storedTiedHead: boolean,
    sourceDir: string | undefined,
    baseView = false,
  ) {
    this.handle = handle
    this.config = config
    this.rawConfig = rawConfig
    this.storedTiedHead = storedTiedHead
    this.sourceDir = sourceDir
    this.baseView = baseView
  }

  /**
   * Loads config.json and the safetensors weights of a Hugging Face checkpoint folder. A PEFT
   * adapter folder (adapter_config.json, no config.json) loads its base_model_name_or_path with
   * the adapter on top (trainable as opts.trainable says).
   */
  static async fromPretrained(dir: string, opts?: FromPretrainedOptions): Promise<CausalLM> {
    const o = parse(fromPretrainedSchema, opts, 'opts')
    if (typeof dir === 'string' && !fs.existsSync(path.join(dir, CONFIG_FILE)) && fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE))) {
      const base = readAdapterConfig(dir).baseModelNameOrPath
      if (base === undefined)
        throw new EdpoInputError(`${path.join(dir, ADAPTER_CONFIG_FILE)}: no base_model_name_or_path; load the base model and call loadAdapter('${dir}')`)
      const model = await CausalLM.fromPretrained(base, { ...o, trainable: false })
      return model.loadAdapter(dir, { trainable: o?.trainable ?? true })
    }
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
    // The model holds its own references. Until a garbage collection these handles would keep the
    // whole weights alive after ZeRO-3 replaces them with shards.
    for (const t of tensors.values()) t.dispose()
    return new CausalLM(handle, config, raw, storedTiedHead, dir)
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

  /**
   * Adds LoRA adapters (PEFT numerics: y = W x + (α/r)·B(A(dropout(x))), A kaiming-uniform, B = 0)
   * to the target projections of every layer and freezes the base. The adapters are fp32 (fp64
   * over an fp64 base) whatever the base dtype.
   */
  addLora(options: LoraOptions): this {
    this.attachLora(resolveLora(options))
    return this
  }

  /** The LoRA settings when the model has adapters. */
  get lora(): Readonly<LoraSettings> | undefined {
    return this.loraSettings
  }

  /**
   * Runs `fn` with the adapters off: forward, generate and the reference forward inside it see the
   * base model (awaits `fn` when it returns a promise). Calls overlapping in time share the switch.
   */
  withAdaptersDisabled<T>(fn: () => T): T {
    if (typeof fn !== 'function') throw new EdpoInputError('withAdaptersDisabled: expected a function')
    this.adaptersOff += 1
    let result: T
    try {
      result = fn()
    } catch (e) {
      this.adaptersOff -= 1
      throw e
    }
    if (result instanceof Promise) return result.finally(() => (this.adaptersOff -= 1)) as T
    this.adaptersOff -= 1
    return result
  }

  /**
   * The same model with its adapters always off, sharing the base weights (no copy) and the
   * train/eval mode: the reference of LoRA preference training.
   * @internal
   */
  adaptersDisabledView(): CausalLM {
    return new CausalLM(this.handle, this.config, this.rawConfig, this.storedTiedHead, this.sourceDir, true)
  }

  /**
   * A second model over the same base weights (no copy), without adapters, in eval mode: e.g. the
   * base plus a frozen starting adapter as a reference.
   * @internal
   */
  sharedBase(): CausalLM {
    return new CausalLM(
      native(() => nativeAddon().modelShareBase(this.handle)),
      this.config,
      this.rawConfig,
      this.storedTiedHead,
      this.sourceDir,
    )
  }

  /** Folds the adapters into the base weights (W ← W + scale·B·A in W's dtype) and removes them. */
  mergeLora(): this {
    if (!this.loraSettings) throw new EdpoInputError('mergeLora: the model has no LoRA adapters')
    native(() => nativeAddon().modelMergeLora(this.handle))
    this.loraSettings = undefined
    return this
  }

  /**
   * Adds the PEFT LoRA adapter saved in `dir` (adapter_config.json + adapter_model.safetensors).
   * Every tensor must match this model's adapter tensors by name and shape.
   */
  async loadAdapter(dir: string, opts?: LoadAdapterOptions): Promise<this> {
    if (typeof dir !== 'string' || dir === '') throw new EdpoInputError('loadAdapter: expected an adapter folder path')
    const saved0 = readAdapterConfig(dir).settings
    const settings = opts?.dropout === undefined ? saved0 : resolveLora({ ...saved0, dropout: opts.dropout }, undefined, 'loadAdapter')
    const file = path.join(dir, ADAPTER_WEIGHTS_FILE)
    if (!fs.existsSync(file)) throw new EdpoInputError(`${dir}: no ${ADAPTER_WEIGHTS_FILE}`)
    const saved = await loadSafetensorsAsync(file)
    let own = new Map<string, Tensor>()
    try {
      this.attachLora(settings)
      own = this.loraParameters()
      for (const [key, t] of Object.entries(saved)) {
        const into = own.get(key)
        // PEFT also saves under the adapter's name (….lora_A.default.weight) in some versions.
        if (!into)
          throw new EdpoInputError(
            `${file}: tensor '${key}' has no place in this model (its adapter tensors are ${PEFT_PREFIX}model.layers.<0..${this.config.num_hidden_layers - 1}>.<module>.lora_A/lora_B.weight for ${settings.targetModules.join(', ')}): an adapter for another architecture?`,
          )
        if (t.shape.join(',') !== into.shape.join(','))
          throw new EdpoInputError(
            `${file}: tensor '${key}' has shape [${t.shape.join(', ')}], this model's is [${into.shape.join(', ')}]: an adapter for another architecture?`,
          )
      }
      for (const key of own.keys()) if (!(key in saved)) throw new EdpoInputError(`${file}: tensor '${key}' is missing`)
      for (const [key, into] of own) into.copyInPlace(saved[key]!).dispose()
      if (opts?.trainable === false) for (const t of own.values()) t.requiresGrad = false
    } catch (e) {
      if (this.loraSettings) this.dropFailedLora()
      throw e
    } finally {
      for (const t of Object.values(saved)) t.dispose()
      disposeAll(own)
    }
    return this
  }

  /** Writes the adapters as a PEFT adapter folder: adapter_config.json and adapter_model.safetensors. */
  async saveAdapter(dir: string, opts?: SaveAdapterOptions): Promise<void> {
    if (typeof dir !== 'string' || dir === '') throw new EdpoInputError('saveAdapter: expected a folder path')
    if (!this.loraSettings) throw new EdpoInputError('saveAdapter: the model has no LoRA adapters')
    fs.mkdirSync(dir, { recursive: true })
    const adapters = this.loraParameters()
    saveSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), Object.fromEntries(adapters), { format: 'pt' })
    disposeAll(adapters)
    writeAdapterConfig(dir, this.loraSettings, opts?.baseModelNameOrPath ?? (this.sourceDir ? path.resolve(this.sourceDir) : null))
  }

  /** The live adapter tensors under their PEFT keys (base_model.model.<module path>.lora_A.weight …). */
  loraParameters(): Map<string, Tensor> {
    const { names, tensors } = native(() => nativeAddon().modelLoraParameters(this.handle))
    return new Map(names.map((n, i) => [peftKey(n), new Tensor(tensors[i]!)]))
  }

  /** What an optimizer trains: the adapters when there are any, else every parameter. */
  trainableParameters(): Map<string, Tensor> {
    return this.loraSettings ? this.loraParameters() : this.namedParameters()
  }

  /**
   * The LoRA dropout masks' seed and the training forwards that drew masks so far; a resumed run
   * restores both to draw the masks the uninterrupted run would have drawn.
   * @internal
   */
  loraDropoutState(set?: LoraDropoutState): LoraDropoutState {
    return native(() => nativeAddon().modelLoraDropoutState(this.handle, set))
  }

  private attachLora(s: LoraSettings): void {
    if (this.baseView) throw new EdpoInputError('addLora: this is a view of a model with its adapters off')
    if (this.loraSettings) throw new EdpoInputError('addLora: the model already has LoRA adapters (mergeLora() first to stack another)')
    const params = this.namedParameters()
    const dtype = params.get('model.embed_tokens.weight')!.dtype === 'float64' ? 'float64' : 'float32'
    disposeAll(params)
    const slots = s.targetModules.map((m) => LINEAR_MODULES[m])
    native(() =>
      nativeAddon().modelAddLora(this.handle, { r: s.r, alpha: s.alpha, dropout: s.dropout, useRslora: s.useRslora, slots, initSeed: s.seed, dtype }),
    )
    this.loraSettings = s
  }

  // A loadAdapter that failed after attaching leaves no adapter behind: B ← 0, then the merge
  // adds exactly nothing to the base.
  private dropFailedLora(): void {
    const adapters = this.loraParameters()
    for (const [key, t] of adapters) {
      t.requiresGrad = false
      if (key.endsWith('lora_B.weight')) t.mulInPlace(0).dispose()
    }
    disposeAll(adapters)
    this.mergeLora()
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

  /** A frozen deep copy (no grad, eval mode): the reference model. Adapters are not copied. */
  clone(): CausalLM {
    return new CausalLM(
      native(() => nativeAddon().modelClone(this.handle)),
      this.config,
      this.rawConfig,
      this.storedTiedHead,
      this.sourceDir,
    )
  }

  /**
   * Frees the model's weights, adapters and shards now, rather than when the garbage collector
   * finds its last handle. Views of it (adaptersDisabledView, the LoRA reference) share them and
   * are disposed with it; a second call does nothing. Parameter tensors taken from it before
   * (namedParameters) keep their own storage until they are disposed too. Any later use of the
   * model is an error. Not while an async call on the model runs.
   */
  dispose(): void {
    if (RELEASED.has(this.handle)) return
    native(() => nativeAddon().modelRelease(this.handle))
    RELEASED.add(this.handle)
  }

  /** Whether dispose() ran on this model or on a view that shares its weights. */
  get disposed(): boolean {
    return RELEASED.has(this.handle)
  }

  /** @internal ZeRO-3 (lib/distributed/zero3.ts): the native model the process group shards and gathers. */
  get nativeHandle(): NativeModel {
    return this.handle
  }

  /** @internal What save() writes beside the weights: config.json, and whether a tied head is stored as lm_head.weight too. */
  checkpointLayout(dtype: string): { config: Record<string, unknown>; storedTiedHead: boolean } {
    return { config: { ...this.rawConfig, torch_dtype: dtype }, storedTiedHead: this.storedTiedHead }
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
    // The handles alias the live weights: dropped now, they hold nothing once the model is disposed.
    for (const [, t] of params) t.dispose()
  }

  private generateArgs(inputIds: Tensor, opts: GenerateOptions): generated.ModelGenerateArgs<Tensor> {
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
      adapters: this.adaptersOn(),
    }
  }

  // The one forward call, in either mode; `logits: false` skips the lm_head.
  private runForward<M extends OpMode>(inputIds: Tensor, opts: ForwardOptions | undefined, logits: boolean, mode: M): OpReturn<'modelForward', M> {
    const ids = parse(tensorSchema, inputIds, 'inputIds')
    const o = parse(forwardSchema, opts, 'opts')
    const args = {
      model: this.handle,
      inputIds: ids,
      attentionMask: o?.attentionMask,
      positionIds: o?.positionIds,
      logits,
      grad: o?.grad ?? true,
      sequenceLengths: o?.sequenceLengths ?? [],
      adapters: this.adaptersOn(),
    }
    return runOp('modelForward', args, mode)
  }

  private adaptersOn(): boolean {
    return !this.baseView && this.adaptersOff === 0
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
