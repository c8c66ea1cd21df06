// What bench/step.ts and bench/padding-free.ts share: a random llama written as a model folder
// with a whitespace word-level tokenizer whose token "wN" has id N, so a data file's text is
// exactly the ids a benchmark chose (and the PyTorch side reads).
import * as fs from 'node:fs'
import * as path from 'node:path'

import { io, Tensor } from '../lib/index'

export const PAD = 0
export const EOS = 1

// A whitespace WordLevel tokenizer whose token "wN" has id N, so the text of the data is exactly
// the ids the PyTorch side reads.
export function writeTokenizer(dir: string, vocab: number): void {
  const v: Record<string, number> = { '<pad>': PAD, '</s>': EOS }
  for (let i = 2; i < vocab; i++) v[`w${i}`] = i
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  fs.writeFileSync(
    path.join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(PAD, '<pad>'), special(EOS, '</s>')],
      normalizer: null,
      pre_tokenizer: { type: 'WhitespaceSplit' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab: v, unk_token: '<pad>' },
    }),
  )
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '</s>', pad_token: '<pad>' }))
}

/** The text of token ids (EOS left out: the data pipeline appends it to completions). */
export function text(ids: number[]): string {
  return ids
    .filter((i) => i !== EOS)
    .map((i) => `w${i}`)
    .join(' ')
}

/** A llama's weights for `config` (HF names), seeded: scaled normal matrices, unit norms, an untied head. */
export function llamaWeights(config: Readonly<Record<string, unknown>>): Record<string, Tensor> {
  const c = config as Record<string, number>
  Tensor.manualSeed(0)
  const H = c.hidden_size!,
    I = c.intermediate_size!,
    hd = H / c.num_attention_heads!,
    kv = c.num_key_value_heads! * hd
  const mat = (r: number, cols: number) => Tensor.randn([r, cols]).mul(1 / Math.sqrt(cols))
  const t: Record<string, Tensor> = { 'model.embed_tokens.weight': Tensor.randn([c.vocab_size!, H]) }
  for (let l = 0; l < c.num_hidden_layers!; l++) {
    const p = `model.layers.${l}.`
    Object.assign(t, {
      [`${p}input_layernorm.weight`]: Tensor.full([H], 1),
      [`${p}self_attn.q_proj.weight`]: mat(H, H),
      [`${p}self_attn.k_proj.weight`]: mat(kv, H),
      [`${p}self_attn.v_proj.weight`]: mat(kv, H),
      [`${p}self_attn.o_proj.weight`]: mat(H, H),
      [`${p}post_attention_layernorm.weight`]: Tensor.full([H], 1),
      [`${p}mlp.gate_proj.weight`]: mat(I, H),
      [`${p}mlp.up_proj.weight`]: mat(I, H),
      [`${p}mlp.down_proj.weight`]: mat(H, I),
    })
  }
  t['model.norm.weight'] = Tensor.full([H], 1)
  t['lm_head.weight'] = mat(c.vocab_size!, H)
  return t
}

/** config.json, model.safetensors (seeded random weights) and the tokenizer; returns the parameter count. */
export function writeLlama(dir: string, config: Record<string, number | string | boolean>): number {
  const t = llamaWeights(config)
  const c = config as Record<string, number>
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, eos_token_id: EOS, pad_token_id: PAD }))
  io.saveSafetensors(path.join(dir, 'model.safetensors'), t)
  writeTokenizer(dir, c.vocab_size!)
  return Object.values(t).reduce((n, x) => n + x.numel, 0)
}
