// The ε-DPO loss as a libtorch op (spec §2–§5). Pure C++/ATen: no N-API, so C++ harnesses
// (bench/gpu) link it directly. The heavy per-token work runs in one fused pass per row
// (epsilon_dpo_rows.h on CPU, cuda/epsilon_dpo_kernels.cu on GPU); the per-pair math is a few
// float64 ATen ops on [B]-sized tensors.
#pragma once
#include <ATen/ATen.h>

#include <string>

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
};

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

// Per-sequence sums from a [kNumRowStats, N] row-stats tensor and the [N] row weights (the mask).
SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& weight, int64_t sequences,
                                  int64_t vocab);
// dL/d(row log-prob) for each of the N rows from dL/dS per sequence: g_seq · mask, in `dtype`.
at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& weight, int64_t sequences,
                                    at::ScalarType dtype);

// Checks every argument and throws c10::Error naming it. Returns V.
int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask);
void check_options(const EpsilonDpoOptions& options);
// Labels [rows,T] int64 in [0,V) where the mask is on; mask [rows,T] bool/int/float, finite; both on `device`.
// `source` names the tensor whose shape they must match in messages.
void check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t steps,
                           int64_t vocab, const c10::Device& device, const char* source);
std::string shape_str(const at::Tensor& t);

// Fused per-row pass + masked sums. Logits [2B,T,V] (fp32/bf16/fp16/fp64, same dtype and device),
// labels [2B,T] int64 (in [0,V) wherever the mask is non-zero), loss_mask [2B,T] bool/int/float.
SequenceLogps sequence_logps(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                             const at::Tensor& labels, const at::Tensor& loss_mask, double epsilon);

// Steps, per-pair β and the loss from per-sequence sums (spec §4–§5). `out_dtype` is the dtype
// of the returned floating tensors (float32, or float64 for float64 logits).
EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType out_dtype);

// Everything at once: ops.epsilonDpoLoss.
EpsilonDpoOutput epsilon_dpo_loss(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                                  const at::Tensor& labels, const at::Tensor& loss_mask,
                                  const EpsilonDpoOptions& options);

}  // namespace edpo
