// See optimizer_cuda.h: checks what cuda/optimizer_kernels.h assumes, then launches on the current stream.
#include "optimizer_cuda.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "optimizer_kernels.h"
#include "cuda_launch.h"

namespace edpo {
namespace cuda {
namespace {

bool param_dtype(at::ScalarType t, edpo_cuda::ParamDtype* out) {
  switch (t) {
    case at::kFloat:
      *out = edpo_cuda::ParamDtype::F32;
      return true;
    case at::kDouble:
      *out = edpo_cuda::ParamDtype::F64;
      return true;
    case at::kBFloat16:
      *out = edpo_cuda::ParamDtype::BF16;
      return true;
    case at::kHalf:
      *out = edpo_cuda::ParamDtype::F16;
      return true;
    default:
      return false;
  }
}

edpo_cuda::ParamDtype param_dtype(at::ScalarType t) {
  edpo_cuda::ParamDtype d{};
  TORCH_CHECK(param_dtype(t, &d), "optimizer kernels: unsupported dtype ", t);
  return d;
}

}  // namespace

bool adamw_update_supported(const at::Tensor& param, const at::Tensor& target, const at::Tensor& exp_avg,
                            const at::Tensor& exp_avg_sq, const at::Tensor& grad) {
  for (const at::Tensor* t : {&param, &target, &exp_avg, &exp_avg_sq, &grad})
    if (!t->defined() || !t->is_cuda() || !t->is_contiguous() || t->device() != param.device() ||
        t->numel() != param.numel())
      return false;
  const auto s = target.scalar_type(), p = param.scalar_type();
  if (exp_avg.scalar_type() != s || exp_avg_sq.scalar_type() != s || grad.scalar_type() != p) return false;
  if (s == at::kFloat) return p == at::kFloat ? param.is_same(target) : (p == at::kBFloat16 || p == at::kHalf);
  return s == at::kDouble && p == at::kDouble && param.is_same(target);
}

void adamw_update(at::Tensor& param, at::Tensor& target, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                  const at::Tensor& grad, const AdamWScalars& scalars) {
  const c10::cuda::CUDAGuard device_guard(param.device());
  check_launch(edpo_cuda::adamw_update(param_dtype(param.scalar_type()), param.data_ptr(), target.data_ptr(),
                                       exp_avg.data_ptr(), exp_avg_sq.data_ptr(), grad.data_ptr(), param.numel(),
                                       scalars, c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::adamw_update");
}

bool clip_supported(const std::vector<at::Tensor>& grads) {
  if (grads.empty()) return false;
  edpo_cuda::ParamDtype d{};
  for (const auto& g : grads)
    if (!g.is_cuda() || !g.is_contiguous() || g.device() != grads[0].device() || !param_dtype(g.scalar_type(), &d))
      return false;
  return true;
}

at::Tensor grad_square_sum(const std::vector<at::Tensor>& grads) {
  const c10::cuda::CUDAGuard device_guard(grads[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  int64_t blocks = 0;
  for (const auto& g : grads) blocks += edpo_cuda::square_sum_blocks(g.numel());
  const auto f64 = grads[0].options().dtype(at::kDouble);
  const at::Tensor partials = at::empty({std::max<int64_t>(blocks, 1)}, f64);
  at::Tensor sum = at::empty({1}, f64);
  double* p = partials.data_ptr<double>();
  for (const auto& g : grads) {
    check_launch(edpo_cuda::square_sum_partials(param_dtype(g.scalar_type()), g.data_ptr(), g.numel(), p, stream),
                 "edpo_cuda::square_sum_partials");
    p += edpo_cuda::square_sum_blocks(g.numel());
  }
  check_launch(edpo_cuda::sum_partials(partials.data_ptr<double>(), blocks, sum.data_ptr<double>(), stream),
               "edpo_cuda::sum_partials");
  return sum;
}

at::Tensor clip_by_square_sum(const std::vector<at::Tensor>& grads, const at::Tensor& square_sum, double max_norm) {
  const c10::cuda::CUDAGuard device_guard(grads[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const at::Tensor sum = square_sum.to(grads[0].device(), at::kDouble).contiguous();
  at::Tensor norm_scale = at::empty({2}, sum.options());
  check_launch(edpo_cuda::clip_factor(sum.data_ptr<double>(), max_norm, norm_scale.data_ptr<double>(), stream),
               "edpo_cuda::clip_factor");
  for (const auto& g : grads)
    check_launch(edpo_cuda::scale_grad(param_dtype(g.scalar_type()), g.data_ptr(), g.numel(),
                                       norm_scale.data_ptr<double>(), stream),
                 "edpo_cuda::scale_grad");
  return norm_scale;
}

}  // namespace cuda
}  // namespace edpo
