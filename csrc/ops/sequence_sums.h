// Per-sequence sums (spec §3) from the per-row statistics of row_stats.h, and the way back: dL/dS
// per sequence to per-row gradient weights. Shared by the op on logits and the chunked op.
#pragma once
#include <ATen/ATen.h>

namespace edpo {

// Per-sequence masked sums over the 2B stacked rows (spec §3). All [2B] float64.
// `policy` carries the autograd graph back to the policy logits; the rest carry none.
struct SequenceLogps {
  at::Tensor policy;       // S
  at::Tensor reference;    // S_ref
  at::Tensor plus;         // S+
  at::Tensor minus;        // S-
  at::Tensor logit_sum;    // Σ_t mask·Σ_j a_j  (mean-logit metric)
  at::Tensor token_count;  // Σ_t mask
  int64_t vocab = 0;       // V, for the mean-logit metric
  at::Tensor input_error;  // float64 scalar: check_labels_and_mask's flag (0 when the inputs are valid)
  // --criterion-precision bf16 only: [kNumCriterionRows, 2B] float64 bf16-rounded sums of the policy,
  // plus and minus rows (bf16_criterion.h), from which the step decision is taken. Else empty.
  at::Tensor criterion;
};

// Per-sequence sums from a [kNumRowStats, N] row-stats tensor and the [N] row weights (the mask).
SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences,
                                  int64_t vocab);
// dL/d(row log-prob) for each of the N rows from dL/dS per sequence: g_seq · mask, in `dtype`.
at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences,
                                    at::ScalarType dtype);

}  // namespace edpo
