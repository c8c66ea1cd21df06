// One-pass CPU kernels for the optimizer step (adamw.cc): the AdamW update of one parameter and the
// squared L2 norm of one gradient. The ATen composition they replace on the CPU reads and writes
// each state tensor about ten times (one pass per op, plus fp64 copies for the norm); on a CPU the
// step is memory-bound, so one pass is the difference (bench/RESULTS.md, the whole step).
#pragma once
#include <ATen/core/Tensor.h>

#include "../math/adamw_math.h"

namespace edpo {
namespace cpu {

// The step's scalars (adamw_math.h), shared with the CUDA update.
using edpo::AdamWScalars;

// Whether adamw_update can take these tensors: all on the CPU and contiguous, the state (target,
// exp_avg, exp_avg_sq) float32 or float64, the parameter and its gradient of one dtype (the state's,
// or bf16/fp16 with an fp32 master as `target`).
bool adamw_update_supported(const at::Tensor& param, const at::Tensor& target, const at::Tensor& exp_avg,
                            const at::Tensor& exp_avg_sq, const at::Tensor& grad);

// In one pass per element, in the state's dtype and in torch's order:
//   t ← t·decay; m ← m + (1−β1)(g − m); v ← β2·v + (1−β2)·g·g; t ← t + neg_step·m / (√v / bias2_sqrt + eps)
// and, when `target` is a master copy, param ← round(t).
void adamw_update(at::Tensor& param, at::Tensor& target, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                  const at::Tensor& grad, const AdamWScalars& s);

// Whether grad_square_sum can read `grad`: a contiguous CPU float32/float64/bf16/fp16 tensor.
bool grad_square_sum_supported(const at::Tensor& grad);

// Σ g² accumulated in fp64 over fixed blocks, the blocks' sums added in order: the same value
// whatever the thread count, and no fp64 copy of the gradient.
double grad_square_sum(const at::Tensor& grad);

}  // namespace cpu
}  // namespace edpo
