// The 33.6M llama the CPU benchmarks and the plan-vs-measured test share (bench/model.ts,
// bench/step.ts's 33m workloads, test/plan-measured.test.ts): hidden 512, 8 layers, vocabulary 8192.
export const LLAMA_33M = {
  model_type: 'llama',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1536,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 1024,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'float32',
}
