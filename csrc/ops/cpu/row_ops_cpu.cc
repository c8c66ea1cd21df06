// CPU side of the fused per-row pass: picks the SIMD build once, splits rows across libtorch's
// intra-op threads, and maps ATen dtypes onto the raw kernels of cpu/row_kernels.h.
#include <ATen/Parallel.h>

#include <algorithm>

#include <cstdlib>
#include <string>

#include "row_kernels.h"
#include "../row_ops.h"

namespace edpo {
namespace {

enum class Isa { kBase, kAvx2, kAvx512 };

// The widest instruction set both the CPU and the OS support (cpu_supports checks XSAVE state),
// capped by EDPO_CPU_ISA=base|avx2 (tests use it to run every variant on one machine).
Isa detect_isa() {
  Isa best = Isa::kBase;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    best = Isa::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    best = Isa::kAvx2;
#endif
  const char* cap = std::getenv("EDPO_CPU_ISA");
  if (cap != nullptr && std::string(cap) == "base") return Isa::kBase;
  if (cap != nullptr && std::string(cap) == "avx2" && best == Isa::kAvx512) return Isa::kAvx2;
  return best;
}

Isa cpu_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

template <typename T, typename Acc>
cpu::RowKernels<T, Acc> pick_kernels() {
  switch (cpu_isa()) {
    case Isa::kAvx512: return cpu::avx512::kernels<T, Acc>();
    case Isa::kAvx2: return cpu::avx2::kernels<T, Acc>();
    default: return cpu::base::kernels<T, Acc>();
  }
}

// A row costs O(V); let each task take enough rows to amortise scheduling on small vocabularies.
int64_t grain_rows(int64_t vocab) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(vocab, 1)); }

template <typename T, typename Acc>
void run_forward(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                 const at::Tensor& row_weight, Acc epsilon, at::Tensor& stats) {
  const auto kernels = pick_kernels<T, Acc>();
  const int64_t rows = policy.size(0), vocab = policy.size(1);
  const T* a = reinterpret_cast<const T*>(policy.data_ptr());
  const T* b = reinterpret_cast<const T*>(reference.data_ptr());
  const int64_t* y = labels.data_ptr<int64_t>();
  const Acc* w = row_weight.data_ptr<Acc>();
  Acc* out = stats.data_ptr<Acc>();
  at::parallel_for(0, rows, grain_rows(vocab), [&](int64_t begin, int64_t end) {
    kernels.forward(a, b, y, w, begin, end, rows, vocab, epsilon, out);
  });
}

template <typename T, typename Acc>
void run_backward(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                  const at::Tensor& row_grad, at::Tensor& grad) {
  const auto kernels = pick_kernels<T, Acc>();
  const int64_t rows = policy.size(0), vocab = policy.size(1);
  const T* a = reinterpret_cast<const T*>(policy.data_ptr());
  const int64_t* y = labels.data_ptr<int64_t>();
  const Acc* l = lse.data_ptr<Acc>();
  const Acc* g = row_grad.data_ptr<Acc>();
  T* out = reinterpret_cast<T*>(grad.data_ptr());
  at::parallel_for(0, rows, grain_rows(vocab), [&](int64_t begin, int64_t end) {
    kernels.backward(a, y, l, g, begin, end, vocab, out);
  });
}

// The kernels scale logits by log2(e) and mix them as (1±ε)·a ∓ ε·b, so finite logits within a
// factor ~1.5 of the dtype's largest value overflow and give inf/NaN statistics. Only rows whose
// statistics came out non-finite are looked at again (a rare path): when their logits are all
// finite, the cause is that overflow, and it is reported instead of returning NaN.
void check_overflow(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& row_weight,
                    const at::Tensor& stats) {
  const at::Tensor bad = at::logical_and(at::isfinite(stats).logical_not().any(0), row_weight != 0);
  if (!bad.any().item<bool>()) return;
  const at::Tensor rows = bad.nonzero().view({-1});
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const int64_t r = rows[i].item<int64_t>();
    const at::Tensor a = policy[r], b = reference[r];
    if (!at::isfinite(a).all().item<bool>() || !at::isfinite(b).all().item<bool>()) continue;
    const double biggest = std::max(a.abs().max().item<double>(), b.abs().max().item<double>());
    TORCH_CHECK(false, "policyLogits/referenceLogits: row ", r, " (of the flattened [2B*T, V]) holds finite logits up to ",
                biggest, " in magnitude, too large for the ", policy.scalar_type(),
                " kernel (it scales them by log2(e) ~ 1.44 and mixes them by 1 +/- epsilon); logits of a working model "
                "are many orders of magnitude smaller");
  }
}

}  // namespace

const char* cpu_kernel_isa() {
  switch (cpu_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "base";
  }
}

at::ScalarType accumulation_dtype(at::ScalarType logits_dtype) {
  return logits_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor forward_rows_cpu(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                            const at::Tensor& row_weight, double epsilon) {
  const auto acc = accumulation_dtype(policy.scalar_type());
  at::Tensor stats = at::empty({kNumRowStats, policy.size(0)}, policy.options().dtype(acc));
  switch (policy.scalar_type()) {
    case at::kFloat: run_forward<float, float>(policy, reference, labels, row_weight, float(epsilon), stats); break;
    case at::kBFloat16: run_forward<cpu::bf16_bits, float>(policy, reference, labels, row_weight, float(epsilon), stats); break;
    case at::kHalf: run_forward<cpu::half_bits, float>(policy, reference, labels, row_weight, float(epsilon), stats); break;
    case at::kDouble: run_forward<double, double>(policy, reference, labels, row_weight, epsilon, stats); break;
    default: TORCH_CHECK(false, "policyLogits: unsupported dtype ", policy.scalar_type());
  }
  check_overflow(policy, reference, row_weight, stats);
  return stats;
}

at::Tensor backward_rows_cpu(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                             const at::Tensor& row_grad) {
  at::Tensor grad = at::empty_like(policy, at::MemoryFormat::Contiguous);
  switch (policy.scalar_type()) {
    case at::kFloat: run_backward<float, float>(policy, labels, lse, row_grad, grad); break;
    case at::kBFloat16: run_backward<cpu::bf16_bits, float>(policy, labels, lse, row_grad, grad); break;
    case at::kHalf: run_backward<cpu::half_bits, float>(policy, labels, lse, row_grad, grad); break;
    case at::kDouble: run_backward<double, double>(policy, labels, lse, row_grad, grad); break;
    default: TORCH_CHECK(false, "policyLogits: unsupported dtype ", policy.scalar_type());
  }
  return grad;
}

}  // namespace edpo
