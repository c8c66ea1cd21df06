// `edpo generate`: sample completions from a model folder (or a checkpoint) for prompts.
import { z } from 'zod'

import { loadTokenizer } from '../data'
import { EdpoInputError } from '../core/errors'
import { CausalLM } from '../model'
import { eosTokenIds } from '../model/eos-ids'
import { Tensor, DEVICE_PATTERN } from '../core/tensor'
import type { OptionSpec } from '../train/config'
import { formatHelp, parseCommand } from './args'

export const GENERATE_OPTIONS = {
  model: { schema: z.string().min(1), kind: 'string', help: 'model folder (weights + tokenizer.json)' },
  prompt: { schema: z.array(z.string()).min(1), kind: 'strings', help: 'prompt text (repeatable)' },
  chat: { schema: z.boolean().default(false), kind: 'boolean', help: "wrap each prompt as a user message with the model's chat template" },
  maxNewTokens: { schema: z.number().int().min(0).default(64), kind: 'integer', help: 'tokens to generate at most' },
  temperature: { schema: z.number().min(0).default(0), kind: 'number', help: '0: greedy; > 0: sampling temperature' },
  topP: { schema: z.number().gt(0).max(1).default(1), kind: 'number', help: 'nucleus sampling mass' },
  topK: { schema: z.number().int().min(0).default(0), kind: 'integer', help: 'sample from the k most likely tokens (0: all)' },
  seed: { schema: z.number().int().min(0).default(0), kind: 'integer', help: 'sampling seed' },
  dtype: { schema: z.enum(['float32', 'bfloat16', 'float16']).default('float32'), kind: 'string', help: 'weights dtype' },
  device: { schema: z.string().regex(DEVICE_PATTERN).default('cpu'), kind: 'string', help: "'cpu', 'cuda' or 'cuda:N'" },
} satisfies Record<string, OptionSpec>

export const GENERATE_HELP = formatHelp(
  'edpo generate --model <dir> --prompt <text>… [options]',
  'Generates a completion for each prompt and prints one JSON line {prompt, completion} per prompt (a completion may\n' +
    "span lines). A raw-text prompt gets the special tokens the tokenizer adds (BOS), as Hugging Face's tokenizer(text);\n" +
    'with --chat the template writes them. Generation stops at any eos id of tokenizer_config.json, config.json or\n' +
    'generation_config.json.',
  GENERATE_OPTIONS,
)

export async function generateCommand(argv: readonly string[]): Promise<number> {
  const o = parseCommand(argv, GENERATE_OPTIONS, GENERATE_HELP, 'edpo generate')
  if (!o) return 0
  const tokenizer = await loadTokenizer(o.model)
  const model = (await CausalLM.fromPretrained(o.model, { dtype: o.dtype, device: o.device })).eval()
  const eos = eosTokenIds(o.model, tokenizer.eosTokenId)
  for (const prompt of o.prompt) {
    let ids: number[]
    if (o.chat) {
      if (!tokenizer.chatTemplate) throw new EdpoInputError(`--chat: ${o.model} has no chat template`)
      // The template writes BOS itself, so nothing is added (as apply_chat_template tokenizes).
      ids = tokenizer.encode(tokenizer.chatTemplate.render([{ role: 'user', content: prompt }], { addGenerationPrompt: true }))
    } else {
      ids = tokenizer.encodeWithSpecialTokens ? tokenizer.encodeWithSpecialTokens(prompt) : tokenizer.encode(prompt)
    }
    if (ids.length === 0) throw new EdpoInputError('--prompt: the prompt has no tokens')
    const out = await model.generateAsync(Tensor.from(BigInt64Array.from(ids.map(BigInt)), [1, ids.length], { device: o.device }), {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topP: o.topP,
      topK: o.topK,
      seed: o.seed,
      eosTokenId: eos,
    })
    const all = Array.from(out.to('cpu').toArray() as BigInt64Array, Number)
    const generated = all.slice(ids.length)
    const end = generated.findIndex((t) => eos.includes(t))
    const completion = end < 0 ? generated : generated.slice(0, end)
    process.stdout.write(JSON.stringify({ prompt, completion: tokenizer.decode(completion) }) + '\n')
  }
  return 0
}
