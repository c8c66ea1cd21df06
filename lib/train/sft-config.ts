// `edpo sft` settings: the subset of the training option table (lib/train/config.ts) that
// supervised fine-tuning uses, with SFT's own defaults, so flags, config files and --help share
// the descriptions of `edpo train`.
import { z } from 'zod'

import { type OptionSpec, TRAIN_OPTIONS } from './config'
import { withLoraChecks } from './lora-options'

const SHARED = [
  'model', 'data', 'evalData', 'evalFraction', 'out', 'overwriteOutputDir', 'lrScheduler', 'warmupRatio', 'weightDecay', 'adamBeta1', 'adamBeta2',
  'adamEpsilon', 'maxGradNorm', 'batchSize', 'gradAccumulation', 'epochs', 'maxSteps', 'maxLength', 'maxPromptLength', 'maxCompletionLength', 'truncationMode', 'dtype',
  'device', 'gradientCheckpointing', 'groupByLength', 'seed', 'profileSteps', 'logEvery', 'evalEvery', 'saveEvery', 'keepLast', 'zeroStage', 'skipInvalid',
  'loraR', 'loraAlpha', 'loraDropout', 'loraTargetModules', 'useRslora', 'adapter',
  'dataSplit', 'evalDataSplit', 'dataConfig', 'modelRevision', 'reportTo', 'loggingDir', 'runName',
] as const

const shared = Object.fromEntries(SHARED.map((k) => [k, TRAIN_OPTIONS[k]])) as { [K in (typeof SHARED)[number]]: (typeof TRAIN_OPTIONS)[K] }

export const SFT_OPTIONS = {
  ...shared,
  model: { ...TRAIN_OPTIONS.model, help: 'the model to fine-tune: a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a Hub id org/name[@revision]' },
  data: { ...TRAIN_OPTIONS.data, help: 'training rows {prompt, completion} (or {prompt, chosen}): JSONL, JSON or Parquet files or globs' },
  learningRate: { schema: z.number().positive().default(1e-5), kind: 'number', help: 'peak learning rate' },
} satisfies Record<string, OptionSpec>

export const sftConfigSchema = withLoraChecks(
  z
    .object(Object.fromEntries(Object.entries(SFT_OPTIONS).map(([k, v]) => [k, v.schema])) as { [K in keyof typeof SFT_OPTIONS]: (typeof SFT_OPTIONS)[K]['schema'] })
    .strict()
    .refine((c) => c.evalData === undefined || c.evalFraction === undefined, { message: 'give evalData or evalFraction, not both', path: ['evalFraction'] }),
)

export type SftConfig = z.infer<typeof sftConfigSchema>
export type SftConfigInput = z.input<typeof sftConfigSchema>
