// `edpo merge-lora`: a PEFT LoRA adapter folded into its base, W + (α/r)·B·A in the base's stored
// dtype, written as a full Hugging Face model folder with the tokenizer files.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { CausalLM, type ModelDtype } from '../model'
import { listCheckpointTensors } from '../model/checkpoint-files'
import { readAdapterConfig } from '../model/lora'
import type { OptionSpec } from '../train/config'
import { TOKENIZER_FILES } from '../train/engine'
import { checkModelFolder } from '../train/preflight'
import { formatHelp, parseCommand } from './args'

export const MERGE_LORA_OPTIONS = {
  adapter: {
    schema: z.string().min(1),
    kind: 'string',
    help: 'PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors), e.g. a LoRA checkpoint',
  },
  base: { schema: z.string().min(1).optional(), kind: 'string', help: "base model folder (default: the adapter's base_model_name_or_path)" },
  out: { schema: z.string().min(1), kind: 'string', help: 'folder for the merged model (config.json, *.safetensors, tokenizer files)' },
} satisfies Record<string, OptionSpec>

export const MERGE_LORA_HELP = formatHelp(
  'edpo merge-lora --adapter <dir> [--base <dir>] --out <dir>',
  "Folds a LoRA adapter into its base model: W + (α/r)·B·A (α/√r with rsLoRA) in the base's stored dtype, and writes a\n" +
    'full Hugging Face model folder with the tokenizer files (from the adapter folder, else the base).',
  MERGE_LORA_OPTIONS,
)

const FLOAT_DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16', 'float64']

export async function mergeLoraCommand(argv: readonly string[]): Promise<number> {
  const o = parseCommand(argv, MERGE_LORA_OPTIONS, MERGE_LORA_HELP, 'edpo merge-lora')
  if (!o) return 0
  const { baseModelNameOrPath } = readAdapterConfig(o.adapter)
  const base = o.base ?? baseModelNameOrPath
  if (base === undefined) throw new EdpoInputError(`--adapter ${o.adapter}: adapter_config.json names no base_model_name_or_path; give --base <dir>`)
  checkModelFolder(base, o.base !== undefined ? '--base' : `--base (base_model_name_or_path of ${o.adapter})`)
  if (fs.existsSync(o.out) && fs.readdirSync(o.out).length > 0)
    throw new EdpoInputError(`--out ${o.out}: not empty; the merged model needs a new or empty folder`)
  // The base's stored dtype (bf16 stays bf16): the embedding's, as transformers reports torch_dtype.
  const stored = listCheckpointTensors(base).get('model.embed_tokens.weight')?.entry.dtype
  const dtype = (stored !== undefined && FLOAT_DTYPES.includes(stored) ? stored : 'float32') as ModelDtype
  const model = await CausalLM.fromPretrained(base, { dtype, trainable: false })
  await model.loadAdapter(o.adapter, { trainable: false })
  const lora = model.lora!
  model.mergeLora()
  await model.save(o.out)
  let copied = 0
  for (const f of TOKENIZER_FILES) {
    const src = [o.adapter, base].map((d) => path.join(d, f)).find((p) => fs.existsSync(p))
    if (src) {
      fs.copyFileSync(src, path.join(o.out, f))
      copied += 1
    }
  }
  process.stdout.write(
    `merged ${o.adapter} (r ${lora.r}, alpha ${lora.alpha}${lora.useRslora ? ', rsLoRA' : ''}, ${lora.targetModules.join(' ')}) into ${base} (${dtype}) → ${o.out} (${copied} tokenizer files)\n`,
  )
  return 0
}
