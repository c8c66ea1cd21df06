// The CPU backend (backend.h): the fused row pass split across libtorch's intra-op threads on
// the row kernels of the build cpu_isa.h picks, the pair loss as a host loop over pair_math.h,
// and the optimizer's one-pass kernels. ATen forms serve the per-sequence sums.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../backend.h"
#include "../math/row_stats.h"
#include "cpu_isa.h"
#include "optimizer_kernels.h"
#include "row_kernels.h"

namespace edpo {
namespace {

using cpu::Isa;

template <typename T, typename Acc>
cpu::RowKernels<T, Acc> pick_kernels() {
  switch (cpu::isa()) {
    case Isa::kAvx512:
      return cpu::avx512::kernels<T, Acc>();
    case Isa::kAvx2:
      return cpu::avx2::kernels<T, Acc>();
    default:
      return cpu::base::kernels<T, Acc>();
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
void run_backward(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse, const at::Tensor& row_grad,
                  at::Tensor& grad) {
  const auto kernels = pick_kernels<T, Acc>();
  const int64_t rows = policy.size(0), vocab = policy.size(1);
  const T* a = reinterpret_cast<const T*>(policy.data_ptr());
  const int64_t* y = labels.data_ptr<int64_t>();
  const Acc* l = lse.data_ptr<Acc>();
  const Acc* g = row_grad.data_ptr<Acc>();
  T* out = reinterpret_cast<T*>(grad.data_ptr());
  at::parallel_for(0, rows, grain_rows(vocab),
                   [&](int64_t begin, int64_t end) { kernels.backward(a, y, l, g, begin, end, vocab, out); });
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
    TORCH_CHECK(false, "policyLogits/referenceLogits: row ", r,
                " (of the flattened [2B*T, V]) holds finite logits up to ", biggest,
                " in magnitude, too large for the ", policy.scalar_type(),
                " kernel (it scales them by log2(e) ~ 1.44 and mixes them by 1 +/- epsilon); logits of a working model "
                "are many orders of magnitude smaller");
  }
}

at::Tensor forward_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                        const at::Tensor& row_weight, double epsilon) {
  const auto acc = accumulation_dtype(policy.scalar_type());
  at::Tensor stats = at::empty({kNumRowStats, policy.size(0)}, policy.options().dtype(acc));
  switch (policy.scalar_type()) {
    case at::kFloat:
      run_forward<float, float>(policy, reference, labels, row_weight, float(epsilon), stats);
      break;
    case at::kBFloat16:
      run_forward<cpu::bf16_bits, float>(policy, reference, labels, row_weight, float(epsilon), stats);
      break;
    case at::kHalf:
      run_forward<cpu::half_bits, float>(policy, reference, labels, row_weight, float(epsilon), stats);
      break;
    case at::kDouble:
      run_forward<double, double>(policy, reference, labels, row_weight, epsilon, stats);
      break;
    default:
      TORCH_CHECK(false, "policyLogits: unsupported dtype ", policy.scalar_type());
  }
  check_overflow(policy, reference, row_weight, stats);
  return stats;
}

at::Tensor backward_rows(const at::Tensor& policy, const at::Tensor& labels, const at::Tensor& lse,
                         const at::Tensor& row_grad) {
  at::Tensor grad = at::empty_like(policy, at::MemoryFormat::Contiguous);
  switch (policy.scalar_type()) {
    case at::kFloat:
      run_backward<float, float>(policy, labels, lse, row_grad, grad);
      break;
    case at::kBFloat16:
      run_backward<cpu::bf16_bits, float>(policy, labels, lse, row_grad, grad);
      break;
    case at::kHalf:
      run_backward<cpu::half_bits, float>(policy, labels, lse, row_grad, grad);
      break;
    case at::kDouble:
      run_backward<double, double>(policy, labels, lse, row_grad, grad);
      break;
    default:
      TORCH_CHECK(false, "policyLogits: unsupported dtype ", policy.scalar_type());
  }
  return grad;
}

at::Tensor pair_loss(const PairSums& sums, int64_t pairs, const PairConstants& constants, at::Tensor& record,
                     at::Tensor& grad_sums) {
  double* rec = record.data_ptr<double>();
  double* grad = grad_sums.data_ptr<double>();
  double total = 0;
  for (int64_t i = 0; i < pairs; ++i)
    total += pair_terms(sums, pairs, i, constants, rec + i * kNumPairColumns, grad + i, grad + pairs + i);
  return at::scalar_tensor(total / double(pairs), record.options());
}

bool square_sum_supported(const std::vector<at::Tensor>& grads) {
  for (const auto& g : grads)
    if (!cpu::grad_square_sum_supported(g)) return false;
  return true;
}

// One fp64 pass over each gradient, no fp64 copy of it; the sum is on the host already.
at::Tensor grad_square_sum(const std::vector<at::Tensor>& grads) {
  double sum = 0;
  for (const auto& g : grads) sum += cpu::grad_square_sum(g);
  return at::full({1}, sum, at::TensorOptions().dtype(at::kDouble));
}

Backend table() {
  Backend b;
  b.name = "cpu";
  b.forward_rows = &forward_rows;
  b.backward_rows = &backward_rows;
  b.pair_loss = &pair_loss;
  b.adamw_supported = &cpu::adamw_update_supported;
  b.adamw_update = &cpu::adamw_update;
  b.square_sum_supported = &square_sum_supported;
  b.grad_square_sum = &grad_square_sum;
  return b;
}

const Backend kCpu = table();
const BackendRegistration kRegistered(c10::DeviceType::CPU, &kCpu);

}  // namespace
}  // namespace edpo
