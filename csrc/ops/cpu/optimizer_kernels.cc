// See optimizer_kernels.h. Plain loops the compiler vectorises (the build's -fno-math-errno lets it
// vectorise the square root); ATen's thread pool splits them.
#include "optimizer_kernels.h"

#include "cpu_isa.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace edpo {
namespace cpu {
namespace {

// Elements per task: enough to amortise scheduling, small enough to keep both cores busy on a
// 1024-element bias as well as on a 131M-element embedding.
constexpr int64_t kGrain = 1 << 15;

bool cpu_contiguous(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && t.is_contiguous(); }

// bf16 storage is a bare uint16_t here (a struct wrapper keeps GCC's vectoriser off the loop); the
// conversions have no branches (c10::BFloat16's NaN test would also keep it scalar) and round as c10
// does: to nearest even, NaN to the quiet NaN.
using Bf16 = uint16_t;
template <typename S, typename P>
inline S load(P x) {
  return S(x);
}
template <>
inline float load<float, Bf16>(Bf16 x) {
  const uint32_t u = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
template <typename P, typename S>
inline P store(S x) {
  return P(x);
}
template <>
inline Bf16 store<Bf16, float>(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return Bf16(f != f ? 0x7FC0u : rounded);
}

// S: the state's dtype (the arithmetic's); P: the parameter's and gradient's storage. kLowWeight
// picks which of ATen's two lerp forms applies (|1 − β1| < 0.5), outside the loop so it vectorises.
template <typename S, typename P, bool kLowWeight>
inline __attribute__((always_inline)) void update_range(P* __restrict param, S* __restrict target, S* __restrict m,
                                                        S* __restrict v, const P* __restrict grad, int64_t begin,
                                                        int64_t end, const AdamWElementScalars<S> s) {
  constexpr bool kMaster = !std::is_same<S, P>::value;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const S ti = adamw_element<S, kLowWeight>(load<S>(grad[i]), target[i], m[i], v[i], s);
    if constexpr (kMaster) param[i] = store<P>(ti);
  }
}

// The same loop built for AVX2 + FMA (8 fp32 lanes, and bf16 packing the base SSE2 build does two
// lanes at a time), chosen at run time by cpu_isa.h's probe, which the row kernels use too (an
// AVX-512 CPU runs this AVX2 build: the update is memory-bound).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EDPO_OPTIM_AVX2 1
template <typename S, typename P, bool kLowWeight>
__attribute__((target("avx2,fma"))) void update_range_avx2(P* param, S* target, S* m, S* v, const P* grad,
                                                           int64_t begin, int64_t end, const AdamWElementScalars<S> s) {
  update_range<S, P, kLowWeight>(param, target, m, v, grad, begin, end, s);
}
Isa update_isa() { return isa() == Isa::kBase ? Isa::kBase : Isa::kAvx2; }
#else
#define EDPO_OPTIM_AVX2 0
Isa update_isa() { return Isa::kBase; }
#endif

template <typename S, typename P, bool kLowWeight>
void update(P* param, S* target, S* m, S* v, const P* grad, int64_t n, const AdamWScalars& sc) {
  const AdamWElementScalars<S> s = element_scalars<S>(sc);
  const Isa used = update_isa();
  note_optimizer_isa(used);
  const bool wide = used == Isa::kAvx2;
  (void)wide;  // unread where there is no AVX2 build
  at::parallel_for(0, n, kGrain, [=](int64_t begin, int64_t end) {
#if EDPO_OPTIM_AVX2
    if (wide) return update_range_avx2<S, P, kLowWeight>(param, target, m, v, grad, begin, end, s);
#endif
    update_range<S, P, kLowWeight>(param, target, m, v, grad, begin, end, s);
  });
}

template <typename S, typename P>
void update_as(at::Tensor& param, at::Tensor& target, at::Tensor& m, at::Tensor& v, const at::Tensor& grad,
               const AdamWScalars& sc) {
  auto* p = reinterpret_cast<P*>(param.data_ptr());
  const auto* g = reinterpret_cast<const P*>(grad.data_ptr());
  if (adamw_low_weight(sc))
    update<S, P, true>(p, target.data_ptr<S>(), m.data_ptr<S>(), v.data_ptr<S>(), g, param.numel(), sc);
  else
    update<S, P, false>(p, target.data_ptr<S>(), m.data_ptr<S>(), v.data_ptr<S>(), g, param.numel(), sc);
}

// Blocks of fixed size, so the sum's order (and value) does not depend on the thread count.
constexpr int64_t kSumBlock = 1 << 14;

// Every storage type converts exactly: through float for the 16-bit ones, directly for double.
template <typename T>
double widen(T x) {
  return double(load<float>(x));
}
double widen(double x) { return x; }

template <typename T>
double block_square_sum(const T* __restrict g, int64_t begin, int64_t end) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = begin; i < end; ++i) {
    const double x = widen(g[i]);
    acc += x * x;
  }
  return acc;
}

template <typename T>
double square_sum(const T* g, int64_t n) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(size_t(blocks), 0.0);
  double* out = partial.data();
  at::parallel_for(0, blocks, 4, [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) out[b] = block_square_sum(g, b * kSumBlock, std::min(n, (b + 1) * kSumBlock));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

bool adamw_update_supported(const at::Tensor& param, const at::Tensor& target, const at::Tensor& exp_avg,
                            const at::Tensor& exp_avg_sq, const at::Tensor& grad) {
  for (const at::Tensor* t : {&param, &target, &exp_avg, &exp_avg_sq, &grad})
    if (!cpu_contiguous(*t)) return false;
  const auto s = target.scalar_type(), p = param.scalar_type();
  if (exp_avg.scalar_type() != s || exp_avg_sq.scalar_type() != s || grad.scalar_type() != p) return false;
  for (const at::Tensor* t : {&target, &exp_avg, &exp_avg_sq, &grad})
    if (t->numel() != param.numel()) return false;
  if (s == at::kFloat) return p == at::kFloat || p == at::kBFloat16 || p == at::kHalf;
  return s == at::kDouble && p == at::kDouble;
}

void adamw_update(at::Tensor& param, at::Tensor& target, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                  const at::Tensor& grad, const AdamWScalars& s) {
  // Without a master, param and target are the same tensor; the update writes it once, as target.
  switch (param.scalar_type()) {
    case at::kDouble:
      return update_as<double, double>(param, target, exp_avg, exp_avg_sq, grad, s);
    case at::kFloat:
      return update_as<float, float>(param, target, exp_avg, exp_avg_sq, grad, s);
    case at::kBFloat16:
      return update_as<float, Bf16>(param, target, exp_avg, exp_avg_sq, grad, s);
    case at::kHalf:
      return update_as<float, c10::Half>(param, target, exp_avg, exp_avg_sq, grad, s);
    default:
      TORCH_CHECK(false, "adamw_update: unsupported dtype ", param.scalar_type());
  }
}

bool grad_square_sum_supported(const at::Tensor& grad) {
  const auto d = grad.scalar_type();
  return cpu_contiguous(grad) && (d == at::kFloat || d == at::kDouble || d == at::kBFloat16 || d == at::kHalf);
}

double grad_square_sum(const at::Tensor& grad) {
  const int64_t n = grad.numel();
  switch (grad.scalar_type()) {
    case at::kDouble:
      return square_sum(grad.data_ptr<double>(), n);
    case at::kFloat:
      return square_sum(grad.data_ptr<float>(), n);
    case at::kBFloat16:
      return square_sum(reinterpret_cast<const Bf16*>(grad.data_ptr()), n);
    case at::kHalf:
      return square_sum(reinterpret_cast<const c10::Half*>(grad.data_ptr()), n);
    default:
      TORCH_CHECK(false, "grad_square_sum: unsupported dtype ", grad.scalar_type());
  }
}

}  // namespace cpu
}  // namespace edpo
