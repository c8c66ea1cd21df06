// The options every run shares (the run folder, the engine), apart from any method's: what
// open-run.ts, the engine and trainer_state.json read. config.ts adds the methods' tables.
import { z } from 'zod'

import { DEVICE_PATTERN } from '../core/tensor'
import { LORA_OPTIONS } from './lora-options'
import type { OptionTable, OptionValues } from './option-table'
import { parseStepRange } from './step-profiler'
import { validRevision } from '../hub/hub-id'
import { stepsOrFraction } from './step-fractions'

// Short dtype names as TRL users write them.
const DTYPE_SHORT: Record<string, string> = { bf16: 'bfloat16', fp16: 'float16', fp32: 'float32', fp64: 'float64' }

const positive = z.number().positive()
const nonNegative = z.number().min(0)
const count = z.number().int().positive()

/** Where a run starts from and writes to (the first options of every run's table). */
export const RUN_FOLDER_OPTIONS = {
  model: {
    aliases: ['model_name_or_path'],
    schema: z.string().min(1),
    kind: 'string',
    help: 'Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or a Hub id org/name[@revision] (the Hub cache first, downloaded when missing)',
  },
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
    schema: z
      .string()
      .regex(/^[\w.-]+$/)
      .optional(),
    kind: 'string',
    help: 'with a Hub dataset id (org/name) in --data: the split to train on (default train)',
  },
  evalDataSplit: {
    aliases: ['dataset_test_split'],
    schema: z
      .string()
      .regex(/^[\w.-]+$/)
      .optional(),
    kind: 'string',
    help: "with a Hub dataset id: the split to evaluate on, of --eval-data's dataset or, without --eval-data, of --data's (default test)",
  },
  dataConfig: {
    aliases: ['dataset_config'],
    schema: z
      .string()
      .regex(/^[\w.-]+$/)
      .optional(),
    kind: 'string',
    help: "with a Hub dataset id: the dataset card's config (or the repo's folder) to read",
  },
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
} satisfies OptionTable

/** The engine's, the data's and LoRA's options: with RUN_FOLDER_OPTIONS, what every run reads. */
export const ENGINE_OPTIONS = {
  learningRate: { schema: positive.default(5e-7), kind: 'number', help: 'peak learning rate' },
  lrScheduler: {
    aliases: ['lr_scheduler_type'],
    schema: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
    kind: 'string',
    help: 'learning-rate schedule after warm-up',
  },
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
  // HF's group_by_length is this option's snake_case name.
  groupByLength: {
    schema: z.boolean().default(false),
    kind: 'boolean',
    help: 'batch examples of similar lengths together (less padding); the order stays shuffled per epoch',
  },
  seed: { schema: z.number().int().min(0).default(42), kind: 'integer', help: 'data order seed' },
  profileSteps: {
    schema: z
      .string()
      .refine((v) => parseStepRange(v) !== undefined, { message: "expected a step or a range of optimizer steps, 'A' or 'A-B' with 1 ≤ A ≤ B" })
      .optional(),
    kind: 'string',
    help: "profile optimizer steps A-B (e.g. 3-4): time per section of the step and libtorch's profiler trace, in <out>/profile/",
  },
  logEvery: {
    aliases: ['logging_steps'],
    schema: stepsOrFraction(1).default(1),
    kind: 'number',
    help: "log metrics every N optimizer steps (< 1: that fraction of the run's steps)",
  },
  evalEvery: {
    aliases: ['eval_steps'],
    schema: stepsOrFraction(0).default(0),
    kind: 'number',
    help: "evaluate every N steps (0: only at the end; < 1: that fraction of the run's steps)",
  },
  saveEvery: {
    aliases: ['save_steps'],
    schema: stepsOrFraction(0).default(0),
    kind: 'number',
    help: "checkpoint every N steps (0: only at the end; < 1: that fraction of the run's steps)",
  },
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
  loggingDir: {
    aliases: ['logging_dir'],
    schema: z.string().min(1).optional(),
    kind: 'string',
    help: 'with --report-to tensorboard: the folder of the event files (default: the run folder)',
  },
  runName: {
    aliases: ['run_name'],
    schema: z
      .string()
      .regex(/^[\w.@+-]+$/, { message: 'letters, digits and . _ - @ + only (it names a folder)' })
      .optional(),
    kind: 'string',
    help: 'a name for the run, stored in its trainer_state.json; with --report-to tensorboard the event files go in <logging dir>/<run name>/',
  },
  keepLast: { aliases: ['save_total_limit'], schema: count.default(2), kind: 'integer', help: 'checkpoints to keep' },
  zeroStage: {
    schema: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)]).default(0),
    kind: 'integer',
    help: 'several ranks: 1 shards the AdamW state (fp32 master, m, v) across ranks, 2 also the gradients, reduced onto their owners during the backward, 3 also the weights, gathered a layer at a time (DeepSpeed ZeRO)',
  },
  shardReference: {
    schema: z.boolean().default(true),
    kind: 'boolean',
    help: 'ZeRO-3: shard the frozen reference like the policy (--no-shard-reference: a whole copy on every rank)',
  },
  gradOverlap: {
    schema: z.boolean().default(true),
    kind: 'boolean',
    help: 'several ranks: reduce gradients bucket by bucket during the backward, overlapped with it (false: after the backward)',
  },
  bucketMb: {
    aliases: ['ddp_bucket_cap_mb'],
    schema: positive.default(25),
    kind: 'number',
    help: 'several ranks: at --zero-stage 0-2 the MiB of gradients per reduction bucket (one collective each); at --zero-stage 3 the MiB of gradient reduce-scatters in flight at most (DeepSpeed reduce_bucket_size: a unit whose reduce-scatter would exceed it waits for older ones; one always may run, so a larger unit still proceeds)',
  },
  skipInvalid: { schema: z.boolean().default(false), kind: 'boolean', help: 'skip and count invalid rows instead of stopping' },
  ...LORA_OPTIONS,
} satisfies OptionTable

/** What every run reads, whatever its method: `edpo sft`'s table is this (with SFT's defaults). */
export const RUN_OPTIONS = { ...RUN_FOLDER_OPTIONS, ...ENGINE_OPTIONS }
export type RunConfig = OptionValues<typeof RUN_OPTIONS>
