// `edpo eval`: preference accuracy, reward margins and KL(π‖π_ref) of a policy on held-out pairs.
import { z } from 'zod'

import { loadPreferenceData } from '../data'
import { evaluatePreferences } from '../eval'
import { CausalLM } from '../model'
import type { OptionSpec } from '../train/config'
import { formatHelp, parseCommand } from './args'

export const EVAL_OPTIONS = {
  model: { schema: z.string().min(1), kind: 'string', help: 'the policy: a model folder or a checkpoint-<step> folder' },
  referenceModel: { schema: z.string().min(1), kind: 'string', help: 'the reference model folder' },
  data: { schema: z.array(z.string().min(1)).min(1), kind: 'strings', help: 'evaluation pairs: JSONL, JSON or Parquet files or globs' },
  beta: { schema: z.number().positive().default(0.1), kind: 'number', help: 'β of the implicit reward β·log(π/π_ref)' },
  batchSize: { schema: z.number().int().positive().default(8), kind: 'integer', help: 'pairs per batch' },
  maxLength: { schema: z.number().int().positive().default(1024), kind: 'integer', help: 'tokens per sequence' },
  maxPromptLength: { schema: z.number().int().positive().default(512), kind: 'integer', help: 'prompt tokens' },
  dtype: { schema: z.enum(['float32', 'bfloat16', 'float16']).default('float32'), kind: 'string', help: 'weights dtype' },
  device: { schema: z.string().regex(/^(cpu|cuda(:\d+)?)$/).default('cpu'), kind: 'string', help: "'cpu', 'cuda' or 'cuda:N'" },
  skipInvalid: { schema: z.boolean().default(false), kind: 'boolean', help: 'skip and count invalid rows' },
  json: { schema: z.boolean().default(false), kind: 'boolean', help: 'print the result as JSON' },
} satisfies Record<string, OptionSpec>

export const EVAL_HELP = formatHelp(
  'edpo eval --model <dir> --reference-model <dir> --data <file>… [options]',
  'Preference accuracy, mean reward margin and mean sequence KL(π‖π_ref) over the completions of held-out pairs.',
  EVAL_OPTIONS,
)

export async function evalCommand(argv: readonly string[]): Promise<number> {
  const o = parseCommand(argv, EVAL_OPTIONS, EVAL_HELP, 'edpo eval')
  if (!o) return 0
  const data = await loadPreferenceData({ data: o.data, tokenizer: o.model, maxLength: o.maxLength, maxPromptLength: o.maxPromptLength, skipInvalid: o.skipInvalid })
  const load = (dir: string) => CausalLM.fromPretrained(dir, { dtype: o.dtype, device: o.device })
  const policy = (await load(o.model)).eval()
  const reference = (await load(o.referenceModel)).clone()
  const result = await evaluatePreferences({ policy, reference, pairs: data.train, tokenizer: data.tokenizer, beta: o.beta, batchSize: o.batchSize, device: o.device })
  if (o.json) process.stdout.write(JSON.stringify(result) + '\n')
  else
    process.stdout.write(
      [
        `pairs              ${result.pairs}`,
        `accuracy           ${result.accuracy.toFixed(4)}`,
        `reward margin      ${result.margin.toFixed(6)}`,
        `chosen reward      ${result.chosenReward.toFixed(6)}`,
        `rejected reward    ${result.rejectedReward.toFixed(6)}`,
        `KL(π‖π_ref)        ${result.kl.toFixed(6)}  (nats per completion)`,
      ].join('\n') + '\n',
    )
  return 0
}
