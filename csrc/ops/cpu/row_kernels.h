// CPU row kernels of the fused ε-DPO op: the declarations shared by the SIMD builds
// (row_kernels_base.cc, row_kernels_avx2.cc, row_kernels_avx512.cc) and the dispatcher (cpu_backend.cc).
// Raw pointers only: the SIMD builds must not pull in ATen inline code (see row_kernels_impl.h).
#pragma once
#include <cstdint>

#include "../math/row_stats.h"  // the [kNumRowStats, rows] output layout

namespace edpo {
namespace cpu {

// Bit-compatible stand-ins for c10::BFloat16 / c10::Half (both are a bare uint16_t).
struct bf16_bits {
  uint16_t x;
};
struct half_bits {
  uint16_t x;
};

// One kernel set per element type T and accumulation type Acc (float, or double for fp64 input).
template <typename T, typename Acc>
struct RowKernels {
  // Rows [begin, end) of contiguous [rows, vocab] policy/reference logits. Rows whose weight is 0
  // get all-zero statistics and are not read.
  using Forward = void (*)(const T* policy, const T* reference, const int64_t* labels, const Acc* row_weight,
                           int64_t begin, int64_t end, int64_t rows, int64_t vocab, Acc epsilon, Acc* stats);
  // grad[r, j] = row_grad[r] * (onehot(y_r)_j - exp(policy[r, j] - lse[r])); zero rows where row_grad is 0.
  using Backward = void (*)(const T* policy, const int64_t* labels, const Acc* lse, const Acc* row_grad, int64_t begin,
                            int64_t end, int64_t vocab, T* grad);
  Forward forward;
  Backward backward;
};

// The (element, accumulation) type pairs every instruction-set build instantiates, in its namespace.
#define EDPO_INSTANTIATE_ROW_KERNELS                                 \
  template RowKernels<float, float> kernels<float, float>();         \
  template RowKernels<bf16_bits, float> kernels<bf16_bits, float>(); \
  template RowKernels<half_bits, float> kernels<half_bits, float>(); \
  template RowKernels<double, double> kernels<double, double>();

// Instruction-set variants; `row_kernels<T, Acc>()` in the dispatcher picks one at run time.
namespace base {
template <typename T, typename Acc>
RowKernels<T, Acc> kernels();
}
namespace avx2 {
template <typename T, typename Acc>
RowKernels<T, Acc> kernels();
}
namespace avx512 {
template <typename T, typename Acc>
RowKernels<T, Acc> kernels();
}

}  // namespace cpu
}  // namespace edpo
