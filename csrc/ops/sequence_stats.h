// Per-sequence log-probs from hidden states, chunk by chunk, for SFT and evaluation: the masked sum
// of log π(y_t) (differentiable, the negative SFT loss), the label's argmax hits and, given a
// reference head, log π_ref(y_t) and the exact token KL(π‖π_ref). Like the chunked ε-DPO op, no
// [R,T,V] logits ever exist: one chunk of rows × V at a time.
#pragma once
#include <ATen/ATen.h>

#include "chunked_linear.h"

namespace edpo {

// All [R] float64; `logps` carries the autograd graph back to policy.hidden/weight/bias.
struct SequenceStats {
  at::Tensor logps;        // Σ_t mask·log π(y_t)
  at::Tensor correct;      // Σ_t mask·[argmax π = y_t]
  at::Tensor token_count;  // Σ_t mask
  at::Tensor ref_logps;    // Σ_t mask·log π_ref(y_t)       (undefined without a reference)
  at::Tensor kl;           // Σ_t mask·KL(π(·|t) ‖ π_ref(·|t)) (undefined without a reference)
  at::Tensor input_error;  // float64 scalar: the device-side input-error flag (arg_error.h), 0 when valid
};

struct SequenceStatsOptions {
  double final_logit_softcap = 0;
  int64_t chunk_tokens = 0;  // 0: pick from V and the device (default_chunk_rows)
  at::Tensor active_rows;    // optional: see chunked_linear.h active_rows
};

// `reference.hidden` undefined: policy statistics only. labels [R,T] int64 (in [0,V) wherever the
// mask is non-zero), loss_mask [R,T] of any real dtype (a per-token weight).
SequenceStats sequence_stats_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                         const at::Tensor& labels, const at::Tensor& loss_mask,
                                         const SequenceStatsOptions& options);

}  // namespace edpo
