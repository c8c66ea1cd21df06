// `edpo sft` settings: the options every run has (RUN_OPTIONS, lib/train/config.ts) with SFT's
// own defaults (methods/sft.ts), so flags, config files and --help share the descriptions of `edpo train`.
import type { z } from 'zod'

import { RUN_OPTIONS } from './run-options'
import { withLoraChecks } from './lora-options'
import { SFT_OPTIONS_OWN } from './methods/sft'
import { type OptionTable, optionsObject } from './option-table'

export const SFT_OPTIONS = {
  ...RUN_OPTIONS,
  model: {
    ...RUN_OPTIONS.model,
    help: 'the model to fine-tune: a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a Hub id org/name[@revision]',
  },
  data: { ...RUN_OPTIONS.data, help: 'training rows {prompt, completion} (or {prompt, chosen}): JSONL, JSON or Parquet files or globs' },
  ...SFT_OPTIONS_OWN,
} satisfies OptionTable

export const sftConfigSchema = withLoraChecks(
  optionsObject(SFT_OPTIONS).refine((c) => c.evalData === undefined || c.evalFraction === undefined, {
    message: 'give evalData or evalFraction, not both',
    path: ['evalFraction'],
  }),
)

export type SftConfig = z.infer<typeof sftConfigSchema>
export type SftConfigInput = z.input<typeof sftConfigSchema>
