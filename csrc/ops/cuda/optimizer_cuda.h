// CUDA builds only: the optimizer step's kernels (cuda/optimizer_kernels.h) on ATen tensors, in
// the CUDA backend's table (cuda_backend.cc). Each *_supported says whether the tensors fit the
// kernel; otherwise adamw.cc keeps its ATen composition.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "../math/adamw_math.h"

namespace edpo {
namespace cuda {

// All on one CUDA device and contiguous; the state float32 (param float32, bfloat16 or float16) or
// float64 (param float64); grad in the param's dtype; the same numel throughout.
bool adamw_update_supported(const at::Tensor& param, const at::Tensor& target, const at::Tensor& exp_avg,
                            const at::Tensor& exp_avg_sq, const at::Tensor& grad);
void adamw_update(at::Tensor& param, at::Tensor& target, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                  const at::Tensor& grad, const AdamWScalars& scalars);

// Every gradient contiguous on one CUDA device, in float32, float64, bfloat16 or float16.
bool clip_supported(const std::vector<at::Tensor>& grads);
// Σ g² over every gradient (fp64 block sums, added in a fixed order): a float64 [1] device tensor.
at::Tensor grad_square_sum(const std::vector<at::Tensor>& grads);
// The clip given the global Σ g² (a float64 device tensor), on the device: returns a float64 [2]
// device tensor {norm, the factor applied (1 when none)}; the caller reads it once.
at::Tensor clip_by_square_sum(const std::vector<at::Tensor>& grads, const at::Tensor& square_sum, double max_norm);

}  // namespace cuda
}  // namespace edpo
