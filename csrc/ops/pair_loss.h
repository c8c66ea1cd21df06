// The per-pair half of ε-DPO (spec §4–§5): step decisions, per-pair β_i, the loss and the reward
// metrics, from per-sequence sums: pair_math.h's formula over every pair, in a host loop for CPU
// tensors and in one kernel for CUDA ones.
#pragma once
#include <ATen/ATen.h>

#include "math/pair_math.h"
#include "sequence_sums.h"

namespace edpo {

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
