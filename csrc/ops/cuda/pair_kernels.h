// Plain CUDA launchers for the small per-sequence and per-pair steps of the ε-DPO op, between the
// row kernels (epsilon_dpo_kernels.h) and the loss: each replaces a chain of ~5–60 small ATen ops
// that made the op launch-bound on an H200 at V = 32000 (bench/RESULTS.md). Raw pointers in,
// cudaError_t out; all float64 except the row statistics and weights (float32).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../math/pair_math.h"

namespace edpo_cuda {

// The masked per-sequence sums of one [kNumRowStats, rows] float32 stats block (row_stats.h) with
// rows = sequences × positions: out[k][s] = Σ_t stat_k[s·T + t]·w[s·T + t] in float64 for the policy,
// reference, plus, minus and logit-sum stats (k = 0..4), and out[5][s] = Σ_t w[s·T + t].
struct SequenceSumsOut {
  double* sums[6];
};
cudaError_t sequence_sums(const float* stats, const float* row_weight, int64_t sequences, int64_t positions,
                          SequenceSumsOut out, cudaStream_t stream);

// row_grad[n] = float(grad_sequences[n / positions] · w[n]) for the sequences × positions rows.
cudaError_t row_grads(const double* grad_sequences, const float* row_weight, int64_t sequences, int64_t positions,
                      float* row_grad, cudaStream_t stream);

// edpo::pair_terms for each of `pairs` pairs: record [pairs, kNumPairColumns], grad_sums [2·pairs],
// and *loss_mean = Σ_i L_i / pairs (a fixed-order tree sum: the same bits on every run).
cudaError_t pair_loss(const edpo::PairSums& sums, int64_t pairs, const edpo::PairConstants& constants, double* record,
                      double* grad_sums, double* loss_mean, cudaStream_t stream);

}  // namespace edpo_cuda
