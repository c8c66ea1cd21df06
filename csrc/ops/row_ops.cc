// Device dispatch of the fused per-row pass: every caller (the logits op, the chunked op) goes
// through here, so a CPU-only build gives one clear error for CUDA tensors.
#include "row_ops.h"

namespace edpo {

at::Tensor forward_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                        const at::Tensor& row_weight, double epsilon) {
#ifdef EDPO_WITH_CUDA
  if (policy.is_cuda()) return forward_rows_cuda(policy, reference, labels, row_weight, epsilon);
#endif
  TORCH_CHECK(policy.is_cpu(), "policyLogits: tensors on ", policy.device(),
              " need a CUDA build of edpo (EDPO_CUDA=1 npm run build:cuda)");
  return forward_rows_cpu(policy, reference, labels, row_weight, epsilon);
}

at::Tensor backward_rows(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                         const at::Tensor& row_grad) {
#ifdef EDPO_WITH_CUDA
  if (policy.is_cuda()) return backward_rows_cuda(policy, labels, lse, row_grad);
#endif
  return backward_rows_cpu(policy, labels, lse, row_grad);
}

}  // namespace edpo
