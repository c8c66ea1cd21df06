// The one description of a training run's settings: each option's zod schema, default and help
// text. The Trainer's options, `edpo train --flags`, config files (YAML/JSON) and `--help` are all
// derived from this table.
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { LORA_OPTIONS, usesLora, withLoraChecks } from './lora-options'
import { DEVICE_PATTERN } from '../core/tensor'
import { parseStepRange } from './step-profiler'
import { validRevision } from '../hub/hub-id'
import { stepsOrFraction } from './step-fractions'

export interface OptionSpec {
  schema: z.ZodType
  help: string
  /** For CLI parsing: how a flag's text becomes a value. */
  kind: 'string' | 'number' | 'integer' | 'boolean' | 'strings'
  /** TRL / Hugging Face TrainingArguments names of the same setting (snake_case), accepted as
   *  config keys and as flags (kebab-case). */
  aliases?: readonly string[]
  /** The training methods that read this option; giving it with another method is an error. */
  methods?: readonly TrainMethod[]
}

export const TRAIN_METHODS = ['epsilon-dpo', 'dpo', 'tr-dpo', 'beta-dpo'] as const
export type TrainMethod = (typeof TRAIN_METHODS)[number]

// Short dtype names as TRL users write them.
const DTYPE_SHORT: Record<string, string> = { bf16: 'bfloat16', fp16: 'float16', fp32: 'float32', fp64: 'float64' }

const positive = z.number().positive()
const nonNegative = z.number().min(0)
const count = z.number().int().positive()

export const TRAIN_OPTIONS = {
  model: {
    aliases: ['model_name_or_path'],
    schema: z.string().min(1),
    kind: 'string',
    help: 'Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or a Hub id org/name[@revision] (the Hub cache first, downloaded when missing)',
  },
  referenceModel: { schema: z.string().min(1).optional(), kind: 'string', help: 'reference model folder or Hub id (default: a frozen copy of --model)' },
  data: {
    aliases: ['dataset_name'],
    schema: z.array(z.string().min(1)).min(1),
    kind: 'strings',
    help: 'training data: JSONL, JSON or Parquet files or globs (repeatable), or a Hub dataset id org/name (see --data-split)',
  },
  evalData: { schema: z.array(z.string().min(1)).min(1).optional(), kind: 'strings', help: 'evaluation data files or globs, or a Hub dataset id' },
  // Hub ids (lib/hub/): these four are used up where the command resolves ids to cache paths.
  dataSplit: {
    aliases: ['dataset_train_split'],
    schema: z.string().regex(/^[\w.-]+$/).optional(),
    kind: 'string',
    help: 'with a Hub dataset id (org/name) in --data: the split to train on (default train)',
  },
  evalDataSplit: {
    aliases: ['dataset_test_split'],
    schema: z.string().regex(/^[\w.-]+$/).optional(),
    kind: 'string',
    help: "with a Hub dataset id: the split to evaluate on, of --eval-data's dataset or, without --eval-data, of --data's (default test)",
  },
  dataConfig: { aliases: ['dataset_config'], schema: z.string().regex(/^[\w.-]+$/).optional(), kind: 'string', help: "with a Hub dataset id: the dataset card's config (or the repo's folder) to read" },
  modelRevision: {
    aliases: ['model_revision'],
    schema: z.string().refine(validRevision, { message: 'expected a branch, tag or commit' }).optional(),
    kind: 'string',
    help: 'with a Hub model id in --model: the branch, tag or commit (default main; org/name@rev also works)',
  },
  evalFraction: { schema: z.number().gt(0).lt(1).optional(), kind: 'number', help: 'hold out this fraction of --data for evaluation' },
  out: { aliases: ['output_dir'], schema: z.string().min(1), kind: 'string', help: 'run folder: metrics.jsonl and checkpoint-<step>/' },
  overwriteOutputDir: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    help: "start over in a non-empty --out: removes an earlier run's metrics.jsonl, invalid-rows.jsonl and checkpoint-<step>/ (other files are kept)",
  },
  method: { schema: z.enum(TRAIN_METHODS).default('epsilon-dpo'), kind: 'string', help: 'epsilon-dpo (default), dpo, tr-dpo or beta-dpo' },
  beta: { schema: positive.default(0.1), kind: 'number', help: 'initial KL coefficient β' },
  epsilon: { methods: ['epsilon-dpo'], schema: z.number().min(0).lt(1).default(0.01), kind: 'number', help: 'ε-DPO perturbation size ε (epsilon-dpo only)' },
  criterionPrecision: { methods: ['epsilon-dpo'],
    schema: z.enum(['fp32', 'bf16']).default('fp32'),
    kind: 'string',
    help: "epsilon-dpo: precision of the step decision; bf16 rounds the mixtures' log-probs and sums as the authors' eager bf16 trainer does (docs/epsilon-dpo.md)",
  },
  betaDpoAlpha: { methods: ['beta-dpo'], schema: z.number().min(0).default(0.6), kind: 'number', help: 'beta-dpo: α, β = β0·(1 + α·(M̄ − M0)) per micro-batch (docs/beta-dpo.md)' },
  betaDpoRho: { methods: ['beta-dpo'], schema: z.number().min(0).lt(1).default(0.2), kind: 'number', help: 'beta-dpo: ρ, the fraction of each micro-batch filtered out' },
  betaDpoMomentum: { methods: ['beta-dpo'], schema: z.number().min(0).lt(1).default(0.9), kind: 'number', help: 'beta-dpo: m, momentum of the margin statistics M0 and σ' },
  labelNoise: { schema: z.number().min(0).max(1).default(0), kind: 'number', help: 'swap chosen and rejected in this fraction of the training pairs (seeded by --seed)' },
  labelSmoothing: { schema: z.number().min(0).max(0.5).default(0), kind: 'number', help: 'conservative label smoothing ℓ' },
  trDpoMode: { methods: ['tr-dpo'], schema: z.enum(['hard', 'soft']).default('soft'), kind: 'string', help: 'tr-dpo: hard copy or soft mix of the policy into the reference' },
  trDpoTau: { methods: ['tr-dpo'], aliases: ['ref_model_sync_steps'], schema: count.default(64), kind: 'integer', help: 'tr-dpo: update the reference every τ optimizer steps' },
  trDpoAlpha: { methods: ['tr-dpo'], aliases: ['ref_model_mixup_alpha'], schema: z.number().min(0).max(1).default(0.6), kind: 'number', help: 'tr-dpo soft: ref ← α·θ + (1−α)·ref' },
  learningRate: { schema: positive.default(5e-7), kind: 'number', help: 'peak learning rate' },
  lrScheduler: { aliases: ['lr_scheduler_type'], schema: z.enum(['cosine', 'linear', 'constant']).default('cosine'), kind: 'string', help: 'learning-rate schedule after warm-up' },
  warmupRatio: { schema: z.number().min(0).max(1).default(0.1), kind: 'number', help: 'fraction of steps of linear warm-up' },
  weightDecay: { schema: nonNegative.default(0), kind: 'number', help: 'AdamW weight decay' },
  adamBeta1: { aliases: ['adam_beta1'], schema: z.number().min(0).lt(1).default(0.9), kind: 'number', help: 'AdamW β1' },
  adamBeta2: { aliases: ['adam_beta2'], schema: z.number().min(0).lt(1).default(0.999), kind: 'number', help: 'AdamW β2' },
  adamEpsilon: { aliases: ['adam_epsilon'], schema: positive.default(1e-8), kind: 'number', help: 'AdamW ε' },
  maxGradNorm: { schema: nonNegative.default(1), kind: 'number', help: 'clip the global gradient norm (0: off)' },
  batchSize: { aliases: ['per_device_train_batch_size'], schema: count.default(8), kind: 'integer', help: 'preference pairs per micro-batch' },
  gradAccumulation: { aliases: ['gradient_accumulation_steps'], schema: count.default(1), kind: 'integer', help: 'micro-batches per optimizer step' },
  epochs: { aliases: ['num_train_epochs'], schema: positive.default(1), kind: 'number', help: 'passes over the data (ignored with --max-steps)' },
  maxSteps: { schema: count.optional(), kind: 'integer', help: 'optimizer steps to run (overrides --epochs)' },
  maxLength: { schema: count.default(1024), kind: 'integer', help: 'tokens per sequence (prompt + completion); keeps the start' },
  maxPromptLength: { schema: count.default(512), kind: 'integer', help: 'prompt tokens; --truncation-mode picks the end kept' },
  maxCompletionLength: { schema: count.optional(), kind: 'integer', help: 'completion tokens (EOS included); keeps the start' },
  truncationMode: {
    schema: z.enum(['keep_end', 'keep_start']).default('keep_end'),
    kind: 'string',
    help: 'which end of a prompt longer than --max-prompt-length is kept',
  },
  dtype: {
    schema: z.preprocess((v) => DTYPE_SHORT[v as string] ?? v, z.enum(['float32', 'bfloat16', 'float16', 'float64'])).default('float32'),
    kind: 'string',
    help: 'model weights dtype, also bf16, fp16, fp32 (bf16 keeps fp32 optimizer state)',
  },
  device: { schema: z.string().regex(DEVICE_PATTERN).default('cpu'), kind: 'string', help: "'cpu', 'cuda' or 'cuda:N'" },
  gradientCheckpointing: { schema: z.boolean().default(false), kind: 'boolean', help: 'recompute each decoder layer in the backward pass' },
  // HF's group_by_length and TRL's padding_free are these options' snake_case names.
  groupByLength: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    help: 'batch examples of similar lengths together (less padding); the order stays shuffled per epoch',
  },
  paddingFree: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    help: 'run the model on the batch without its padding: rows packed back to back, each attending only to itself',
  },
  chunkTokens: { schema: count.optional(), kind: 'integer', help: 'completion tokens per chunk of the fused lm_head + loss' },
  seed: { schema: z.number().int().min(0).default(42), kind: 'integer', help: 'data order seed' },
  profileSteps: {
    schema: z.string().refine((v) => parseStepRange(v) !== undefined, { message: "expected a step or a range of optimizer steps, 'A' or 'A-B' with 1 ≤ A ≤ B" }).optional(),
    kind: 'string',
    help: "profile optimizer steps A-B (e.g. 3-4): time per section of the step and libtorch's profiler trace, in <out>/profile/",
  },
  logEvery: { aliases: ['logging_steps'], schema: stepsOrFraction(1).default(1), kind: 'number', help: "log metrics every N optimizer steps (< 1: that fraction of the run's steps)" },
  evalEvery: { aliases: ['eval_steps'], schema: stepsOrFraction(0).default(0), kind: 'number', help: "evaluate every N steps (0: only at the end; < 1: that fraction of the run's steps)" },
  saveEvery: { aliases: ['save_steps'], schema: stepsOrFraction(0).default(0), kind: 'number', help: "checkpoint every N steps (0: only at the end; < 1: that fraction of the run's steps)" },
  reportTo: {
    aliases: ['report_to'],
    // HF writes a list too: [tensorboard], [] or none.
    schema: z
      .preprocess(
        (v) => (Array.isArray(v) && v.length === 0 ? 'none' : Array.isArray(v) && v.length === 1 ? v[0] : v),
        z.enum(['none', 'tensorboard'], {
          message:
            'edpo writes metrics.jsonl and, with tensorboard, TensorBoard event files; other backends are not supported. Use tensorboard (wandb and others can sync TensorBoard logs, e.g. `wandb sync --sync-tensorboard <dir>`) or none',
        }),
      )
      .default('none'),
    kind: 'string',
    help: 'tensorboard: also write TensorBoard event files (beside metrics.jsonl, or in --logging-dir)',
  },
  loggingDir: { aliases: ['logging_dir'], schema: z.string().min(1).optional(), kind: 'string', help: 'with --report-to tensorboard: the folder of the event files (default: the run folder)' },
  runName: {
    aliases: ['run_name'],
    schema: z.string().regex(/^[\w.@+-]+$/, { message: "letters, digits and . _ - @ + only (it names a folder)" }).optional(),
    kind: 'string',
    help: "a name for the run, stored in its trainer_state.json; with --report-to tensorboard the event files go in <logging dir>/<run name>/",
  },
  keepLast: { aliases: ['save_total_limit'], schema: count.default(2), kind: 'integer', help: 'checkpoints to keep' },
  zeroStage: {
    schema: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
    kind: 'integer',
    help: 'several ranks: 1 shards the AdamW state (fp32 master, m, v) across ranks, 2 also the gradients (DeepSpeed ZeRO)',
  },
  skipInvalid: { schema: z.boolean().default(false), kind: 'boolean', help: 'skip and count invalid rows instead of stopping' },
  dataFormat: {
    schema: z.enum(['auto', 'hh']).default('auto'),
    kind: 'string',
    help: "'hh' reads Anthropic-HH raw transcripts (\\n\\nHuman: … \\n\\nAssistant: …) as turns; 'auto' detects them",
  },
  ...LORA_OPTIONS,
} satisfies Record<string, OptionSpec>

export type TrainOptionName = keyof typeof TRAIN_OPTIONS

/** The command-line flag of an option: learningRate → --learning-rate. */
export const flagName = (name: string): string => '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())

/**
 * Rejects options the user gave that the chosen method never reads (e.g. --epsilon with --method
 * dpo): they would be silently unused. Only keys present in `input` count, not defaults.
 */
export function checkMethodOptions(input: Readonly<Record<string, unknown>>): void {
  const method = input.method ?? 'epsilon-dpo'
  if (!(TRAIN_METHODS as readonly unknown[]).includes(method)) return // the schema names a bad --method
  const unused = Object.entries(TRAIN_OPTIONS as Record<string, OptionSpec>).filter(
    ([name, spec]) => input[name] !== undefined && spec.methods !== undefined && !spec.methods.includes(method as TrainMethod),
  )
  if (unused.length > 0)
    throw new EdpoInputError(
      unused.map(([name, spec]) => `${flagName(name)} applies only to --method ${spec.methods!.join(' or ')}`).join('; ') +
        `; this run's method is ${String(method)}: remove ${unused.length === 1 ? 'it' : 'them'} or change --method`,
    )
}

/** The zod object schema of an option table (strict: unknown keys are errors). */
export function optionsObject<T extends Record<string, OptionSpec>>(table: T) {
  const shape = Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.schema])) as { [K in keyof T]: T[K]['schema'] }
  return z.object(shape).strict()
}

export const trainConfigSchema = withLoraChecks(
  optionsObject(TRAIN_OPTIONS).refine((c) => c.evalData === undefined || c.evalFraction === undefined, {
    message: 'give evalData or evalFraction, not both',
    path: ['evalFraction'],
  }),
).refine((c) => c.method !== 'tr-dpo' || !usesLora(c), {
  message:
    'tr-dpo moves the reference toward the policy, but with LoRA (--lora-r / --adapter) the reference is the base model with the adapters off, which cannot move: use --method epsilon-dpo or dpo with LoRA, or tr-dpo without LoRA',
  path: ['method'],
})

/** A complete, validated training configuration (defaults filled in). */
export type TrainConfig = z.infer<typeof trainConfigSchema>
/** What a user may pass: everything but model, data and out is optional. */
export type TrainConfigInput = z.input<typeof trainConfigSchema>
