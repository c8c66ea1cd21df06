// Meta-Llama-3-8B's config.json (the fields edpo plan reads): what the plan tests size the paper's run by,
// and the shape of bench/step.ts's one-GPU 8B LoRA workload (random weights of this shape, no download).
export const LLAMA3_8B = {
  model_type: 'llama',
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  max_position_embeddings: 8192,
  tie_word_embeddings: false,
  hidden_act: 'silu',
}
