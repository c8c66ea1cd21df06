// Plain CUDA launchers for the optimizer step: AdamW in one pass per parameter (adamw_math.h's
// element, as the CPU pass), and the global gradient norm with its clip. The ATen composition they
// replace on CUDA runs ~10 elementwise kernels per parameter (each a full pass over the state) and,
// for the norm, an fp64 copy of every gradient slice. Raw pointers in, cudaError_t out.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../math/adamw_math.h"

namespace edpo_cuda {

// Storage of a parameter and its gradient. F32/F64: the state has the same dtype; BF16/F16: the
// state (fp32 master, moments) is float32.
enum class ParamDtype : int { F32 = 0, F64 = 1, BF16 = 2, F16 = 3 };

// One AdamW step over n elements: target/exp_avg/exp_avg_sq in the state's dtype, param and grad in
// `dtype`. With a master (BF16/F16), param ← round(target); otherwise param is target (same pointer).
cudaError_t adamw_update(ParamDtype dtype, void* param, void* target, void* exp_avg, void* exp_avg_sq, const void* grad,
                         int64_t n, const edpo::AdamWScalars& scalars, cudaStream_t stream);

// Σ g² of fixed kSquareSumBlock-element blocks of a gradient, in float64: partials[b] for
// b < square_sum_blocks(n). Fixed blocks and tree orders: the same value on every run.
constexpr int64_t kSquareSumBlock = 8192;
inline int64_t square_sum_blocks(int64_t n) { return (n + kSquareSumBlock - 1) / kSquareSumBlock; }
cudaError_t square_sum_partials(ParamDtype dtype, const void* grad, int64_t n, double* partials, cudaStream_t stream);

// *sum = Σ partials[0..count), added in a fixed order.
cudaError_t sum_partials(const double* partials, int64_t count, double* sum, cudaStream_t stream);

// norm_scale[0] = √(*square_sum); norm_scale[1] = the clip factor max_norm / (norm + 1e-6) when
// max_norm > 0, the norm is finite and that factor is < 1, else 1 (torch.nn.utils.clip_grad_norm_'s
// rule, as adamw.cc's CPU path applies it).
cudaError_t clip_factor(const double* square_sum, double max_norm, double* norm_scale, cudaStream_t stream);

// grad ← grad · norm_scale[1] (read on the device; nothing is written when it is 1), the product in
// float32 (float64 for F64) and rounded once to the gradient's dtype, as ATen's mul_ by a scalar.
cudaError_t scale_grad(ParamDtype dtype, void* grad, int64_t n, const double* norm_scale, cudaStream_t stream);

}  // namespace edpo_cuda
