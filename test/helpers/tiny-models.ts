// Tiny random checkpoints of each supported architecture (2 layers, hidden 64, 4 heads / 2 kv
// heads, vocabulary 101), written as config.json + model.safetensors for CausalLM.fromPretrained.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { type DType, io, Tensor } from '../../lib/index'
import type { RefConfig } from './hf-reference'

export type Arch = 'llama' | 'mistral' | 'qwen2' | 'gemma2'

const common = {
  vocab_size: 101,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 128,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'float32',
}

export function tinyConfig(arch: Arch, overrides: Partial<RefConfig> = {}): RefConfig {
  const byArch: Record<Arch, RefConfig> = {
    llama: { ...common, model_type: 'llama', hidden_act: 'silu', tie_word_embeddings: false, attention_bias: false, mlp_bias: false, rope_scaling: null },
    mistral: { ...common, model_type: 'mistral', hidden_act: 'silu', tie_word_embeddings: false, sliding_window: 4 },
    qwen2: {
      ...common,
      model_type: 'qwen2',
      hidden_act: 'silu',
      tie_word_embeddings: true,
      use_sliding_window: false,
      sliding_window: 32,
      max_window_layers: 2,
      rope_theta: 1000000,
    },
    gemma2: {
      ...common,
      model_type: 'gemma2',
      head_dim: 16,
      hidden_activation: 'gelu_pytorch_tanh',
      hidden_act: 'gelu_pytorch_tanh',
      tie_word_embeddings: true,
      attention_bias: false,
      query_pre_attn_scalar: 24,
      sliding_window: 3,
      attn_logit_softcapping: 1.5,
      final_logit_softcapping: 2.0,
      pad_token_id: 0,
    },
  }
  return { ...byArch[arch], ...overrides }
}

/** The checkpoint's tensors by HF name, written out by hand (independent of lib/model). */
export function tinyWeights(c: RefConfig, seed = 1): Map<string, Tensor> {
  Tensor.manualSeed(seed)
  const H = c.hidden_size,
    I = c.intermediate_size,
    hd = c.head_dim ?? H / c.num_attention_heads
  const q = c.num_attention_heads * hd,
    kv = (c.num_key_value_heads ?? c.num_attention_heads) * hd
  const gemma = c.model_type === 'gemma2'
  // Intermediates are disposed here: tests that count live tensor bytes must not see them wait for GC.
  const mat = (r: number, k: number) => owned(Tensor.randn([r, k]), (x) => x.mul(1 / Math.sqrt(k)))
  const vec = (n: number, scale: number, offset = 0) => owned(Tensor.randn([n]), (x) => owned(x.mul(scale), (y) => y.add(offset)))
  const norm = () => vec(H, 0.1, gemma ? 0 : 1)
  const w = new Map<string, Tensor>([['model.embed_tokens.weight', Tensor.randn([c.vocab_size, H])]])
  const qkvBias = c.model_type === 'qwen2' || c.attention_bias === true
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`
    w.set(`${p}input_layernorm.weight`, norm())
    for (const [n, rows] of [
      ['q', q],
      ['k', kv],
      ['v', kv],
    ] as const) {
      w.set(`${p}self_attn.${n}_proj.weight`, mat(rows, H))
      if (qkvBias) w.set(`${p}self_attn.${n}_proj.bias`, vec(rows, 0.1))
    }
    w.set(`${p}self_attn.o_proj.weight`, mat(H, q))
    if (c.attention_bias === true) w.set(`${p}self_attn.o_proj.bias`, vec(H, 0.1))
    w.set(`${p}post_attention_layernorm.weight`, norm())
    if (gemma) {
      w.set(`${p}pre_feedforward_layernorm.weight`, norm())
      w.set(`${p}post_feedforward_layernorm.weight`, norm())
    }
    w.set(`${p}mlp.gate_proj.weight`, mat(I, H))
    w.set(`${p}mlp.up_proj.weight`, mat(I, H))
    w.set(`${p}mlp.down_proj.weight`, mat(H, I))
    if (c.mlp_bias === true) {
      w.set(`${p}mlp.gate_proj.bias`, vec(I, 0.1))
      w.set(`${p}mlp.up_proj.bias`, vec(I, 0.1))
      w.set(`${p}mlp.down_proj.bias`, vec(H, 0.1))
    }
  }
  w.set('model.norm.weight', norm())
  if (!c.tie_word_embeddings) w.set('lm_head.weight', mat(c.vocab_size, H))
  return w
}

/** Writes config.json + model.safetensors (tensors cast to `dtype`) into `dir`. */
export function writeTiny(dir: string, c: RefConfig, weights: Map<string, Tensor>, dtype: DType = 'float32'): string {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...c, torch_dtype: dtype }, null, 2))
  const cast = [...weights].map(([n, t]) => [n, t.to(dtype)] as const)
  io.saveSafetensors(path.join(dir, 'model.safetensors'), Object.fromEntries(cast))
  for (const [, t] of cast) t.dispose()
  return dir
}

/** f(x), then x disposed. */
function owned(x: Tensor, f: (x: Tensor) => Tensor): Tensor {
  const y = f(x)
  x.dispose()
  return y
}

/** fp64 host copies of the weights, for the reference forward. */
export function hostWeights(weights: Map<string, Tensor>): Map<string, Float64Array> {
  return new Map([...weights].map(([n, t]) => [n, Float64Array.from(t.to('float64').toArray() as Float64Array)]))
}

export function ids(rows: number[][]): Tensor {
  return Tensor.from(BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]!.length])
}
