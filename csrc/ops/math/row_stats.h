// The row-statistics contract between the fused row kernels (CPU: cpu/row_kernels_impl.h, CUDA:
// cuda/epsilon_dpo_kernels.cu) and the ops that reduce them to per-sequence sums. Raw C++ only:
// the CUDA kernels and the SIMD builds include it without ATen.
//
// The forward pass writes one [kNumRowStats, rows] block in the accumulation dtype (float32, or
// float64 for float64 logits): stat k of row r at [k * rows + r]. Rows whose weight (loss mask) is 0
// are not read and get all-zero statistics.
#pragma once
#include <cstdint>

namespace edpo {

enum RowStat : int {
  kPolicyLogp = 0,  // lp  = a[y] − LSE(a)
  kReferenceLogp,   // lr  = b[y] − LSE(b)
  kPlusLogp,        // lp+ = m+[y] − LSE(m+),  m+ = (1+ε)·a − ε·b
  kMinusLogp,       // lp− = m−[y] − LSE(m−),  m− = (1−ε)·a + ε·b
  kLogitSum,        // Σ_j a_j (for the mean-logit metric)
  kPolicyLse,       // LSE(a), kept for the backward pass
  kNumRowStats
};

// The six arrays of one block, by name.
template <typename Acc>
struct RowStatArrays {
  Acc* policy_logp;
  Acc* reference_logp;
  Acc* plus_logp;
  Acc* minus_logp;
  Acc* logit_sum;
  Acc* policy_lse;

  static RowStatArrays in_block(Acc* block, int64_t rows) {
    return RowStatArrays{block + kPolicyLogp * rows, block + kReferenceLogp * rows, block + kPlusLogp * rows,
                         block + kMinusLogp * rows,  block + kLogitSum * rows,      block + kPolicyLse * rows};
  }
};

}  // namespace edpo
