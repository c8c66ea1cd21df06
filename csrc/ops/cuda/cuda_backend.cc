// The CUDA backend (backend.h), linked only into CUDA builds: checks what the raw launchers of
// epsilon_dpo_kernels.h and pair_kernels.h assume and calls them on the current stream; the
// optimizer's kernels through optimizer_cuda.h.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../backend.h"
#include "../math/row_stats.h"
#include "cuda_launch.h"
#include "epsilon_dpo_kernels.h"
#include "optimizer_cuda.h"
#include "pair_kernels.h"

namespace edpo {
namespace {

edpo_cuda::Dtype kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return edpo_cuda::Dtype::F32;
    case at::kBFloat16:
      return edpo_cuda::Dtype::BF16;
    case at::kHalf:
      return edpo_cuda::Dtype::F16;
    default:
      TORCH_CHECK(false, "policyLogits: CUDA kernels take float32, bfloat16 or float16 logits, got ", t,
                  " (float64 runs on the CPU)");
  }
}

at::Tensor forward_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
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

at::Tensor backward_rows(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
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

std::vector<at::Tensor> sequence_sums(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences) {
  const c10::cuda::CUDAGuard device_guard(stats.device());
  TORCH_CHECK(stats.scalar_type() == at::kFloat && stats.dim() == 2 && stats.size(0) == kNumRowStats,
              "sequence_sums_cuda: expected float32 [", int(kNumRowStats), ", N] stats, got ", stats.scalar_type(), " ",
              stats.sizes());
  const int64_t rows = stats.size(1);
  TORCH_CHECK(sequences > 0 && rows % sequences == 0 && row_weight.numel() == rows, "sequence_sums_cuda: ", rows,
              " rows are not ", sequences, " sequences of equal length");
  const at::Tensor s = stats.contiguous(), w = row_weight.to(at::kFloat).contiguous();
  std::vector<at::Tensor> out;
  edpo_cuda::SequenceSumsOut ptrs{};
  for (int k = 0; k < kNumSequenceSums; ++k) {
    out.push_back(at::empty({sequences}, stats.options().dtype(at::kDouble)));
    ptrs.sums[k] = out.back().data_ptr<double>();
  }
  check_launch(edpo_cuda::sequence_sums(s.data_ptr<float>(), w.data_ptr<float>(), sequences, rows / sequences, ptrs,
                                        c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::sequence_sums");
  return out;
}

at::Tensor row_grads(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences) {
  const c10::cuda::CUDAGuard device_guard(row_weight.device());
  const int64_t rows = row_weight.numel();
  TORCH_CHECK(sequences > 0 && rows % sequences == 0 && grad_sequences.numel() == sequences, "row_grads_cuda: ", rows,
              " rows are not ", sequences, " sequences of equal length");
  const at::Tensor g = grad_sequences.to(row_weight.device(), at::kDouble).contiguous();
  const at::Tensor w = row_weight.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({rows}, w.options());
  check_launch(edpo_cuda::row_grads(g.data_ptr<double>(), w.data_ptr<float>(), sequences, rows / sequences,
                                    out.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::row_grads");
  return out;
}

at::Tensor pair_loss(const PairSums& sums, int64_t pairs, const PairConstants& constants, at::Tensor& record,
                     at::Tensor& grad_sums) {
  const c10::cuda::CUDAGuard device_guard(record.device());
  TORCH_CHECK(record.is_contiguous() && grad_sums.is_contiguous() && record.scalar_type() == at::kDouble &&
                  grad_sums.scalar_type() == at::kDouble,
              "pair_loss_cuda: record and grad_sums must be contiguous float64");
  at::Tensor loss = at::empty({}, record.options());
  check_launch(edpo_cuda::pair_loss(sums, pairs, constants, record.data_ptr<double>(), grad_sums.data_ptr<double>(),
                                    loss.data_ptr<double>(), c10::cuda::getCurrentCUDAStream().stream()),
               "edpo_cuda::pair_loss");
  return loss;
}

// Index 0 of the allocator's stat arrays is the aggregate over its pools (StatType::AGGREGATE, whose
// namespace moved between libtorch 1.13 and 2.x).
// Index -1: the current device.
DeviceMemory memory(c10::DeviceIndex index) {
  if (index < 0) index = c10::cuda::current_device();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const auto& allocated = stats.allocated_bytes[0];
  const auto& reserved = stats.reserved_bytes[0];
  return {double(allocated.current), double(allocated.peak), double(reserved.current), double(reserved.peak)};
}

void reset_memory_peak(c10::DeviceIndex index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(index < 0 ? c10::cuda::current_device() : index);
}

Backend table() {
  Backend b;
  b.name = "cuda";
  b.forward_rows = &forward_rows;
  b.backward_rows = &backward_rows;
  b.sequence_sums = &sequence_sums;  // one kernel instead of ~20 small ATen ops per call
  b.row_grads = &row_grads;
  b.pair_loss = &pair_loss;
  b.adamw_supported = &cuda::adamw_update_supported;
  b.adamw_update = &cuda::adamw_update;
  b.square_sum_supported = &cuda::clip_supported;
  b.grad_square_sum = &cuda::grad_square_sum;
  b.clip_by_square_sum = &cuda::clip_by_square_sum;
  b.memory = &memory;
  b.reset_memory_peak = &reset_memory_peak;
  return b;
}

const Backend kCuda = table();
const BackendRegistration kRegistered(c10::DeviceType::CUDA, &kCuda);

}  // namespace
}  // namespace edpo
