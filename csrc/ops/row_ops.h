// Device entry points of the fused per-row pass, on ATen tensors. Both take contiguous
// policy/reference [N,V], labels [N] int64 and weights [N] in the accumulation dtype
// (float32, or float64 for float64 logits), and return/consume a [kNumRowStats, N] stats tensor
// in that dtype (the contract of row_stats.h).
#pragma once
#include <ATen/ATen.h>

namespace edpo {

at::ScalarType accumulation_dtype(at::ScalarType logits_dtype);

// Instruction set of the CPU row kernels in use: "avx512", "avx2" or "base".
const char* cpu_kernel_isa();

// Device dispatch: CPU kernels, or the CUDA ones in CUDA builds (an error otherwise).
at::Tensor forward_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                        const at::Tensor& row_weight, double epsilon);
at::Tensor backward_rows(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                         const at::Tensor& row_grad);

at::Tensor forward_rows_cpu(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                            const at::Tensor& row_weight, double epsilon);
at::Tensor backward_rows_cpu(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                             const at::Tensor& row_grad);

// Present only in CUDA builds (EDPO_WITH_CUDA); float32 accumulation only.
at::Tensor forward_rows_cuda(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                             const at::Tensor& row_weight, double epsilon);
at::Tensor backward_rows_cuda(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                              const at::Tensor& row_grad);


}  // namespace edpo
