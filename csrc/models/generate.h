// Sampling with a KV cache: greedy, or temperature / top-k / top-p from a seeded generator.
#pragma once
#include "causal_lm.h"

namespace edpo::models {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  double temperature = 0.0;  // <= 0: greedy
  double top_p = 1.0;
  int64_t top_k = 0;  // 0: off
  bool has_seed = false;
  uint64_t seed = 0;
  std::vector<int64_t> eos_token_ids;  // a finished row repeats its eos token
  bool adapters = true;                // false: the base model with its LoRA adapters off
};

// input_ids [B,T] int64, left padded when attention_mask [B,T] has zeros. Returns [B, T + n] int64,
// n <= max_new_tokens (fewer when every row has finished).
at::Tensor generate(const CausalLM& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                    const GenerateOptions& options);

}  // namespace edpo::models
