// Body of the CPU row kernels, compiled once per instruction set: each including .cc defines
// EDPO_CPU_ISA (the namespace) and may set a `#pragma GCC target` first. Only the C/C++ standard
// library and row_kernels.h may be included before this file: any inline library code compiled
// under a wider target could be picked by the linker for every caller (and fault on older CPUs).
//
// One row = one token position. The forward reads the policy row a and reference row b once, in
// chunks that stay in L1: pass 1 takes the chunk maxima of a, b, m+ = (1+ε)a − εb and
// m− = (1−ε)a + εb; pass 2 adds their exps to four running (max, sum) pairs (4 exps/element).
// All of it accumulates in Acc (fp32 for fp32/bf16/fp16 input, fp64 for fp64 input).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "row_kernels.h"

#ifndef EDPO_CPU_ISA
#error "define EDPO_CPU_ISA before including row_kernels_impl.h"
#endif

namespace edpo {
namespace cpu {
namespace EDPO_CPU_ISA {
namespace {

constexpr int64_t kChunk = 2048;  // 2 rows × 2048 × 4 B = 16 KiB: both passes hit L1

// ---- element conversions (round-to-nearest-even on the way out, as PyTorch does) ----
inline float to_float(float v) { return v; }
inline double to_double(double v) { return v; }

inline float to_float(bf16_bits h) {
  uint32_t u = uint32_t(h.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float to_float(half_bits h) {
  const uint32_t sign = uint32_t(h.x & 0x8000u) << 16;
  const uint32_t exponent = (h.x >> 10) & 0x1fu;
  const uint32_t mantissa = h.x & 0x3ffu;
  uint32_t u;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24, exact in fp32
    float f = float(mantissa) * 5.9604644775390625e-8f;
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (exponent == 31) {
    u = sign | 0x7f800000u | (mantissa << 13);
  } else {
    u = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline bf16_bits from_float<bf16_bits>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_bits{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_bits{uint16_t(u >> 16)};
}
template <> inline half_bits from_float<half_bits>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return half_bits{uint16_t(sign | 0x7e00u)};  // NaN
  if (magnitude >= 0x477ff000u) return half_bits{uint16_t(sign | 0x7c00u)};  // rounds to ±inf
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half, i.e. an integer count of 2^-24
    float a;
    std::memcpy(&a, &magnitude, 4);
    return half_bits{uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)))};
  }
  // Rebias the exponent by −112 (mod 2^32) and round the 13 dropped bits to nearest even.
  const uint32_t rounded = magnitude + 0xc8000fffu + ((magnitude >> 13) & 1u);
  return half_bits{uint16_t(sign | (rounded >> 13))};
}

// ---- exp ----
// fp32: Cephes-style range reduction and degree-6 polynomial (≤ 2 ulp), written as straight-line
// arithmetic so the compiler vectorises it; exp of anything below −87.3 (−inf included) is exactly 0.
inline float exp_acc(float x) {
  const float clamped = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float magic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer (nearest even)
  const float n = (clamped * 1.44269504088896341f + magic) - magic;
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x < -87.3f ? 0.0f : p * scale;
}
inline double exp_acc(double x) { return std::exp(x); }

template <typename Acc> struct Convert;
template <> struct Convert<float> {
  template <typename T> static float load(T v) { return to_float(v); }
};
template <> struct Convert<double> {
  static double load(double v) { return v; }
};

// Running log-sum-exp: sum is relative to max; an empty stream is (−inf, 0).
template <typename Acc>
struct RunningLse {
  Acc max = -std::numeric_limits<Acc>::infinity();
  Acc sum = 0;
  // Moves the reference point to max(max, chunk_max) before a chunk's exps are added.
  // Returns the shift to subtract from the chunk's values (0 while everything seen is −inf).
  Acc rebase(Acc chunk_max) {
    if (chunk_max > max) {
      if (sum != 0) sum *= std::exp(max - chunk_max);
      max = chunk_max;
    }
    return max == -std::numeric_limits<Acc>::infinity() ? Acc(0) : max;
  }
  Acc value() const { return max + std::log(sum); }
};

// Gives the chunk as Acc values: fp32 and fp64 rows are used in place, others converted to a buffer.
template <typename T, typename Acc>
inline const Acc* chunk_as_acc(const T* src, int64_t n, Acc* buffer) {
  if constexpr (std::is_same<T, Acc>::value) {
    (void)n;
    (void)buffer;
    return src;
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = Convert<Acc>::load(src[i]);
    return buffer;
  }
}

template <typename T, typename Acc>
void forward_rows(const T* policy, const T* reference, const int64_t* labels, const Acc* weight,
                  int64_t begin, int64_t end, int64_t rows, int64_t vocab, Acc epsilon, Acc* stats) {
  const Acc plus_a = Acc(1) + epsilon, minus_a = Acc(1) - epsilon;
  const Acc neg_inf = -std::numeric_limits<Acc>::infinity();
  alignas(64) Acc buffer_a[kChunk];
  alignas(64) Acc buffer_b[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    Acc out[kNumRowStats] = {0, 0, 0, 0, 0, 0};
    if (weight[r] != 0) {
      const T* row_a = policy + r * vocab;
      const T* row_b = reference + r * vocab;
      RunningLse<Acc> lse_a, lse_b, lse_plus, lse_minus;
      Acc logit_sum = 0;
      for (int64_t start = 0; start < vocab; start += kChunk) {
        const int64_t n = vocab - start < kChunk ? vocab - start : kChunk;
        const Acc* a = chunk_as_acc<T, Acc>(row_a + start, n, buffer_a);
        const Acc* b = chunk_as_acc<T, Acc>(row_b + start, n, buffer_b);
        Acc max_a = neg_inf, max_b = neg_inf, max_p = neg_inf, max_m = neg_inf, chunk_sum = 0;
#pragma omp simd reduction(max : max_a, max_b, max_p, max_m) reduction(+ : chunk_sum)
        for (int64_t i = 0; i < n; ++i) {
          const Acc p = plus_a * a[i] - epsilon * b[i];
          const Acc m = minus_a * a[i] + epsilon * b[i];
          max_a = a[i] > max_a ? a[i] : max_a;
          max_b = b[i] > max_b ? b[i] : max_b;
          max_p = p > max_p ? p : max_p;
          max_m = m > max_m ? m : max_m;
          chunk_sum += a[i];
        }
        logit_sum += chunk_sum;
        const Acc shift_a = lse_a.rebase(max_a), shift_b = lse_b.rebase(max_b);
        const Acc shift_p = lse_plus.rebase(max_p), shift_m = lse_minus.rebase(max_m);
        Acc sum_a = 0, sum_b = 0, sum_p = 0, sum_m = 0;
#pragma omp simd reduction(+ : sum_a, sum_b, sum_p, sum_m)
        for (int64_t i = 0; i < n; ++i) {
          const Acc p = plus_a * a[i] - epsilon * b[i];
          const Acc m = minus_a * a[i] + epsilon * b[i];
          sum_a += exp_acc(a[i] - shift_a);
          sum_b += exp_acc(b[i] - shift_b);
          sum_p += exp_acc(p - shift_p);
          sum_m += exp_acc(m - shift_m);
        }
        lse_a.sum += sum_a;
        lse_b.sum += sum_b;
        lse_plus.sum += sum_p;
        lse_minus.sum += sum_m;
      }
      const int64_t y = labels[r];
      const Acc a_y = Convert<Acc>::load(row_a[y]), b_y = Convert<Acc>::load(row_b[y]);
      const Acc policy_lse = lse_a.value();
      out[kPolicyLogp] = a_y - policy_lse;
      out[kReferenceLogp] = b_y - lse_b.value();
      out[kPlusLogp] = (plus_a * a_y - epsilon * b_y) - lse_plus.value();
      out[kMinusLogp] = (minus_a * a_y + epsilon * b_y) - lse_minus.value();
      out[kLogitSum] = logit_sum;
      out[kPolicyLse] = policy_lse;
    }
    for (int k = 0; k < kNumRowStats; ++k) stats[k * rows + r] = out[k];
  }
}

template <typename T, typename Acc>
void backward_rows(const T* policy, const int64_t* labels, const Acc* lse, const Acc* row_grad, int64_t begin,
                   int64_t end, int64_t vocab, T* grad) {
  alignas(64) Acc buffer[kChunk];
  alignas(64) Acc result[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    T* out = grad + r * vocab;
    const Acc g = row_grad[r];
    if (g == 0) {
      std::memset(static_cast<void*>(out), 0, sizeof(T) * size_t(vocab));
      continue;
    }
    const T* row = policy + r * vocab;
    const Acc shift = lse[r];
    for (int64_t start = 0; start < vocab; start += kChunk) {
      const int64_t n = vocab - start < kChunk ? vocab - start : kChunk;
      const Acc* a = chunk_as_acc<T, Acc>(row + start, n, buffer);
      if constexpr (std::is_same<T, Acc>::value) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) out[start + i] = -g * exp_acc(a[i] - shift);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) result[i] = -g * exp_acc(a[i] - shift);
        for (int64_t i = 0; i < n; ++i) out[start + i] = from_float<T>(result[i]);
      }
    }
    const int64_t y = labels[r];
    const Acc p_y = exp_acc(Convert<Acc>::load(row[y]) - shift);
    if constexpr (std::is_same<T, Acc>::value) {
      out[y] = g * (Acc(1) - p_y);
    } else {
      out[y] = from_float<T>(g * (Acc(1) - p_y));
    }
  }
}

}  // namespace

template <typename T, typename Acc>
RowKernels<T, Acc> kernels() {
  return RowKernels<T, Acc>{&forward_rows<T, Acc>, &backward_rows<T, Acc>};
}

template RowKernels<float, float> kernels<float, float>();
template RowKernels<bf16_bits, float> kernels<bf16_bits, float>();
template RowKernels<half_bits, float> kernels<half_bits, float>();
template RowKernels<double, double> kernels<double, double>();

}  // namespace EDPO_CPU_ISA
}  // namespace cpu
}  // namespace edpo
