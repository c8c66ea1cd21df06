// The per-pair half of ε-DPO (spec §4–§5): step decisions, per-pair β_i, the loss and the reward
// metrics, from per-sequence sums. A few float64 ATen ops on [B]-sized tensors, on any device.
#pragma once
#include <ATen/ATen.h>

#include "sequence_sums.h"

namespace edpo {

// Upper bound on β: larger values only turn σ(β·z) into a step function, and overflow the float32 loss.
constexpr double kMaxBeta = 1e6;

struct EpsilonDpoOptions {
  double beta = 0.1;
  double epsilon = 0.01;
  double label_smoothing = 0.0;
};

struct EpsilonDpoOutput {
  at::Tensor loss;                 // scalar, differentiable w.r.t. the policy logits
  at::Tensor steps;                // [B] int64 in {-1, 0, +1}
  at::Tensor betas;                // [B] per-pair β_i = β / (1 + ε·s_i)
  at::Tensor chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps;  // [B]
  at::Tensor chosen_rewards, rejected_rewards;                                     // [B]
  at::Tensor mean_chosen_logits, mean_rejected_logits;                             // scalars
};

void check_options(const EpsilonDpoOptions& options);

// Steps, per-pair β and the loss from per-sequence sums (spec §4–§5). `out_dtype` is the dtype
// of the returned floating tensors (float32, or float64 for float64 logits).
EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType out_dtype);

}  // namespace edpo
