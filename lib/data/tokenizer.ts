// Loads a Hugging Face tokenizer from a model directory (tokenizer.json, tokenizer_config.json and,
// if present, chat_template.jinja) with @huggingface/tokenizers, and exposes what the data
// pipeline needs: encoding without special tokens (chat templates already write them), the
// special token ids and the chat template.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { Tokenizer } from '@huggingface/tokenizers'

import { EdpoInputError } from '../core/errors'
import { type ChatTemplate, compileChatTemplate, selectChatTemplate } from './chat-template'

export interface PreferenceTokenizer {
  /** Token ids of `text`, no special tokens added (special tokens written in the text are kept). */
  encode(text: string): number[]
  /** Token ids of `text` with the special tokens the tokenizer's post-processor adds (BOS for
   *  llama-style tokenizers): Hugging Face's `tokenizer(text)`, for raw-text prompts. */
  encodeWithSpecialTokens?(text: string): number[]
  decode(ids: readonly number[]): string
  readonly eosTokenId: number
  readonly bosTokenId: number | undefined
  /** pad_token's id, or EOS's when there is none (as TRL does). */
  readonly padTokenId: number
  /** bos_token, eos_token, unk_token, pad_token, ... as strings: the chat template's variables. */
  readonly specialTokens: Readonly<Record<string, string>>
  readonly chatTemplate: ChatTemplate | undefined
  /** How many of `ids` (the encoding of `text`) are the unknown token for a word not in the
   *  vocabulary, i.e. not counting an unknown token the text writes literally. */
  countUnknown?(text: string, ids: readonly number[]): number
  /** The unknown token's text, when the tokenizer has one. */
  readonly unkToken?: string
}

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const

function readJson(file: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON (${(e as Error).message})`}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new EdpoInputError(`${file}: expected a JSON object`)
  return value as Record<string, unknown>
}

// tokenizer_config.json writes a special token as a string or as an AddedToken {content, ...}.
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content
  return undefined
}

/** Builds a tokenizer from parsed tokenizer.json / tokenizer_config.json objects. */
export function createTokenizer(
  tokenizerJson: Record<string, unknown>,
  config: Record<string, unknown>,
  opts: { chatTemplate?: string; where?: string } = {},
): PreferenceTokenizer {
  const where = opts.where ?? 'tokenizer'
  let tk: Tokenizer
  // tokenizers.js takes the unknown token from the config only; tokenizer.json's model has it too.
  const model = tokenizerJson.model as { unk_token?: unknown } | undefined
  const libraryConfig = config.unk_token === undefined && typeof model?.unk_token === 'string' ? { ...config, unk_token: model.unk_token } : config
  try {
    tk = new Tokenizer(tokenizerJson, libraryConfig)
  } catch (e) {
    throw new EdpoInputError(`${where}: tokenizer.json could not be loaded: ${(e as Error).message}`, { cause: e })
  }
  const specialTokens: Record<string, string> = {}
  for (const key of SPECIAL_KEYS) {
    const t = tokenText(config[key])
    if (t !== undefined) specialTokens[key] = t
  }
  const idOf = (key: (typeof SPECIAL_KEYS)[number]): number | undefined => {
    const t = specialTokens[key]
    if (t === undefined) return undefined
    const id = tk.token_to_id(t)
    if (id === undefined) throw new EdpoInputError(`${where}: tokenizer_config.json: ${key} '${t}' is not in the vocabulary`)
    return id
  }
  // The unknown token: tokenizer_config.json's, else the model's (WordLevel, WordPiece, BPE).
  const unkText = specialTokens.unk_token ?? (typeof model?.unk_token === 'string' ? model.unk_token : undefined)
  const unkId = unkText === undefined ? undefined : tk.token_to_id(unkText)
  // Only an added token is matched whole in the text; otherwise a literal "[UNK]" is split like any word.
  const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as { content?: unknown }[]) : []
  const unkIsAdded = unkText !== undefined && added.some((t) => t.content === unkText)
  const eosTokenId = idOf('eos_token')
  if (eosTokenId === undefined) throw new EdpoInputError(`${where}: tokenizer_config.json: eos_token is missing (needed to end completions)`)
  const bosTokenId = idOf('bos_token')
  const padTokenId = idOf('pad_token') ?? eosTokenId
  const source = opts.chatTemplate ?? selectChatTemplate(config.chat_template, `${where}: tokenizer_config.json`)
  const chatTemplate = source === undefined ? undefined : compileChatTemplate(source, specialTokens, `${where}: chat_template`)
  return {
    encode(text) {
      const { ids, tokens } = tk.encode(text, { add_special_tokens: false })
      // A WordLevel model without an unknown token yields no id for an unknown word.
      const bad = ids.findIndex((id) => !Number.isInteger(id))
      if (bad >= 0) throw new EdpoInputError(`${where}: token '${tokens[bad]}' has no id in the vocabulary and there is no unknown token`)
      return ids
    },
    encodeWithSpecialTokens: (text) => tk.encode(text, { add_special_tokens: true }).ids,
    // The library rejects an empty list; an empty completion (EOS first) decodes to ''.
    decode: (ids) => (ids.length === 0 ? '' : tk.decode([...ids], { skip_special_tokens: false })),
    countUnknown(text, ids) {
      if (unkId === undefined) return 0
      let n = 0
      for (const id of ids) if (id === unkId) n++
      if (n > 0 && unkIsAdded) n -= text.split(unkText!).length - 1
      return Math.max(0, n)
    },
    eosTokenId,
    bosTokenId,
    padTokenId,
    specialTokens,
    chatTemplate,
    unkToken: unkText,
  }
}

/** Loads tokenizer.json + tokenizer_config.json (+ chat_template.jinja, which wins) from `dir`. */
export function loadTokenizer(dir: string): PreferenceTokenizer {
  const json = readJson(path.join(dir, 'tokenizer.json'))
  const configFile = path.join(dir, 'tokenizer_config.json')
  const config = fs.existsSync(configFile) ? readJson(configFile) : {}
  const jinjaFile = path.join(dir, 'chat_template.jinja')
  const chatTemplate = fs.existsSync(jinjaFile) ? fs.readFileSync(jinjaFile, 'utf8') : undefined
  return createTokenizer(json, config, { chatTemplate, where: dir })
}
