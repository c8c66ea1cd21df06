// LoRA settings and PEFT's adapter folder: adapter_config.json (PEFT's LoraConfig fields) and
// adapter_model.safetensors keyed base_model.model.<module path>.lora_A.weight / .lora_B.weight,
// so `PeftModel.from_pretrained(base, dir)` loads what edpo saves and edpo loads what PEFT saves.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'

export const ADAPTER_CONFIG_FILE = 'adapter_config.json'
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors'
/** PEFT's prefix of every saved adapter tensor (PeftModel → LoraModel → the HF model). */
export const PEFT_PREFIX = 'base_model.model.'

/** A decoder layer's linear module, by the short name PEFT's target_modules uses. */
export type LinearModule = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj'

/** The linear modules of a decoder layer and their paths inside it. @internal */
export const LINEAR_MODULES: Readonly<Record<LinearModule, string>> = {
  q_proj: 'self_attn.q_proj',
  k_proj: 'self_attn.k_proj',
  v_proj: 'self_attn.v_proj',
  o_proj: 'self_attn.o_proj',
  gate_proj: 'mlp.gate_proj',
  up_proj: 'mlp.up_proj',
  down_proj: 'mlp.down_proj',
}
const LINEAR_NAMES = Object.keys(LINEAR_MODULES) as LinearModule[]

/** LoRA options (PEFT's LoraConfig names in camelCase). */
export interface LoraOptions {
  /** Rank r > 0. */
  r: number
  /** α; the update is scaled by α/r (α/√r with useRslora). Default 32 (TRL's ModelConfig). */
  alpha?: number
  /** Dropout on the adapters' input in training forwards, in [0, 1). Default 0.05 (TRL's ModelConfig). */
  dropout?: number
  /** Module names (q_proj, …, down_proj) or 'all-linear'. Default: all seven projections. */
  targetModules?: readonly string[] | 'all-linear'
  /** Rank-stabilised scaling α/√r. Default false. */
  useRslora?: boolean
  /** Seed of A's kaiming-uniform initialisation. Default 0. */
  seed?: number
}

/** LoRA settings with defaults applied and checked. */
export interface LoraSettings {
  r: number
  alpha: number
  dropout: number
  targetModules: LinearModule[]
  useRslora: boolean
  seed: number
}

/** How the user wrote each setting, for messages: flags on the CLI, field names in the API. */
export type LoraNames = Record<'r' | 'alpha' | 'dropout' | 'targetModules' | 'useRslora' | 'seed', string>
export const LORA_API_NAMES: LoraNames = { r: 'r', alpha: 'alpha', dropout: 'dropout', targetModules: 'targetModules', useRslora: 'useRslora', seed: 'seed' }

/** Checks `o` and fills in the defaults; errors name the setting as `names` says the user wrote it. */
export function resolveLora(o: LoraOptions, names: LoraNames = LORA_API_NAMES, where = 'addLora'): LoraSettings {
  const fail = (name: keyof LoraNames, what: string, got: unknown): never => {
    throw new EdpoInputError(`${where}: ${names[name]}: ${what}, got ${JSON.stringify(got)}`)
  }
  if (typeof o !== 'object' || o === null) throw new EdpoInputError(`${where}: expected LoRA options {r, alpha, …}`)
  const known = new Set(Object.keys(LORA_API_NAMES))
  for (const k of Object.keys(o)) if (!known.has(k)) throw new EdpoInputError(`${where}: unknown LoRA option '${k}' (known: ${[...known].join(', ')})`)
  if (!Number.isInteger(o.r) || o.r <= 0) fail('r', 'the rank must be an integer > 0', o.r)
  const alpha = o.alpha ?? 32
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail('alpha', 'must be a finite number', alpha)
  const dropout = o.dropout ?? 0.05
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) fail('dropout', 'must lie in [0, 1)', dropout)
  const useRslora = o.useRslora ?? false
  if (typeof useRslora !== 'boolean') fail('useRslora', 'expected true or false', useRslora)
  const seed = o.seed ?? 0
  if (!Number.isSafeInteger(seed) || seed < 0) fail('seed', 'expected an integer >= 0', seed)
  return { r: o.r, alpha, dropout, targetModules: resolveTargets(o.targetModules, names.targetModules, where), useRslora, seed }
}

/** PEFT's target_modules as names of this architecture's linear modules ('all-linear': every one but lm_head). */
export function resolveTargets(targets: readonly string[] | string | undefined, typed: string, where: string): LinearModule[] {
  if (targets === undefined || targets === 'all-linear') return [...LINEAR_NAMES]
  const list = typeof targets === 'string' ? [targets] : targets
  if (!Array.isArray(list) || list.length === 0) throw new EdpoInputError(`${where}: ${typed}: expected module names or 'all-linear'`)
  const out: LinearModule[] = []
  for (const name of list) {
    // PEFT also matches a module by the end of its path (self_attn.q_proj): take the last part.
    const short = typeof name === 'string' ? name.split('.').at(-1)! : ''
    if (!(LINEAR_NAMES as string[]).includes(short))
      throw new EdpoInputError(
        `${where}: ${typed}: '${String(name)}' is not a linear module of this model; its linear modules are ${LINEAR_NAMES.join(', ')} (or 'all-linear')`,
      )
    if (!out.includes(short as LinearModule)) out.push(short as LinearModule)
  }
  // Module order of the layer, as PEFT's saved state dict lists them.
  return LINEAR_NAMES.filter((n) => out.includes(n))
}

/** Scale of the adapter term: α/r, or α/√r with rsLoRA (PEFT's LoraLayer.scaling). */
export function loraScale(s: Pick<LoraSettings, 'r' | 'alpha' | 'useRslora'>): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r
}

/** adapter_config.json as PEFT writes it for a LoRA on a causal LM (the fields PeftConfig reads). */
export function adapterConfigJson(s: LoraSettings, baseModelNameOrPath: string | null): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModelNameOrPath,
    r: s.r,
    lora_alpha: s.alpha,
    lora_dropout: s.dropout,
    target_modules: s.targetModules,
    bias: 'none',
    use_rslora: s.useRslora,
    use_dora: false,
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  }
}

export function writeAdapterConfig(dir: string, s: LoraSettings, baseModelNameOrPath: string | null): void {
  fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(adapterConfigJson(s, baseModelNameOrPath), null, 2) + '\n')
}

/** What an adapter folder's config says: its LoRA settings and the base it was trained on. */
export interface AdapterConfig {
  settings: LoraSettings
  baseModelNameOrPath: string | undefined
}

// PEFT options that change the forward or the weights' layout: edpo runs only their default.
const DEFAULT_ONLY: Record<string, (v: unknown) => boolean> = {
  bias: (v) => v === undefined || v === 'none',
  use_dora: (v) => v === undefined || v === false,
  fan_in_fan_out: (v) => v === undefined || v === false,
  modules_to_save: (v) => v === undefined || v === null || (Array.isArray(v) && v.length === 0),
  layers_to_transform: (v) => v === undefined || v === null,
  layer_replication: (v) => v === undefined || v === null,
  rank_pattern: (v) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0),
  alpha_pattern: (v) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0),
  lora_bias: (v) => v === undefined || v === false,
  trainable_token_indices: (v) => v === undefined || v === null,
}

/** Reads and checks `dir`/adapter_config.json (a LoRA for a causal LM). */
export function readAdapterConfig(dir: string): AdapterConfig {
  const file = path.join(dir, ADAPTER_CONFIG_FILE)
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`, { cause: e })
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new EdpoInputError(`${file}: expected a JSON object`)
  const c = json as Record<string, unknown>
  if (c.peft_type !== 'LORA') throw new EdpoInputError(`${file}: peft_type is ${JSON.stringify(c.peft_type)}; edpo loads LORA adapters only`)
  if (c.task_type !== undefined && c.task_type !== null && c.task_type !== 'CAUSAL_LM')
    throw new EdpoInputError(`${file}: task_type is ${JSON.stringify(c.task_type)}; expected CAUSAL_LM`)
  for (const [key, isDefault] of Object.entries(DEFAULT_ONLY))
    if (!isDefault(c[key])) throw new EdpoInputError(`${file}: ${key} is ${JSON.stringify(c[key])}; edpo supports only PEFT's default for it`)
  const targets = c.target_modules
  if (typeof targets === 'string' && targets !== 'all-linear')
    throw new EdpoInputError(`${file}: target_modules is the pattern ${JSON.stringify(targets)}; edpo needs a list of module names or 'all-linear'`)
  const settings = resolveLora(
    {
      r: c.r as number,
      alpha: (c.lora_alpha ?? 8) as number,
      dropout: (c.lora_dropout ?? 0) as number,
      targetModules: targets as string[] | 'all-linear',
      useRslora: (c.use_rslora ?? false) as boolean,
    },
    { r: 'r', alpha: 'lora_alpha', dropout: 'lora_dropout', targetModules: 'target_modules', useRslora: 'use_rslora', seed: 'seed' },
    file,
  )
  const base = c.base_model_name_or_path
  return { settings, baseModelNameOrPath: typeof base === 'string' && base !== '' ? base : undefined }
}

/** PEFT's key of an adapter tensor named by the native model ('model.layers.0.self_attn.q_proj.lora_A.weight'). */
export const peftKey = (name: string) => PEFT_PREFIX + name
