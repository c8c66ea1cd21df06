// CUDA side of the fused per-row pass (built only with EDPO_WITH_CUDA): checks what the raw
// launchers in cuda/epsilon_dpo_kernels.h assume, then calls them on the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../../cuda/epsilon_dpo_kernels.h"
#include "row_stats.h"
#include "row_ops.h"

namespace edpo {
namespace {

edpo_cuda::Dtype kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return edpo_cuda::Dtype::F32;
    case at::kBFloat16: return edpo_cuda::Dtype::BF16;
    case at::kHalf: return edpo_cuda::Dtype::F16;
    default:
      TORCH_CHECK(false, "policyLogits: CUDA kernels take float32, bfloat16 or float16 logits, got ", t,
                  " (float64 runs on the CPU)");
  }
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

}  // namespace

at::Tensor forward_rows_cuda(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                             const at::Tensor& row_weight, double epsilon) {
  const c10::cuda::CUDAGuard device_guard(policy.device());
  const auto dtype = kernel_dtype(policy.scalar_type());
  TORCH_CHECK(policy.size(1) <= 262144, "policyLogits: CUDA kernels take V <= 262144, got ", policy.size(1));
  const at::Tensor w = row_weight.to(at::kFloat).contiguous();
  at::Tensor stats = at::empty({kNumRowStats, policy.size(0)}, policy.options().dtype(at::kFloat));
  const int64_t rows = policy.size(0);
  const auto out = edpo_cuda::RowStats::in_block(stats.data_ptr<float>(), rows);
  check_launch(edpo_cuda::forward_rows(policy.data_ptr(), reference.data_ptr(), labels.data_ptr<int64_t>(),
                                       w.data_ptr<float>(), rows, policy.size(1), float(epsilon), dtype, out,
                                       c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::forward_rows");
  return stats;
}

at::Tensor backward_rows_cuda(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                              const at::Tensor& row_grad) {
  const c10::cuda::CUDAGuard device_guard(policy.device());
  const auto dtype = kernel_dtype(policy.scalar_type());
  at::Tensor grad = at::empty_like(policy, at::MemoryFormat::Contiguous);
  const at::Tensor l = lse.to(at::kFloat).contiguous(), g = row_grad.to(at::kFloat).contiguous();
  check_launch(edpo_cuda::backward_rows(policy.data_ptr(), labels.data_ptr<int64_t>(), l.data_ptr<float>(),
                                        g.data_ptr<float>(), policy.size(0), policy.size(1), dtype, grad.data_ptr(),
                                        c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::backward_rows");
  return grad;
}

}  // namespace edpo
