// ε-DPO loss from hidden states and lm_head weights, chunk by chunk, so that neither model's
// [N,V] logits ever exist in memory at once (spec §10). Same outputs as epsilon_dpo_loss.
#pragma once
#include <ATen/ATen.h>

#include "epsilon_dpo.h"
#include "linear_head.h"

namespace edpo {

struct ChunkedOptions {
  EpsilonDpoOptions loss;
  double final_logit_softcap = 0;  // > 0: logits = c·tanh(z/c) (Gemma-2)
  int64_t chunk_tokens = 0;        // 0: pick from V (≈ 32 Mi logits per chunk and model)
  at::Tensor active_rows;          // optional: see linear_head.h active_rows
};

// Per-sequence sums (spec §3); S is differentiable w.r.t. policy.hidden, policy.weight and policy.bias.
EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options);

}  // namespace edpo
