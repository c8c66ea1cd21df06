// Device entry points of the fused per-row pass, on ATen tensors. Both take contiguous
// policy/reference [N,V], labels [N] int64 and weights [N] in the accumulation dtype
// (float32, or float64 for float64 logits), and return/consume a [kNumRowStats, N] stats tensor
// in that dtype (the contract of row_stats.h).
#pragma once
#include <ATen/ATen.h>

#include "math/pair_math.h"

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

// sequence_sums_cuda's [sequences] float64 results, in this order.
enum SequenceSum : int { kSumPolicy = 0, kSumReference, kSumPlus, kSumMinus, kSumLogits, kSumTokens, kNumSequenceSums };
// CUDA builds only, one kernel each: the masked per-sequence sums of a float32 [kNumRowStats, N]
// stats block (sums_from_row_stats; one [sequences] tensor each), dL/dS → float32 per-row weights (row_grads_from_sequences), and
// pair_math.h over every pair, writing `record` and `grad_sums` and returning the mean loss (float64).
std::vector<at::Tensor> sequence_sums_cuda(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences);
at::Tensor row_grads_cuda(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences);
at::Tensor pair_loss_cuda(const PairSums& sums, int64_t pairs, const PairConstants& constants, at::Tensor& record,
                          at::Tensor& grad_sums);


}  // namespace edpo
