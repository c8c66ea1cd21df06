// A small llama initialised from scratch (GPT-2 style: N(0, 0.02²) weights, unit norms), written
// as a Hugging Face folder (config.json + model.safetensors + the tokenizer files) that
// CausalLM.fromPretrained, `edpo sft` and `edpo train` load like any other model.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { saveSafetensors } from '../io'
import { Tensor } from '../core/tensor'

export interface TinyLlamaShape {
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  layers: number
  heads: number
  kvHeads: number
  maxPositions: number
  bosTokenId?: number
  eosTokenId: number
  padTokenId?: number
}

/** Writes a randomly initialised llama into `dir` and copies `tokenizerFiles` beside it. */
export function writeRandomLlama(dir: string, s: TinyLlamaShape, seed: number, tokenizerFiles: readonly string[] = []): string {
  fs.mkdirSync(dir, { recursive: true })
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    hidden_act: 'silu',
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: s.bosTokenId ?? null,
    eos_token_id: s.eosTokenId,
    pad_token_id: s.padTokenId ?? null,
    torch_dtype: 'float32',
  }
  Tensor.manualSeed(seed)
  const H = s.hiddenSize
  const hd = H / s.heads
  const normal = (shape: number[]) => Tensor.randn(shape).mul(0.02)
  // Residual projections are scaled down by √(2·layers), as GPT-2 does, so deeper stacks start stable.
  const residual = (shape: number[]) => Tensor.randn(shape).mul(0.02 / Math.sqrt(2 * s.layers))
  const w: Record<string, Tensor> = { 'model.embed_tokens.weight': normal([s.vocabSize, H]) }
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`
    w[`${p}input_layernorm.weight`] = Tensor.full([H], 1)
    w[`${p}self_attn.q_proj.weight`] = normal([s.heads * hd, H])
    w[`${p}self_attn.k_proj.weight`] = normal([s.kvHeads * hd, H])
    w[`${p}self_attn.v_proj.weight`] = normal([s.kvHeads * hd, H])
    w[`${p}self_attn.o_proj.weight`] = residual([H, s.heads * hd])
    w[`${p}post_attention_layernorm.weight`] = Tensor.full([H], 1)
    w[`${p}mlp.gate_proj.weight`] = normal([s.intermediateSize, H])
    w[`${p}mlp.up_proj.weight`] = normal([s.intermediateSize, H])
    w[`${p}mlp.down_proj.weight`] = residual([H, s.intermediateSize])
  }
  w['model.norm.weight'] = Tensor.full([H], 1)
  w['lm_head.weight'] = normal([s.vocabSize, H])
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n')
  saveSafetensors(path.join(dir, 'model.safetensors'), w)
  for (const f of tokenizerFiles) fs.copyFileSync(f, path.join(dir, path.basename(f)))
  return dir
}
