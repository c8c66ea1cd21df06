// AdamW and gradient clipping on lists of parameters (see adamw.h). The update order and
// formulas follow torch.optim.AdamW's single-tensor path, so runs match PyTorch step for step.
#include "adamw.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "arg_error.h"
#include "backend.h"
#include "host_sync.h"

namespace edpo {
namespace {

// Elements per slice of an elementwise pass over a large tensor: 4 Mi (16 MiB in fp32).
constexpr int64_t kSliceElements = int64_t(1) << 22;

// The same-shaped `tensors` as consecutive slices of their flattened views, tensors.size() per
// slice in the given order; the tensors themselves (one slice) when one is not contiguous.
std::vector<at::Tensor> flat_slices(const std::vector<at::Tensor>& tensors) {
  const int64_t n = tensors[0].numel();
  bool flat = true;
  for (const auto& t : tensors) flat = flat && t.is_contiguous();
  if (!flat || n <= kSliceElements) return tensors;
  std::vector<at::Tensor> out;
  for (int64_t start = 0; start < n; start += kSliceElements)
    for (const auto& t : tensors) out.push_back(t.view({-1}).narrow(0, start, std::min(kSliceElements, n - start)));
  return out;
}

}  // namespace

void adamw_step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& master,
                const std::vector<at::Tensor>& exp_avg, const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                const AdamWOptions& o) {
  TORCH_CHECK(params.size() == master.size() && params.size() == exp_avg.size() && params.size() == exp_avg_sq.size(),
              "adamw: params, master, expAvg and expAvgSq must have the same length");
  TORCH_CHECK(step >= 1, "adamw: step must be >= 1, got ", step);
  EDPO_ARG_CHECK(std::isfinite(o.lr) && o.lr >= 0, "lr: must be a finite number >= 0, got ", o.lr);
  EDPO_ARG_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "betas: must lie in [0, 1)");
  EDPO_ARG_CHECK(std::isfinite(o.eps) && o.eps > 0, "eps: must be > 0, got ", o.eps);
  EDPO_ARG_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "weightDecay: must be >= 0, got ",
                 o.weight_decay);
  at::NoGradGuard no_grad;
  const double bias_correction1 = 1 - std::pow(o.beta1, double(step));
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(o.beta2, double(step)));
  const double step_size = o.lr / bias_correction1;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor param = params[i];
    const at::Tensor grad_raw = param.grad();
    if (!grad_raw.defined()) continue;
    const bool has_master = master[i].defined();
    at::Tensor target = has_master ? master[i] : param;
    TORCH_CHECK(exp_avg[i].sizes() == param.sizes() && exp_avg_sq[i].sizes() == param.sizes() &&
                    target.sizes() == param.sizes(),
                "adamw: state of parameter ", i, " has the wrong shape");
    // One fused pass (the device's backend: cpu/optimizer_kernels.cc, cuda/optimizer_kernels.cu):
    // no temporaries, each state element read and written once instead of once per op.
    const AdamWScalars scalars{1 - o.lr * o.weight_decay, o.beta1, o.beta2, bias_correction2_sqrt, o.eps, -step_size};
    const Backend* backend = find_backend(param.device().type());
    if (backend != nullptr && backend->adamw_supported != nullptr &&
        backend->adamw_supported(param, target, exp_avg[i], exp_avg_sq[i], grad_raw)) {
      at::Tensor m = exp_avg[i], v = exp_avg_sq[i];
      backend->adamw_update(param, target, m, v, grad_raw, scalars);
      continue;
    }
    // Slice by slice, so the temporaries (the gradient in the state's dtype, the denominator) are
    // slice-sized: whole-tensor ones cost 3 × 545 MB on a 151936×896 embedding, above the state.
    // Every operation is elementwise, so the result does not depend on the slicing.
    const std::vector<at::Tensor> slices = flat_slices({param, target, exp_avg[i], exp_avg_sq[i], grad_raw});
    for (size_t s = 0; s < slices.size(); s += 5) {
      at::Tensor p = slices[s], t = slices[s + 1], m = slices[s + 2], v = slices[s + 3];
      const at::Tensor grad = slices[s + 4].to(t.scalar_type());
      t.mul_(1 - o.lr * o.weight_decay);
      m.lerp_(grad, 1 - o.beta1);
      v.mul_(o.beta2).addcmul_(grad, grad, 1 - o.beta2);
      at::Tensor denom = v.sqrt();
      denom.div_(bias_correction2_sqrt).add_(o.eps);
      t.addcdiv_(m, denom, -step_size);
      if (has_master) p.copy_(t);
    }
  }
}

at::Tensor grad_square_sum(const std::vector<at::Tensor>& grads) {
  at::NoGradGuard no_grad;
  if (grads.empty()) return at::zeros({1}, at::TensorOptions().dtype(at::kDouble));
  // The device's one-pass sum (CPU: fp64 over each gradient, no fp64 copy; CUDA: fixed fp64 block
  // sums, then one kernel adds them), when it takes every gradient.
  const Backend* backend = find_backend(grads[0].device().type());
  if (backend != nullptr && backend->square_sum_supported != nullptr && backend->square_sum_supported(grads))
    return backend->grad_square_sum(grads);
  // Elsewhere, by slice: a reduction in fp64 of a bf16/fp32 tensor first copies it to fp64
  // (1.1 GB for a 151936×896 embedding); Σ g² = Σ over slices of ‖slice‖².
  std::vector<at::Tensor> norms;
  for (const auto& g : grads)
    for (const auto& slice : flat_slices({g}))
      norms.push_back(at::linalg_vector_norm(slice, 2, c10::nullopt, false, at::kDouble));
  return at::stack(norms).square().sum().reshape({1});
}

double clip_by_square_sum(const std::vector<at::Tensor>& grads, const at::Tensor& square_sum, double max_norm) {
  EDPO_ARG_CHECK(std::isfinite(max_norm) && max_norm >= 0, "maxGradNorm: must be a finite number >= 0, got ", max_norm);
  at::NoGradGuard no_grad;
  if (square_sum.is_cpu()) {
    // The norm is on the host already; the gradients are touched again only when they are clipped.
    const double norm = std::sqrt(square_sum.item<double>());
    const double coef = max_norm / (norm + 1e-6);
    if (max_norm > 0 && std::isfinite(norm) && coef < 1)
      for (const auto& g : grads) at::Tensor(g).mul_(coef);
    return norm;
  }
  // The factor and the scaling on the device, where the backend has them; the one read is the norm.
  const Backend* backend = grads.empty() ? nullptr : find_backend(grads[0].device().type());
  if (backend != nullptr && backend->clip_by_square_sum != nullptr && backend->square_sum_supported != nullptr &&
      backend->square_sum_supported(grads))
    return read_scalar<double>(backend->clip_by_square_sum(grads, square_sum, max_norm)[0]);
  // The norm and the clip coefficient stay on the device too: the whole clip costs one
  // device->host read (the returned norm).
  const at::Tensor norm = square_sum.reshape({}).sqrt();
  if (max_norm > 0) {
    // Scale only by a coefficient < 1, and never by a non-finite one (the trainer reports those).
    const at::Tensor coef = max_norm / (norm + 1e-6);
    const at::Tensor scale = at::where(at::logical_and(at::isfinite(norm), coef < 1), coef, at::ones_like(coef));
    for (const auto& g : grads) at::Tensor(g).mul_(scale.to(g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  }
  return read_scalar<double>(norm);
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  // No gradients: a zero sum on the CPU, so the norm is 0 (and max_norm is still checked).
  return clip_by_square_sum(grads, grad_square_sum(grads), max_norm);
}

}  // namespace edpo
