// From per-row statistics to the pairs and back (spec §3–§5): the per-sequence sums of the
// row_stats.h block, the per-pair half of ε-DPO over them (step decisions, per-pair β_i, the loss
// and the reward metrics: pair_math.h's formula over every pair, on the device's backend), and
// dL/dS per sequence back to per-row gradient weights. Shared by the op on logits, the chunked op
// and sequence_stats.
#pragma once
#include <ATen/ATen.h>

#include "math/pair_math.h"

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

// Upper bound on β: larger values only turn σ(β·z) into a step function, and overflow the float32 loss.
constexpr double kMaxBeta = 1e6;

struct EpsilonDpoOptions {
  double beta = 0.1;
  double epsilon = 0.01;
  double label_smoothing = 0.0;
  // The step decision in the authors' eager bf16 numerics (bf16_criterion.h) instead of fp32/fp64.
  bool bf16_criterion = false;
};

// Column names as the TypeScript API spells them, in PairColumn order.
extern const char* const kPairColumnNames[kNumPairColumns];

struct EpsilonDpoOutput {
  at::Tensor loss;    // scalar mean of L_i, differentiable w.r.t. the policy
  at::Tensor record;  // [B, kNumPairColumns] float64, no gradient
};

// β, ε and ℓ in range; ArgumentError naming the first that is not.
void check_options(const EpsilonDpoOptions& options);
void check_epsilon(double epsilon);

// What the pair math gives for the pairs of a SequenceLogps (chosen sequences, then rejected).
struct PairLoss {
  at::Tensor loss;       // scalar mean of L_i over these pairs, in the requested dtype; no graph
  at::Tensor record;     // [B, kNumPairColumns] float64
  at::Tensor grad_sums;  // [2B] float64: dL/dS, L the mean loss over `total_pairs` pairs
};

// Steps, per-pair β, the loss, the record and dL/dS from per-sequence sums (spec §4–§5), with no
// autograd graph. `total_pairs` (≥ the pairs of `seq`) is what the gradient's mean divides by.
PairLoss pair_loss(const SequenceLogps& seq, const EpsilonDpoOptions& options, at::ScalarType loss_dtype,
                   int64_t total_pairs);

// The same as a differentiable loss: gradient through seq.policy (S of the policy) only. `loss_dtype`
// is the loss's dtype (float32, or float64 for float64 logits); the record is always float64.
EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType loss_dtype);

}  // namespace edpo
