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

/** Where and in which dtype the fixture's weights are drawn. */
export interface FixtureOptions {
  /** The dtype written (default float32); bfloat16 halves an 8B model's 32 GB. */
  dtype?: 'float32' | 'bfloat16'
  /**
   * Where the normals are drawn (default cpu). CPU at::randn is serial (~0.1 G/s here): 8e9 of them
   * would take minutes, a GPU draws them in milliseconds. Each tensor comes back to the CPU at once,
   * so the device holds one at a time.
   */
  device?: string
}

/** A llama's weights for `config` (HF names), seeded: scaled normal matrices, unit norms, an untied head. */
export function llamaWeights(config: Readonly<Record<string, unknown>>, o: FixtureOptions = {}): Record<string, Tensor> {
  const c = config as Record<string, number>
  const dtype = o.dtype ?? 'float32'
  const device = o.device ?? 'cpu'
  Tensor.manualSeed(0)
  const H = c.hidden_size!,
    I = c.intermediate_size!,
    hd = H / c.num_attention_heads!,
    kv = c.num_key_value_heads! * hd
  const onCpu = (t: Tensor): Tensor => {
    if (device === 'cpu') return t
    const host = t.to('cpu')
    t.dispose()
    return host
  }
  const normal = (r: number, cols: number, scale: number) => {
    const z = Tensor.randn([r, cols], { dtype, device })
    if (scale === 1) return onCpu(z)
    const scaled = z.mul(scale)
    z.dispose()
    return onCpu(scaled)
  }
  const mat = (r: number, cols: number) => normal(r, cols, 1 / Math.sqrt(cols))
  const ones = () => Tensor.full([H], 1, { dtype })
  const t: Record<string, Tensor> = { 'model.embed_tokens.weight': normal(c.vocab_size!, H, 1) }
  for (let l = 0; l < c.num_hidden_layers!; l++) {
    const p = `model.layers.${l}.`
    Object.assign(t, {
      [`${p}input_layernorm.weight`]: ones(),
      [`${p}self_attn.q_proj.weight`]: mat(H, H),
      [`${p}self_attn.k_proj.weight`]: mat(kv, H),
      [`${p}self_attn.v_proj.weight`]: mat(kv, H),
      [`${p}self_attn.o_proj.weight`]: mat(H, H),
      [`${p}post_attention_layernorm.weight`]: ones(),
      [`${p}mlp.gate_proj.weight`]: mat(I, H),
      [`${p}mlp.up_proj.weight`]: mat(I, H),
      [`${p}mlp.down_proj.weight`]: mat(H, I),
    })
  }
  t['model.norm.weight'] = ones()
  t['lm_head.weight'] = mat(c.vocab_size!, H)
  return t
}

/** config.json, model.safetensors (seeded random weights) and the tokenizer; returns the parameter count. */
export function writeLlama(dir: string, config: Record<string, number | string | boolean>, o: FixtureOptions = {}): number {
  const t = llamaWeights(config, o)
  const c = config as Record<string, number>
  const torchDtype = o.dtype ?? (config.torch_dtype as string | undefined) ?? 'float32'
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, torch_dtype: torchDtype, eos_token_id: EOS, pad_token_id: PAD }))
  io.saveSafetensors(path.join(dir, 'model.safetensors'), t)
  writeTokenizer(dir, c.vocab_size!)
  const n = Object.values(t).reduce((k, x) => k + x.numel, 0)
  // An 8B fixture is 16 GB of host memory: free it now, not at some later garbage collection.
  for (const x of Object.values(t)) x.dispose()
  return n
}
