// AdamW and gradient clipping on lists of parameters (see adamw.h). The update order and
// formulas follow torch.optim.AdamW's single-tensor path, so runs match PyTorch step for step.
#include "adamw.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "arg_error.h"
#include "host_sync.h"

namespace edpo {

void adamw_step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& master,
                const std::vector<at::Tensor>& exp_avg, const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                const AdamWOptions& o) {
  TORCH_CHECK(params.size() == master.size() && params.size() == exp_avg.size() && params.size() == exp_avg_sq.size(),
              "adamw: params, master, expAvg and expAvgSq must have the same length");
  TORCH_CHECK(step >= 1, "adamw: step must be >= 1, got ", step);
  EDPO_ARG_CHECK(std::isfinite(o.lr) && o.lr >= 0, "lr: must be a finite number >= 0, got ", o.lr);
  EDPO_ARG_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "betas: must lie in [0, 1)");
  EDPO_ARG_CHECK(std::isfinite(o.eps) && o.eps > 0, "eps: must be > 0, got ", o.eps);
  EDPO_ARG_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "weightDecay: must be >= 0, got ", o.weight_decay);
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
    const at::Tensor grad = grad_raw.to(target.scalar_type());
    at::Tensor m = exp_avg[i], v = exp_avg_sq[i];
    target.mul_(1 - o.lr * o.weight_decay);
    m.lerp_(grad, 1 - o.beta1);
    v.mul_(o.beta2).addcmul_(grad, grad, 1 - o.beta2);
    const at::Tensor denom = (v.sqrt() / bias_correction2_sqrt).add_(o.eps);
    target.addcdiv_(m, denom, -step_size);
    if (has_master) param.copy_(target);
  }
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  EDPO_ARG_CHECK(std::isfinite(max_norm) && max_norm >= 0, "maxGradNorm: must be a finite number >= 0, got ", max_norm);
  at::NoGradGuard no_grad;
  // Per-parameter norms stay on the device; the global norm and the clip coefficient are computed
  // there too, so the whole clip costs one device->host read (the returned norm), not one per tensor.
  std::vector<at::Tensor> norms;
  for (const auto& p : params) {
    const at::Tensor g = p.grad();
    if (g.defined()) norms.push_back(at::linalg_vector_norm(g, 2, c10::nullopt, false, at::kDouble));
  }
  if (norms.empty()) return 0;
  const at::Tensor norm = at::linalg_vector_norm(at::stack(norms), 2, c10::nullopt, false, at::kDouble);
  if (max_norm > 0) {
    // Scale only by a coefficient < 1, and never by a non-finite one (the trainer reports those).
    const at::Tensor coef = max_norm / (norm + 1e-6);
    const at::Tensor scale = at::where(at::logical_and(at::isfinite(norm), coef < 1), coef, at::ones_like(coef));
    for (const auto& p : params) {
      at::Tensor g = p.mutable_grad();
      if (g.defined()) g.mul_(scale.to(g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
    }
  }
  return read_scalar<double>(norm);
}

}  // namespace edpo
