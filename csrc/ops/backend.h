// One device's kernels as a table, chosen once per device type: the ops call through it instead
// of testing the device and the build at each call site. Each backend's own file fills its table
// and registers it when the library loads (cpu/cpu_backend.cc always; cuda/cuda_backend.cc when
// the CUDA build links it in), as a PyTorch extension registers its kernels per dispatch key.
// The row pass and pair_loss are required; any other null entry means the device has no fused
// form of that step, and the caller's ATen form runs.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <vector>

#include "math/adamw_math.h"
#include "math/pair_math.h"

namespace edpo {

// The row pass accumulates in float32, or in float64 for float64 logits.
inline at::ScalarType accumulation_dtype(at::ScalarType logits_dtype) {
  return logits_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// A device allocator's counts, in bytes: its live tensors now and at their peak since the last
// reset_memory_peak, and what it holds from the driver (live tensors plus its cache).
struct DeviceMemory {
  double tensors = 0, peak_tensors = 0, reserved = 0, peak_reserved = 0;
};

// The order of Backend::sequence_sums' [sequences] float64 results.
enum SequenceSum : int { kSumPolicy = 0, kSumReference, kSumPlus, kSumMinus, kSumLogits, kSumTokens, kNumSequenceSums };

struct Backend {
  const char* name = nullptr;
  // The fused per-row pass (math/row_stats.h): contiguous policy/reference [N, V], labels [N]
  // int64 and row weights [N] in the accumulation dtype give a [kNumRowStats, N] stats block;
  // backward_rows gives dL/d(policy) [N, V] from the per-row lse and dL/d(row log-prob).
  at::Tensor (*forward_rows)(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                             const at::Tensor& row_weight, double epsilon) = nullptr;
  at::Tensor (*backward_rows)(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                              const at::Tensor& row_grad) = nullptr;
  // A float32 stats block's masked per-sequence sums (SequenceSum order, one [sequences] tensor
  // each), and float32 per-row weights from dL/dS per sequence. Null: sequence_sums.cc's ATen sums.
  std::vector<at::Tensor> (*sequence_sums)(const at::Tensor& stats, const at::Tensor& row_weight,
                                           int64_t sequences) = nullptr;
  at::Tensor (*row_grads)(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences) = nullptr;
  // pair_math.h over every pair (float64 sums on this device): writes `record` and `grad_sums`,
  // returns the mean loss as a float64 scalar tensor.
  at::Tensor (*pair_loss)(const PairSums& sums, int64_t pairs, const PairConstants& constants, at::Tensor& record,
                          at::Tensor& grad_sums) = nullptr;
  // AdamW on one parameter in one pass, where adamw_supported takes the tensors (else adamw.cc's
  // sliced ATen update).
  bool (*adamw_supported)(const at::Tensor& param, const at::Tensor& target, const at::Tensor& exp_avg,
                          const at::Tensor& exp_avg_sq, const at::Tensor& grad) = nullptr;
  void (*adamw_update)(at::Tensor& param, at::Tensor& target, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                       const at::Tensor& grad, const AdamWScalars& scalars) = nullptr;
  // Σ g² over gradients that square_sum_supported takes: a float64 [1] tensor on this device.
  bool (*square_sum_supported)(const std::vector<at::Tensor>& grads) = nullptr;
  at::Tensor (*grad_square_sum)(const std::vector<at::Tensor>& grads) = nullptr;
  // The clip given the global Σ g² on the device: float64 [2] {norm, factor applied}. Null: the
  // norm is read first (CPU: it is on the host already).
  at::Tensor (*clip_by_square_sum)(const std::vector<at::Tensor>& grads, const at::Tensor& square_sum,
                                   double max_norm) = nullptr;
  // The device's own allocator (CUDA's caching allocator), for one device index: a GPU step's
  // memory is there, not in the addon's counting CPU allocator. Null: none (the CPU's is counted).
  DeviceMemory (*memory)(c10::DeviceIndex index) = nullptr;
  void (*reset_memory_peak)(c10::DeviceIndex index) = nullptr;
};

// The table for a device type, or null when this build has none.
const Backend* find_backend(c10::DeviceType type);
// The table for `device`; with none, an error naming `what` and the build that has one.
const Backend& backend_for(const c10::Device& device, const char* what);

// A backend's file registers its table: `const BackendRegistration r(c10::DeviceType::CUDA, table());`.
struct BackendRegistration {
  BackendRegistration(c10::DeviceType type, const Backend* backend);
};

// The row pass on the policy's device (errors blame `policyLogits`, the op's argument).
inline at::Tensor forward_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                               const at::Tensor& row_weight, double epsilon) {
  return backend_for(policy.device(), "policyLogits").forward_rows(policy, reference, labels, row_weight, epsilon);
}
inline at::Tensor backward_rows(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                                const at::Tensor& row_grad) {
  return backend_for(policy.device(), "policyLogits").backward_rows(policy, labels, lse, row_grad);
}

}  // namespace edpo
