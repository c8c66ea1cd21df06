// LoRA in a training run: the adapters a run trains (fresh from --lora-* or from --adapter, or the
// checkpoint's when resuming), the reference they imply, and what a checkpoint saves of them.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'
import type { CausalLM } from '../model'
import { ADAPTER_CONFIG_FILE, type LoraNames, type LoraSettings, readAdapterConfig, resolveLora } from '../model/lora'
import type { LoraConfig } from './lora-options'

/** Beside the adapter in a checkpoint: what an exact resume needs besides the weights. */
export const LORA_STATE_FILE = 'lora_state.json'

const FLAGS: LoraNames = {
  r: '--lora-r',
  alpha: '--lora-alpha',
  dropout: '--lora-dropout',
  targetModules: '--lora-target-modules',
  useRslora: '--use-rslora',
  seed: '--seed',
}

/** The LoRA settings of the run's flags (targets may also be written comma-separated). */
export function loraSettingsOf(c: LoraConfig & { seed: number }): LoraSettings {
  const targets = c.loraTargetModules?.flatMap((t) => t.split(',')).filter((t) => t !== '')
  return resolveLora(
    {
      r: c.loraR!,
      alpha: c.loraAlpha,
      dropout: c.loraDropout,
      targetModules: targets?.length === 1 && targets[0] === 'all-linear' ? 'all-linear' : targets,
      useRslora: c.useRslora,
      seed: c.seed,
    },
    FLAGS,
    'LoRA',
  )
}

// --adapter brings its own settings: flags given beside it must agree with adapter_config.json
// (but --lora-dropout may replace its dropout).
function adapterSettings(c: LoraConfig & { seed: number }): LoraSettings {
  const saved = readAdapterConfig(c.adapter!).settings
  const given = c.loraR === undefined ? undefined : loraSettingsOf(c)
  if (given) {
    const file = path.join(c.adapter!, ADAPTER_CONFIG_FILE)
    // Dropout is a training setting, not part of the weights: --lora-dropout may replace it.
    const pairs: [keyof LoraSettings, string][] = [
      ['r', 'r'],
      ['alpha', 'lora_alpha'],
      ['targetModules', 'target_modules'],
      ['useRslora', 'use_rslora'],
    ]
    for (const [key, field] of pairs)
      if (JSON.stringify(given[key]) !== JSON.stringify(saved[key]))
        throw new EdpoInputError(
          `${FLAGS[key]} ${JSON.stringify(given[key])} differs from ${file}'s ${field} ${JSON.stringify(saved[key])}: leave it out to use the adapter's`,
        )
  } else
    for (const key of ['loraAlpha', 'loraTargetModules', 'useRslora'] as const)
      if (c[key] !== undefined)
        throw new EdpoInputError(
          `--${key.replace(/[A-Z]/g, (x) => '-' + x.toLowerCase())}: --adapter ${c.adapter} brings its own settings (adapter_config.json)`,
        )
  return saved
}

/**
 * Puts the run's adapters on `model` (its base frozen): the resumed checkpoint's, or --adapter's,
 * or fresh ones from the flags. A resumed run also continues the dropout masks where it stopped.
 */
export async function attachTrainedLora(model: CausalLM, c: LoraConfig & { seed: number }, resumedDir: string | undefined): Promise<void> {
  if (resumedDir !== undefined) {
    await model.loadAdapter(resumedDir)
    model.loraDropoutState(readLoraState(resumedDir))
    return
  }
  if (c.adapter !== undefined) {
    adapterSettings(c)
    await model.loadAdapter(c.adapter, { dropout: c.loraDropout })
    model.loraDropoutState({ seed: c.seed, forwards: 0 })
  } else model.addLora(loraSettingsOf(c))
}

/**
 * The reference of LoRA preference training, without a copy of the base: the policy with its
 * adapters off, or, when the run started from --adapter, the base plus that adapter frozen (the
 * model the run started from, so the first step's loss is ln 2 either way).
 */
export async function loraReference(policy: CausalLM, c: LoraConfig): Promise<CausalLM> {
  if (c.adapter === undefined) return policy.adaptersDisabledView()
  const reference = policy.sharedBase()
  await reference.loadAdapter(c.adapter, { trainable: false })
  return reference.eval()
}

/** A checkpoint's model files: the PEFT adapter folder (and lora_state.json) with LoRA, else the full model. */
export async function saveTrainedModel(model: CausalLM, dir: string, baseModel: string): Promise<void> {
  if (!model.lora) return model.save(dir)
  await model.saveAdapter(dir, { baseModelNameOrPath: path.resolve(baseModel) })
  const { seed, forwards } = model.loraDropoutState()
  fs.writeFileSync(path.join(dir, LORA_STATE_FILE), JSON.stringify({ dropout_seed: seed, dropout_forwards: forwards }) + '\n')
}

function readLoraState(dir: string): { seed: number; forwards: number } {
  const file = path.join(dir, LORA_STATE_FILE)
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`, { cause: e })
  }
  const o = (json ?? {}) as { dropout_seed?: unknown; dropout_forwards?: unknown }
  const count = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new EdpoInputError(`${file}: ${key} must be an integer >= 0`)
    return v
  }
  return { seed: count(o.dropout_seed, 'dropout_seed'), forwards: count(o.dropout_forwards, 'dropout_forwards') }
}
