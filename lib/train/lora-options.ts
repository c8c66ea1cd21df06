// The LoRA rows of the option table (PEFT / TRL ModelConfig names: lora_r, lora_alpha, lora_dropout,
// lora_target_modules, use_rslora) and their cross-checks, shared by `edpo train` and `edpo sft`.
// LoRA is on when --lora-r or --adapter is given; the other LoRA options need one of them.
import { z } from 'zod'

import type { OptionSpec } from './option-table'

export const LORA_OPTIONS = {
  loraR: {
    schema: z.number().int().positive().optional(),
    kind: 'integer',
    help: 'train LoRA adapters of rank r instead of the whole model; the reference is the base with the adapters off (no copy)',
  },
  loraAlpha: { schema: z.number().optional(), kind: 'number', help: 'LoRA α: the update is scaled by α/r (default 32)' },
  loraDropout: { schema: z.number().min(0).lt(1).optional(), kind: 'number', help: "LoRA dropout on the adapters' input in training (default 0.05)" },
  loraTargetModules: {
    schema: z.array(z.string().min(1)).min(1).optional(),
    kind: 'strings',
    help: 'modules given adapters (default q_proj k_proj v_proj o_proj gate_proj up_proj down_proj), or all-linear',
  },
  useRslora: { schema: z.boolean().optional(), kind: 'boolean', help: 'rank-stabilised LoRA: scale by α/√r' },
  adapter: {
    schema: z.string().min(1).optional(),
    kind: 'string',
    help: 'start from this PEFT LoRA adapter folder (e.g. an SFT LoRA); train: the reference is the base plus this adapter, frozen',
  },
} satisfies Record<string, OptionSpec>

export interface LoraConfig {
  loraR?: number
  loraAlpha?: number
  loraDropout?: number
  loraTargetModules?: string[]
  useRslora?: boolean
  adapter?: string
}

/** Whether a run trains LoRA adapters. */
export function usesLora(c: LoraConfig): boolean {
  return c.loraR !== undefined || c.adapter !== undefined
}

const SUB_OPTIONS = [
  ['loraAlpha', '--lora-alpha'],
  ['loraDropout', '--lora-dropout'],
  ['loraTargetModules', '--lora-target-modules'],
  ['useRslora', '--use-rslora'],
] as const

/** `schema` plus: LoRA sub-options need --lora-r or --adapter (nothing is silently ignored). */
export function withLoraChecks<T extends z.ZodType<LoraConfig>>(schema: T) {
  return schema.superRefine((c, ctx) => {
    if (usesLora(c)) return
    for (const [key, flag] of SUB_OPTIONS)
      if (c[key] !== undefined) ctx.addIssue({ code: 'custom', message: `${flag} needs --lora-r (or --adapter): LoRA is off without it`, path: [key] })
  })
}
