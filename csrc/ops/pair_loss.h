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
  // The step decision in the authors' eager bf16 numerics (bf16_criterion.h) instead of fp32/fp64.
  bool bf16_criterion = false;
};

// Columns of the per-pair record: everything the trainer and the metrics need of one pair, in one
// float64 [B, kNumPairColumns] tensor, so a whole optimizer step is read to the host at once.
enum PairColumn : int {
  kChosenLogps = 0,   // S(i)
  kRejectedLogps,     // S(B+i)
  kRefChosenLogps,    // S_ref(i)
  kRefRejectedLogps,  // S_ref(B+i)
  kChosenRewards,     // β_i·(S(i) − S_ref(i))
  kRejectedRewards,   // β_i·(S(B+i) − S_ref(B+i))
  kStep,              // s_i ∈ {−1, 0, +1}
  kBeta,              // β_i = β / (1 + ε·s_i)
  kLoss,              // L_i
  kChosenLogitSum,    // Σ_t mask·mean_j a_j over the chosen row (sum of per-token mean logits)
  kRejectedLogitSum,  // the same over the rejected row
  kChosenTokens,      // Σ_t mask over the chosen row
  kRejectedTokens,    // the same over the rejected row
  kInputError,        // the call's device-side input-error flag (op_checks.h kInputError* bits), every row
  kNumPairColumns
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

// Steps, per-pair β and the loss from per-sequence sums (spec §4–§5). `loss_dtype` is the loss's
// dtype (float32, or float64 for float64 logits); the record is always float64.
EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType loss_dtype);

// dL/dS [2m] float64 for the m pairs of `seq` (chosen sequences, then rejected), where L is the mean
// loss over `total_pairs` pairs that include them: the gradient of loss_from_sequences itself (through
// autograd on these [2m] tensors), so the chunked op's forward-time gradient follows the same formula.
at::Tensor loss_grad_wrt_policy_sums(const SequenceLogps& seq, const EpsilonDpoOptions& options, int64_t total_pairs);

}  // namespace edpo
