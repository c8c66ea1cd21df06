// Body of the CPU row kernels, compiled once per instruction set: each including .cc defines
// EDPO_CPU_ISA (the namespace) and may set a `#pragma GCC target` first. Only the C/C++ standard
// library and row_kernels.h may be included before this file: any inline library code compiled
// under a wider target could be picked by the linker for every caller (and fault on older CPUs).
//
// One row = one token position. The forward reads the policy row a and reference row b once and
// keeps four running (max, sum) pairs, for a, b, m+ = (1+ε)a − εb and m− = (1−ε)a + εb: 4 exps
// per element, nothing else transcendental. Everything runs in log2 units (values scaled by
// log2 e once per element, so each exp is a bare 2^x), and accumulates in Acc (fp32 for
// fp32/bf16/fp16 input, fp64 for fp64 input).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "row_kernels.h"

#if !defined(EDPO_CPU_ISA) || !defined(EDPO_CPU_VECTOR_BYTES)
#error "define EDPO_CPU_ISA and EDPO_CPU_VECTOR_BYTES before including row_kernels_impl.h"
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

template <typename T>
inline T from_float(float v);
template <>
inline float from_float<float>(float v) {
  return v;
}
template <>
inline bf16_bits from_float<bf16_bits>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_bits{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_bits{uint16_t(u >> 16)};
}
template <>
inline half_bits from_float<half_bits>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return half_bits{uint16_t(sign | 0x7e00u)};   // NaN
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

// ---- 2^x on SIMD lanes (GCC vector extensions, one register of the build's instruction set) ----
template <typename Acc>
struct Lanes;
// One register of Acc values (V), and of same-width integers for masks (M).
template <typename Acc, typename Int>
struct LaneTypes {
  static constexpr int W = EDPO_CPU_VECTOR_BYTES / int(sizeof(Acc));
  typedef Acc V __attribute__((vector_size(EDPO_CPU_VECTOR_BYTES)));
  typedef Int I;
  typedef Int M __attribute__((vector_size(EDPO_CPU_VECTOR_BYTES)));
};
template <>
struct Lanes<float> : LaneTypes<float, int32_t> {
  // 2^x for x ≤ 127, branch-free: x = n + f with |f| ≤ 1/2, 2^f by a degree-6 polynomial
  // (Cephes exp2f coefficients, ~1 ulp), 2^n written into the exponent bits. Lanes below −126
  // (−inf included) are exactly 0; NaN stays NaN.
  static V exp2(V x) {
    const V magic = V{} + 12582912.0f;  // 1.5·2^23: adding it rounds to an integer (nearest even)
    const V n = (x + magic) - magic;
    const V f = x - n;
    V p = V{} + 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    const M bits = (__builtin_convertvector(n, M) + 127) << 23;
    V scale;
    std::memcpy(&scale, &bits, sizeof(V));
    return x < -126.0f ? V{} : p * scale;
  }
};
template <>
struct Lanes<double> : LaneTypes<double, int64_t> {
  static V exp2(V x) {
    V r;
    for (int i = 0; i < W; ++i) r[i] = std::exp2(x[i]);
    return r;
  }
};

template <typename Acc>
constexpr Acc kLog2e = Acc(1.44269504088896340735992468100189214);
template <typename Acc>
constexpr Acc kLn2 = Acc(0.693147180559945309417232121458176568);

template <typename Acc, typename V = typename Lanes<Acc>::V>
inline V load(const Acc* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
// The last n < W values, zero-padded.
template <typename Acc, typename V = typename Lanes<Acc>::V>
inline V load_tail(const Acc* p, int64_t n) {
  V v{};
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
template <typename Acc, typename M = typename Lanes<Acc>::M>
inline M first_lanes(int64_t n) {  // lanes [0, n) set
  M iota;
  for (int i = 0; i < Lanes<Acc>::W; ++i) iota[i] = i;
  return iota < (M{} + typename Lanes<Acc>::I(n));
}
template <typename V>
inline V vmax(V a, V b) {
  return a > b ? a : b;
}
template <typename V>
inline V vmin(V a, V b) {
  return a < b ? a : b;
}
template <typename Acc, typename V>
inline Acc hmax(V v) {
  Acc m = v[0];
  for (int i = 1; i < Lanes<Acc>::W; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
template <typename Acc, typename V>
inline Acc hsum(V v) {
  Acc s = 0;
  for (int i = 0; i < Lanes<Acc>::W; ++i) s += v[i];
  return s;
}

template <typename Acc>
struct Convert;
template <>
struct Convert<float> {
  template <typename T>
  static float load(T v) {
    return to_float(v);
  }
};
template <>
struct Convert<double> {
  static double load(double v) { return v; }
};

// bf16 <-> fp32 a register at a time (the scalar forms above handle the tails).
typedef uint32_t U32x __attribute__((vector_size(EDPO_CPU_VECTOR_BYTES)));
typedef uint16_t U16x __attribute__((vector_size(EDPO_CPU_VECTOR_BYTES / 2)));
constexpr int kBf16Lanes = EDPO_CPU_VECTOR_BYTES / 4;

inline void bf16_to_float(const bf16_bits* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + kBf16Lanes <= n; i += kBf16Lanes) {
    U16x h;
    std::memcpy(&h, src + i, sizeof(U16x));
    const U32x u = __builtin_convertvector(h, U32x) << 16;
    std::memcpy(dst + i, &u, sizeof(U32x));
  }
  for (; i < n; ++i) dst[i] = to_float(src[i]);
}

inline void float_to_bf16(const float* src, int64_t n, bf16_bits* dst) {
  int64_t i = 0;
  for (; i + kBf16Lanes <= n; i += kBf16Lanes) {
    U32x u;
    std::memcpy(&u, src + i, sizeof(U32x));
    const U32x rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const U32x quiet_nan = (u >> 16) | 0x40u;
    const U32x bits = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
    const U16x h = __builtin_convertvector(bits, U16x);
    std::memcpy(dst + i, &h, sizeof(U16x));
  }
  for (; i < n; ++i) dst[i] = from_float<bf16_bits>(src[i]);
}

// Gives the chunk as Acc values: fp32 and fp64 rows are used in place, others converted to a buffer.
template <typename T, typename Acc>
inline const Acc* chunk_as_acc(const T* src, int64_t n, Acc* buffer) {
  if constexpr (std::is_same<T, Acc>::value) {
    (void)n;
    (void)buffer;
    return src;
  } else if constexpr (std::is_same<T, bf16_bits>::value) {
    bf16_to_float(src, n, buffer);
    return buffer;
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = Convert<Acc>::load(src[i]);
    return buffer;
  }
}

// Writes a chunk of Acc results as T (rounded to nearest even).
template <typename T, typename Acc>
inline void store_chunk(const Acc* src, int64_t n, T* dst) {
  if constexpr (std::is_same<T, bf16_bits>::value) {
    float_to_bf16(src, n, dst);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = from_float<T>(src[i]);
  }
}

// The four streams of one row, in log2 units: a reference point and the sum of 2^(x − ref).
// Index 0 = a, 1 = b, 2 = m+, 3 = m−. The reference point need not be the max: any value keeps
// the result exact as long as the sum neither overflows nor drowns its terms, so the usual path
// is ONE pass per chunk against the running reference (no max tracking), and sums are kept in
// [1, 2^32] by exact power-of-two rescaling.
template <typename Acc>
struct RowSums {
  using L = Lanes<Acc>;
  using V = typename L::V;
  using M = typename L::M;
  static constexpr int W = L::W;
  static constexpr Acc kInf = std::numeric_limits<Acc>::infinity();
  // A chunk whose terms reach 2^100 (or were clipped at 2^127) is redone in two passes.
  static constexpr Acc kTooLarge = Acc(1.2676506002282294e30);  // 2^100

  Acc plus_a, plus_b, minus_a, minus_b;  // m± = plus/minus_a · a + plus/minus_b · b (log2 units alike)
  Acc ref[4] = {-kInf, -kInf, -kInf, -kInf};
  Acc sum[4] = {0, 0, 0, 0};
  Acc logit_sum = 0;
  // Set by the row's first chunk. Not `ref[0] == −inf`: a chunk of all −inf policy logits (a
  // vocabulary mask) leaves ref[0] at −inf while the other streams have started summing.
  bool started = false;

  explicit RowSums(Acc epsilon) : plus_a(1 + epsilon), plus_b(-epsilon), minus_a(1 - epsilon), minus_b(epsilon) {}

  void add_chunk(const Acc* a, const Acc* b, int64_t n) {
    const int64_t full = n / W * W;
    const M all = M{} - 1, tail = first_lanes<Acc>(n - full);
    if (!started) {  // first chunk of the row: start from its first element
      started = true;
      const Acc la = a[0] * kLog2e<Acc>, lb = b[0] * kLog2e<Acc>;
      ref[0] = la;
      ref[1] = lb;
      ref[2] = la * plus_a + lb * plus_b;
      ref[3] = la * minus_a + lb * minus_b;
    }
    const bool finite_refs =
        std::isfinite(ref[0]) && std::isfinite(ref[1]) && std::isfinite(ref[2]) && std::isfinite(ref[3]);
    if (finite_refs) {
      // Two sweeps of two streams each: four exp pipelines at once spill AVX2's 16 registers.
      V s[4] = {};
      const V cap = V{} + Acc(127);
      {
        const V r0 = V{} + ref[0], r1 = V{} + ref[1];
        V s0 = V{}, s1 = V{}, logits = V{};
        auto step = [&](V va, V vb, M valid) {
          logits += va;  // padding lanes are 0
          s0 += valid ? L::exp2(vmin(va * kLog2e<Acc> - r0, cap)) : V{};
          s1 += valid ? L::exp2(vmin(vb * kLog2e<Acc> - r1, cap)) : V{};
        };
        for (int64_t i = 0; i < full; i += W) step(load(a + i), load(b + i), all);
        if (full < n) step(load_tail(a + full, n - full), load_tail(b + full, n - full), tail);
        s[0] = s0;
        s[1] = s1;
        logit_sum += hsum<Acc>(logits);
      }
      {
        const V r2 = V{} + ref[2], r3 = V{} + ref[3];
        V s2 = V{}, s3 = V{};
        auto step = [&](V va, V vb, M valid) {
          const V la = va * kLog2e<Acc>, lb = vb * kLog2e<Acc>;
          s2 += valid ? L::exp2(vmin(la * plus_a + lb * plus_b - r2, cap)) : V{};
          s3 += valid ? L::exp2(vmin(la * minus_a + lb * minus_b - r3, cap)) : V{};
        };
        for (int64_t i = 0; i < full; i += W) step(load(a + i), load(b + i), all);
        if (full < n) step(load_tail(a + full, n - full), load_tail(b + full, n - full), tail);
        s[2] = s2;
        s[3] = s3;
      }
      Acc chunk[4];
      bool fits = true;
      for (int k = 0; k < 4; ++k) {
        chunk[k] = hsum<Acc>(s[k]);
        fits = fits && chunk[k] < kTooLarge;  // false for NaN too: the two-pass path propagates it
      }
      if (fits) {
        for (int k = 0; k < 4; ++k) {
          sum[k] += chunk[k];
          normalize(k);
        }
        return;
      }
    }
    add_chunk_two_pass(a, b, n, full, tail, !finite_refs);
  }

  // Rescales by an exact power of two so that sum stays within [1, 2^32).
  void normalize(int k) {
    if (sum[k] >= Acc(4294967296.0)) {
      int e;
      std::frexp(sum[k], &e);
      sum[k] = std::ldexp(sum[k], -(e - 1));
      ref[k] += Acc(e - 1);
    }
  }

  // `with_logits`: whether this pass also adds the chunk's logit sum (not yet added by a single pass).
  void add_chunk_two_pass(const Acc* a, const Acc* b, int64_t n, int64_t full, M tail, bool with_logits) {
    const M all = M{} - 1;
    const V neg_inf = V{} - kInf;
    V mx[4] = {neg_inf, neg_inf, neg_inf, neg_inf};
    V logits = V{};
    auto maxima = [&](V va, V vb, M valid) {
      logits += va;  // padding lanes are 0
      const V la = va * kLog2e<Acc>, lb = vb * kLog2e<Acc>;
      const V lp = la * plus_a + lb * plus_b, lm = la * minus_a + lb * minus_b;
      mx[0] = vmax(mx[0], valid ? la : neg_inf);
      mx[1] = vmax(mx[1], valid ? lb : neg_inf);
      mx[2] = vmax(mx[2], valid ? lp : neg_inf);
      mx[3] = vmax(mx[3], valid ? lm : neg_inf);
    };
    for (int64_t i = 0; i < full; i += W) maxima(load(a + i), load(b + i), all);
    if (full < n) maxima(load_tail(a + full, n - full), load_tail(b + full, n - full), tail);
    if (with_logits) logit_sum += hsum<Acc>(logits);
    V shift[4];
    for (int k = 0; k < 4; ++k) {
      const Acc m = hmax<Acc>(mx[k]);
      if (m > ref[k]) rebase(k, m);
      shift[k] = V{} + (ref[k] == -kInf ? Acc(0) : ref[k]);  // an all −inf stream adds exact zeros
    }
    V s[4] = {};
    auto sums = [&](V va, V vb, M valid) {
      const V la = va * kLog2e<Acc>, lb = vb * kLog2e<Acc>;
      const V lp = la * plus_a + lb * plus_b, lm = la * minus_a + lb * minus_b;
      s[0] += valid ? L::exp2(la - shift[0]) : V{};
      s[1] += valid ? L::exp2(lb - shift[1]) : V{};
      s[2] += valid ? L::exp2(lp - shift[2]) : V{};
      s[3] += valid ? L::exp2(lm - shift[3]) : V{};
    };
    for (int64_t i = 0; i < full; i += W) sums(load(a + i), load(b + i), all);
    if (full < n) sums(load_tail(a + full, n - full), load_tail(b + full, n - full), tail);
    for (int k = 0; k < 4; ++k) sum[k] += hsum<Acc>(s[k]);
  }

  void rebase(int k, Acc new_ref) {
    if (sum[k] != 0) sum[k] *= std::exp2(ref[k] - new_ref);
    ref[k] = new_ref;
  }

  // log-prob of a value x (log2 units, computed exactly as in the passes) in stream k, in nats.
  Acc logp(int k, Acc x) const { return ((x - ref[k]) - std::log2(sum[k])) * kLn2<Acc>; }
};

template <typename T, typename Acc>
void forward_rows(const T* policy, const T* reference, const int64_t* labels, const Acc* row_weight, int64_t begin,
                  int64_t end, int64_t rows, int64_t vocab, Acc epsilon, Acc* stats) {
  alignas(64) Acc buffer_a[kChunk];
  alignas(64) Acc buffer_b[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    Acc out[kNumRowStats] = {0, 0, 0, 0, 0, 0};
    if (row_weight[r] != 0) {
      const T* row_a = policy + r * vocab;
      const T* row_b = reference + r * vocab;
      RowSums<Acc> row(epsilon);
      for (int64_t start = 0; start < vocab; start += kChunk) {
        const int64_t n = vocab - start < kChunk ? vocab - start : kChunk;
        row.add_chunk(chunk_as_acc<T, Acc>(row_a + start, n, buffer_a),
                      chunk_as_acc<T, Acc>(row_b + start, n, buffer_b), n);
      }
      const int64_t y = labels[r];
      const Acc la = Convert<Acc>::load(row_a[y]) * kLog2e<Acc>, lb = Convert<Acc>::load(row_b[y]) * kLog2e<Acc>;
      out[kPolicyLogp] = row.logp(0, la);
      out[kReferenceLogp] = row.logp(1, lb);
      out[kPlusLogp] = row.logp(2, la * row.plus_a + lb * row.plus_b);
      out[kMinusLogp] = row.logp(3, la * row.minus_a + lb * row.minus_b);
      out[kLogitSum] = row.logit_sum;
      out[kPolicyLse] = (row.ref[0] + std::log2(row.sum[0])) * kLn2<Acc>;
    }
    for (int k = 0; k < kNumRowStats; ++k) stats[k * rows + r] = out[k];
  }
}

template <typename T, typename Acc>
void backward_rows(const T* policy, const int64_t* labels, const Acc* lse, const Acc* row_grad, int64_t begin,
                   int64_t end, int64_t vocab, T* grad) {
  using L = Lanes<Acc>;
  using V = typename L::V;
  constexpr int W = L::W;
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
    const Acc lse2 = lse[r] * kLog2e<Acc>;
    const V shift = V{} + lse2;
    for (int64_t start = 0; start < vocab; start += kChunk) {
      const int64_t n = vocab - start < kChunk ? vocab - start : kChunk;
      const int64_t full = n / W * W;
      const Acc* a = chunk_as_acc<T, Acc>(row + start, n, buffer);
      // fp32/fp64 rows are written in place; other dtypes go through `result` and are rounded.
      Acc* dst = std::is_same<T, Acc>::value ? reinterpret_cast<Acc*>(out + start) : result;
      for (int64_t i = 0; i < full; i += W) {
        const V v = L::exp2(load(a + i) * kLog2e<Acc> - shift) * -g;
        std::memcpy(dst + i, &v, sizeof(V));
      }
      if (full < n) {
        const V v = L::exp2(load_tail(a + full, n - full) * kLog2e<Acc> - shift) * -g;
        for (int64_t i = 0; i < n - full; ++i) dst[full + i] = v[i];
      }
      if constexpr (!std::is_same<T, Acc>::value) store_chunk<T, Acc>(result, n, out + start);
    }
    const int64_t y = labels[r];
    const Acc p_y = std::exp2(Convert<Acc>::load(row[y]) * kLog2e<Acc> - lse2);
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

EDPO_INSTANTIATE_ROW_KERNELS

}  // namespace EDPO_CPU_ISA
}  // namespace cpu
}  // namespace edpo
