// `edpo eval`: preference accuracy, reward margins and KL(π‖π_ref) of a policy on held-out pairs,
// and/or (--gold <module> --prompts <file>) a programmatic judge's win rate of the policy's
// samples over the reference's, with the mean gold reward and the sampled KL(π‖π_ref).
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import { loadPreferenceData, loadTokenizer } from '../data'
import { EdpoInputError } from '../core/errors'
import { evaluatePreferences, type GoldEval, type PreferenceEval } from '../eval'
import { evaluateWithGold, loadGoldJudge, readPrompts } from '../eval/gold'
import { CausalLM } from '../model'
import { type OptionSpec, TRAIN_OPTIONS } from '../train/config'
import { REFERENCE_DIR } from '../train/method'
import { methodReference } from '../train/methods'
import { readTrainerState } from '../train/trainer-state'
import { formatZodError } from '../core/validate'
import { formatHelp, parseArgs } from './args'
import { DEVICE_PATTERN } from '../core/tensor'
import { resolveHubOptions } from '../hub/resolve-options'

export const EVAL_OPTIONS = {
  model: {
    aliases: ['model_name_or_path'],
    schema: z.string().min(1),
    kind: 'string',
    help: 'the policy: a model folder, a checkpoint-<step> folder or a Hub id org/name[@revision]',
  },
  modelRevision: TRAIN_OPTIONS.modelRevision,
  referenceModel: {
    schema: z.string().min(1).optional(),
    kind: 'string',
    help: 'the reference model folder (default: for a checkpoint-<step> --model, the reference its run trained against)',
  },
  data: {
    aliases: ['dataset_name'],
    schema: z.array(z.string().min(1)).min(1).optional(),
    kind: 'strings',
    help: 'evaluation pairs: JSONL, JSON or Parquet files or globs, or a Hub dataset id',
  },
  dataSplit: { ...TRAIN_OPTIONS.dataSplit, aliases: ['dataset_test_split'], help: 'with a Hub dataset id in --data: the split to evaluate on (default test)' },
  dataConfig: TRAIN_OPTIONS.dataConfig,
  gold: { schema: z.string().min(1).optional(), kind: 'string', help: 'judge module (CommonJS or ESM) exporting reward(prompt, completion) → number' },
  prompts: { schema: z.array(z.string().min(1)).min(1).optional(), kind: 'strings', help: 'with --gold: rows with a prompt field (JSONL, JSON or Parquet)' },
  temperature: { schema: z.number().positive().default(1), kind: 'number', help: 'with --gold: sampling temperature' },
  maxNewTokens: { schema: z.number().int().positive().default(64), kind: 'integer', help: 'with --gold: tokens to sample at most' },
  seed: { schema: z.number().int().min(0).default(0), kind: 'integer', help: 'with --gold: sampling seed' },
  beta: { schema: z.number().positive().default(0.1), kind: 'number', help: 'β of the implicit reward β·log(π/π_ref)' },
  batchSize: { schema: z.number().int().positive().default(8), kind: 'integer', help: 'pairs per batch' },
  maxLength: { schema: z.number().int().positive().default(1024), kind: 'integer', help: 'tokens per sequence' },
  maxPromptLength: TRAIN_OPTIONS.maxPromptLength,
  maxCompletionLength: TRAIN_OPTIONS.maxCompletionLength,
  truncationMode: TRAIN_OPTIONS.truncationMode,
  dataFormat: TRAIN_OPTIONS.dataFormat,
  dtype: { schema: z.enum(['float32', 'bfloat16', 'float16']).default('float32'), kind: 'string', help: 'weights dtype' },
  device: { schema: z.string().regex(DEVICE_PATTERN).default('cpu'), kind: 'string', help: "'cpu', 'cuda' or 'cuda:N'" },
  skipInvalid: { schema: z.boolean().default(false), kind: 'boolean', help: 'skip and count invalid rows' },
  json: { schema: z.boolean().default(false), kind: 'boolean', help: 'print the result as JSON' },
} satisfies Record<string, OptionSpec>

const schema = z
  .object(Object.fromEntries(Object.entries(EVAL_OPTIONS).map(([k, v]) => [k, v.schema])))
  .strict()
  .refine((o) => o.data !== undefined || o.gold !== undefined, { message: 'give --data (pairs), --gold with --prompts, or both', path: ['data'] })
  .refine((o) => (o.gold === undefined) === (o.prompts === undefined), { message: '--gold and --prompts go together', path: ['prompts'] })

export const EVAL_HELP = formatHelp(
  'edpo eval --model <dir> [--reference-model <dir>] --data <file>… [options]\n       edpo eval --model <dir> [--reference-model <dir>] --gold <judge.js> --prompts <file>… [options]',
  "Preference accuracy, mean reward margin and mean sequence KL(π‖π_ref) over the completions of held-out pairs.\nWith --gold: one sample per prompt from the policy and from the reference, scored by the judge module: the win rate\n(ties count ½), the mean gold rewards and KL(π‖π_ref) estimated from the policy's samples.",
  EVAL_OPTIONS,
)

/**
 * The reference a checkpoint's run trained against: TR-DPO's moving reference saved beside it, or
 * the stored config's referenceModel, or its model; a LoRA run started from --adapter trained
 * against its base with that adapter on (frozen), so that adapter comes too. An error says to pass
 * --reference-model when `dir` is not an edpo checkpoint.
 */
function referenceOfCheckpoint(dir: string): { dir: string; adapter?: string } {
  const stateFile = path.join(dir, 'trainer_state.json')
  if (!fs.existsSync(stateFile))
    throw new EdpoInputError(`--reference-model is required: ${dir} is not an edpo checkpoint (no trainer_state.json to read the run's reference from)`)
  // The trainers' own reader: the same checks and messages as --resume.
  const { file: state } = readTrainerState(dir, { kind: z.literal('sft').optional() }, 'an edpo checkpoint; or pass --reference-model')
  if (state.kind === 'sft') throw new EdpoInputError(`${dir} is an SFT checkpoint: it has no reference model; pass --reference-model`)
  const config = state.config
  // A method whose reference moves saved it beside the checkpoint.
  if (methodReference(config.method) === 'moving' && fs.existsSync(path.join(dir, REFERENCE_DIR))) return { dir: path.join(dir, REFERENCE_DIR) }
  const ref = config.referenceModel ?? config.model
  if (typeof ref !== 'string' || ref === '') throw new EdpoInputError(`${stateFile}: no config.model to take the reference from; pass --reference-model`)
  const adapter = config.referenceModel === undefined ? config.adapter : undefined
  if (adapter !== undefined && (typeof adapter !== 'string' || adapter === ''))
    throw new EdpoInputError(`${stateFile}: config.adapter must be a folder name; pass --reference-model`)
  return adapter === undefined ? { dir: ref } : { dir: ref, adapter }
}

export async function evalCommand(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, EVAL_OPTIONS)
  if (args.help) {
    process.stdout.write(EVAL_HELP + '\n')
    return 0
  }
  const shapes = schema.safeParse(args.options)
  if (!shapes.success) throw new EdpoInputError(formatZodError(shapes.error, 'edpo eval'))
  // Hub ids become cache paths here, before any model or data code runs.
  const r = schema.safeParse(await resolveHubOptions(args.options, { typed: args.typed, defaultDataSplit: 'test' }))
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, 'edpo eval'))
  const o = r.data as { [K in keyof typeof EVAL_OPTIONS]: z.infer<(typeof EVAL_OPTIONS)[K]['schema']> }
  const load = (dir: string, trainable = true) => CausalLM.fromPretrained(dir, { dtype: o.dtype, device: o.device, trainable })
  const referenceOf = o.referenceModel !== undefined ? { dir: o.referenceModel } : referenceOfCheckpoint(o.model)
  const policy = (await load(o.model)).eval()
  // Loaded frozen, not cloned: clone() drops adapters, and an adapter folder named as the reference is base + adapter.
  const reference = (await load(referenceOf.dir, false)).eval()
  if (referenceOf.adapter !== undefined) await reference.loadAdapter(referenceOf.adapter, { trainable: false })
  let preference: PreferenceEval | undefined
  if (o.data) {
    const data = await loadPreferenceData({
      data: o.data,
      label: 'eval',
      tokenizer: o.model,
      maxLength: o.maxLength,
      maxPromptLength: o.maxPromptLength,
      maxCompletionLength: o.maxCompletionLength,
      truncationMode: o.truncationMode,
      dataFormat: o.dataFormat,
      skipInvalid: o.skipInvalid,
    })
    preference = await evaluatePreferences({
      policy,
      reference,
      pairs: data.train,
      tokenizer: data.tokenizer,
      beta: o.beta,
      batchSize: o.batchSize,
      device: o.device,
    })
  }
  let gold: Omit<GoldEval, 'samples'> | undefined
  if (o.gold && o.prompts) {
    const judge = await loadGoldJudge(o.gold)
    const prompts = await readPrompts(o.prompts)
    const { samples: _, ...summary } = await evaluateWithGold({
      policy,
      reference,
      tokenizer: loadTokenizer(o.model),
      prompts,
      judge,
      temperature: o.temperature,
      maxNewTokens: o.maxNewTokens,
      seed: o.seed,
      batchSize: o.batchSize,
      device: o.device,
    })
    gold = summary
  }
  if (o.json) process.stdout.write(JSON.stringify(preference ? { ...preference, ...(gold ? { gold } : {}) } : { gold }) + '\n')
  else {
    const lines: string[] = []
    if (preference)
      lines.push(
        `pairs              ${preference.pairs}`,
        `accuracy           ${preference.accuracy.toFixed(4)}`,
        `reward margin      ${preference.margin.toFixed(6)}`,
        `chosen reward      ${preference.chosenReward.toFixed(6)}`,
        `rejected reward    ${preference.rejectedReward.toFixed(6)}`,
        `KL(π‖π_ref)        ${preference.kl.toFixed(6)}  (nats per completion)`,
      )
    if (gold)
      lines.push(
        `gold prompts       ${gold.prompts}`,
        `gold win rate      ${gold.winRate.toFixed(4)}  (policy sample vs reference sample, ties ½)`,
        `gold reward        ${gold.meanReward.toFixed(6)}  (reference ${gold.referenceMeanReward.toFixed(6)})`,
        `sampled KL         ${gold.kl.toFixed(6)}  (mean log π(y|x) − log π_ref(y|x) over the policy's samples)`,
      )
    process.stdout.write(lines.join('\n') + '\n')
  }
  return 0
}
