// Plain CUDA launchers for the fused ε-DPO row kernels (spec §2, §5, §10).
// No torch and no N-API here: raw device pointers in, cudaError_t out, so the kernels can be
// compiled, tested and timed on their own (see bench/gpu/).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../math/row_stats.h"

namespace edpo_cuda {

// Element type of the logits. Accumulation is always fp32.
enum class Dtype : int { F32 = 0, BF16 = 1, F16 = 2 };

// Per-row outputs of the forward kernel, each a device array of `rows` floats (the contract of
// csrc/ops/row_stats.h). A row whose weight is 0 is skipped and all its outputs are written as 0.
using RowStats = edpo::RowStatArrays<float>;

// Forward: policy/reference are contiguous [rows, vocab] arrays of `dtype`; labels are [rows] int64
// and must lie in [0, vocab) wherever row_weight != 0; row_weight is [rows] float (the loss mask).
// 1 <= vocab <= 262144. Runs on `stream`; returns the launch error, if any.
cudaError_t forward_rows(const void* policy, const void* reference, const int64_t* labels, const float* row_weight,
                         int64_t rows, int64_t vocab, float epsilon, Dtype dtype, RowStats out, cudaStream_t stream);

// Backward: grad_policy[r, j] = row_grad[r] * (onehot(labels[r])_j - exp(policy[r, j] - policy_lse[r])),
// written in `dtype` into a contiguous [rows, vocab] array. Rows with row_grad == 0 are written as 0.
cudaError_t backward_rows(const void* policy, const int64_t* labels, const float* policy_lse, const float* row_grad,
                          int64_t rows, int64_t vocab, Dtype dtype, void* grad_policy, cudaStream_t stream);

}  // namespace edpo_cuda
