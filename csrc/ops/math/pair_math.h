// The per-pair half of ε-DPO (spec §4–§5) on one pair, in float64: the step decision, β_i, the
// loss, the record row and dL_i/dS. Raw C++ with no ATen, compiled for the host (pair_loss.cc's
// loop) and for the device (cuda/pair_kernels.cu's one-block kernel): one formula, so the CPU
// tests check the code the GPU runs, and a call costs one kernel launch instead of ~60 small ATen
// ops (the op was launch-bound on an H200 at V = 32000: bench/RESULTS.md, the first GPU run).
#pragma once
#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace edpo {

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
  kInputError,        // the call's device-side input-error flag (arg_error.h kInputError* bits), every row
  kNumPairColumns
};

// The per-sequence sums one pair reads, each a [2B] float64 array (chosen sequences, then rejected).
struct PairSums {
  const double* policy;       // S
  const double* reference;    // S_ref
  const double* plus;         // S+
  const double* minus;        // S−
  const double* logit_sum;    // Σ_t mask·Σ_j a_j
  const double* token_count;  // Σ_t mask
  // Optional [B] steps s_i decided elsewhere (the bf16 criterion); null: decided from plus/minus.
  const double* steps;
  const double* input_error;  // one float64 flag for the whole call
};

struct PairConstants {
  double beta;
  double epsilon;
  double label_smoothing;
  double vocab;        // V, for the mean-logit metric
  double total_pairs;  // the mean loss divides by this (> pairs when the pairs are a chunk of a batch)
};

// log σ(x) = min(x, 0) − log1p(e^−|x|), as ATen computes it.
EDPO_HOST_DEVICE inline double log_sigmoid(double x) { return (x < 0 ? x : 0.0) - log1p(exp(-fabs(x))); }

// Pair i of `pairs`: writes its record row (kNumPairColumns values) and dL/dS of its chosen and
// rejected sequence (L the mean loss over total_pairs), and returns L_i.
EDPO_HOST_DEVICE inline double pair_terms(const PairSums& s, int64_t pairs, int64_t i, const PairConstants& c,
                                          double* record, double* grad_chosen, double* grad_rejected) {
  const int64_t r = pairs + i;
  // Step decision (spec §4): strict inequalities on the log-ratios.
  double step;
  if (s.steps != nullptr) {
    step = s.steps[i];
  } else {
    const double rho = s.policy[i] - s.policy[r];
    const double rho_plus = s.plus[i] - s.plus[r];
    const double rho_minus = s.minus[i] - s.minus[r];
    const bool relax = rho_plus > rho && rho > rho_minus;
    const bool tighten = rho_minus > rho && rho > rho_plus;
    step = double(relax) - double(tighten);
  }
  const double beta_i = c.beta / (step * c.epsilon + 1.0);
  // Loss (spec §5) with conservative label smoothing ℓ.
  const double rho_ref = s.reference[i] - s.reference[r];
  const double margin = beta_i * ((s.policy[i] - s.policy[r]) - rho_ref);
  double loss = -log_sigmoid(margin) * (1.0 - c.label_smoothing);
  if (c.label_smoothing > 0) loss = loss - log_sigmoid(-margin) * c.label_smoothing;
  // dL_i/dm = −(1−ℓ)·σ(−m) + ℓ·σ(m); dm/dS(chosen) = β_i = −dm/dS(rejected).
  const double dmargin =
      -(1.0 - c.label_smoothing) * exp(log_sigmoid(-margin)) + c.label_smoothing * exp(log_sigmoid(margin));
  const double g = dmargin * beta_i / c.total_pairs;
  *grad_chosen = g;
  *grad_rejected = -g;
  record[kChosenLogps] = s.policy[i];
  record[kRejectedLogps] = s.policy[r];
  record[kRefChosenLogps] = s.reference[i];
  record[kRefRejectedLogps] = s.reference[r];
  record[kChosenRewards] = beta_i * (s.policy[i] - s.reference[i]);
  record[kRejectedRewards] = beta_i * (s.policy[r] - s.reference[r]);
  record[kStep] = step;
  record[kBeta] = beta_i;
  record[kLoss] = loss;
  record[kChosenLogitSum] = s.logit_sum[i] / c.vocab;
  record[kRejectedLogitSum] = s.logit_sum[r] / c.vocab;
  record[kChosenTokens] = s.token_count[i];
  record[kRejectedTokens] = s.token_count[r];
  record[kInputError] = *s.input_error;
  return loss;
}

}  // namespace edpo
