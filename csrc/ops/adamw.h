// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), with fp32
// master weights for reduced-precision parameters, and global gradient-norm clipping.
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace edpo {

struct AdamWOptions {
  double lr = 1e-6;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// One optimizer step t (1-based) over every parameter that has a gradient. `master[i]` is the fp32
// copy of a bf16/fp16 parameter (updated, then rounded into the parameter) or undefined for
// fp32/fp64 parameters; exp_avg / exp_avg_sq are in the master's (or parameter's) dtype.
void adamw_step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& master,
                const std::vector<at::Tensor>& exp_avg, const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                const AdamWOptions& options);

// The global L2 norm of all gradients (accumulated in fp64); when max_norm > 0 and the norm exceeds
// it, scales every gradient by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does.
// Returns the norm before clipping (inf/NaN when a gradient is not finite; nothing is scaled then).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// The same in two halves, so that several ranks can add their sums in between (js_dist.cc):
// Σ g² over `grads` as a float64 [1] tensor on their device (the CPU when there are none), and the
// clip of `grads` given the global Σ g² (on the CPU or their device), returning the norm.
at::Tensor grad_square_sum(const std::vector<at::Tensor>& grads);
double clip_by_square_sum(const std::vector<at::Tensor>& grads, const at::Tensor& square_sum, double max_norm);

}  // namespace edpo
