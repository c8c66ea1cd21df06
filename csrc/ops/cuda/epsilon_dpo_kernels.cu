// Fused ε-DPO row kernels (spec §2, §5, §8, §10); the contract is in epsilon_dpo_kernels.h.
//
// Forward: one thread block per row reads the policy row a and the reference row b once (twice for a
// row whose anchored pass overflows, see accumulate_anchored) and
// keeps four online log-sum-exp states (a, b, m+ = (1+ε)a − εb, m− = (1−ε)a + εb) plus Σ a_j in fp32
// registers. Any vocab is one strided pass of the block over the row; parallelism comes from rows
// (training has thousands), so a call with only a few rows cannot fill the GPU: splitting rows
// across blocks would need a workspace the API does not have.
// Backward: a 2-D grid (row, vocab chunk) writes g·(onehot(y) − exp(a − LSE(a))).
// Only the CUDA runtime and the bf16/fp16 headers: no torch, no N-API, so bench/gpu can use it alone.
#include "epsilon_dpo_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace edpo_cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int64_t kMaxVocab = 262144;
constexpr int64_t kMaxRows = 2147483647;  // gridDim.x limit: rows map to blockIdx.x

// Forward block sizes. 512 threads: with one block per row, a wide block keeps enough 16-byte loads
// in flight per SM even when there are few rows, and __launch_bounds__(512, 2) caps registers at 64
// so two blocks (1024 threads, 64 KiB of loads in flight) fit per SM. Short rows (vocab <= 4096,
// mostly tests) would leave most of 512 threads idle and pay for a 16-warp merge, so they get 128.
constexpr int kForwardBlock = 512;
constexpr int kForwardBlockSmall = 128;
constexpr int64_t kSmallVocab = 4096;

// Backward: 256 threads, each owning kBackwardItems 16-byte vectors whose loads are all issued
// before any store, so a block covers 256·4·16 B = 16 KiB of a row.
constexpr int kBackwardBlock = 256;
constexpr int kBackwardItems = 4;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }

// MUFU ex2 with flush-to-zero. exp2f() is the non-ftz ex2.approx.f32, which costs extra compare and
// scale instructions around MUFU to produce denormal results; we do not need them (the largest term
// of every sum is 2^0 = 1, so terms below 2^-126 change nothing). Max rel. error ~2 ulp.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// ---------------------------------------------------------------------------------------------
// Element access. Vectors are 16 bytes (uint4): 4 floats or 8 halves/bfloat16s.
template <typename T>
struct Io;

template <>
struct Io<float> {
  static constexpr int kVec = 4;
  __device__ static float load(const float* p) { return __ldg(p); }
  __device__ static void store(float* p, float v) { __stcs(p, v); }
  __device__ static void unpack(const uint4& u, float* f) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
};

template <>
struct Io<__nv_bfloat16> {
  static constexpr int kVec = 8;
  // bf16 -> fp32 is exact: the bf16 bits are the top half of the float.
  __device__ static float load(const __nv_bfloat16* p) {
    return __uint_as_float(static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(p))) << 16);
  }
  __device__ static void store(__nv_bfloat16* p, float v) {
    __stcs(reinterpret_cast<unsigned short*>(p), __bfloat16_as_ushort(__float2bfloat16_rn(v)));
  }
  __device__ static void unpack2(uint32_t w, float* f) {
    f[0] = __uint_as_float(w << 16);
    f[1] = __uint_as_float(w & 0xffff0000u);
  }
  __device__ static uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t w;
    memcpy(&w, &h, sizeof(w));
    return w;
  }
  __device__ static void unpack(const uint4& u, float* f) {
    unpack2(u.x, f);
    unpack2(u.y, f + 2);
    unpack2(u.z, f + 4);
    unpack2(u.w, f + 6);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(pack2(f[0], f[1]), pack2(f[2], f[3]), pack2(f[4], f[5]), pack2(f[6], f[7]));
  }
};

template <>
struct Io<__half> {
  static constexpr int kVec = 8;
  __device__ static float load(const __half* p) {
    return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
  }
  __device__ static void store(__half* p, float v) {
    __stcs(reinterpret_cast<unsigned short*>(p), __half_as_ushort(__float2half_rn(v)));
  }
  __device__ static void unpack2(uint32_t w, float* f) {
    __half2 h;
    memcpy(&h, &w, sizeof(w));
    const float2 x = __half22float2(h);
    f[0] = x.x;
    f[1] = x.y;
  }
  __device__ static uint32_t pack2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    uint32_t w;
    memcpy(&w, &h, sizeof(w));
    return w;
  }
  __device__ static void unpack(const uint4& u, float* f) {
    unpack2(u.x, f);
    unpack2(u.y, f + 2);
    unpack2(u.z, f + 4);
    unpack2(u.w, f + 6);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(pack2(f[0], f[1]), pack2(f[2], f[3]), pack2(f[4], f[5]), pack2(f[6], f[7]));
  }
};

// Elements before the first 16-byte boundary of a row. A [rows, 50257] bf16 row starts at
// r·100514 bytes, so most rows are misaligned: scalar head, uint4 body, scalar tail.
template <typename T>
__device__ __forceinline__ int aligned_head(const T* row, int vocab) {
  const unsigned mis = static_cast<unsigned>(reinterpret_cast<uintptr_t>(row) & 15u);
  const int head = static_cast<int>(((16u - mis) & 15u) / sizeof(T));
  return head < vocab ? head : vocab;
}

// ---------------------------------------------------------------------------------------------
// Forward.
//
// Everything is kept in log2 units: x = logit·log2(e), so each term is one MUFU ex2. m+ and m− are
// linear in a and b, so scaling a and b once gives scaled m+ and m− for free.
// A state is (m, s) with s = Σ 2^(x_j − m); the empty state is (−inf, 0).
struct Lse2 {
  float m;
  float s;
};

struct RowAcc {
  Lse2 a, b, p, q;  // policy, reference, m+, m−
  float sum;        // Σ a_j, natural units
};

struct Mix {
  float pa, pb;  // m+ = pa·a + pb·b = (1+ε)a − εb
  float qa, qb;  // m− = qa·a + qb·b = (1−ε)a + εb
};

// Two separate products rather than a + ε(a − b): with a = −inf and finite b the latter gives
// −inf + inf = NaN for m−, while the true value is −inf (policies may mask tokens with −inf).
__device__ __forceinline__ float mix(float x, float y, float cx, float cy) { return fmaf(cx, x, cy * y); }

// New group maximum: rescale the running sum once. After the first few groups a thread's max rarely
// moves, so this branch is almost never taken and costs no ex2 on the common path.
// m = −inf, s = 0 gives 0 · ex2(−inf) = 0: no NaN from the empty state.
__device__ __forceinline__ void raise_max(Lse2& st, float group_max) {
  if (group_max > st.m) {
    st.s *= ex2(st.m - group_max);
    st.m = group_max;
  }
}

// Exponent offset for the group: a state still at −inf only ever sees −inf terms, which must add
// ex2(−inf − 0) = 0 rather than ex2(−inf + inf) = NaN.
__device__ __forceinline__ float offset(const Lse2& st) { return st.m == neg_inf() ? 0.f : st.m; }

// Adds K elements of a and b. Per element: exactly 4 ex2 (rescales aside), and ~21 FP32 ops
// (2 scale, 4 for the mixes, 4 max, 4 subtract, 4 add, 1 row sum) plus 2 unpacks for 2-byte types.
// The SFU does 16 ex2/clk/SM on sm_80/sm_90: for bf16 on H100 that is ~0.25 clk per element against
// ~0.3 clk of HBM time (H200: ~0.22, so bf16 there is SFU-bound), hence no ex2 beyond these four:
// the running max is checked once per group, and the sum is rescaled only when it moves.
template <int K>
__device__ __forceinline__ void accumulate(RowAcc& acc, const float* a, const float* b, const Mix& c) {
  float A[K], B[K];
  float ma = neg_inf(), mb = neg_inf(), mp = neg_inf(), mq = neg_inf();
#pragma unroll
  for (int k = 0; k < K; ++k) {
    acc.sum += a[k];
    A[k] = a[k] * kLog2e;
    B[k] = b[k] * kLog2e;
    ma = fmaxf(ma, A[k]);
    mb = fmaxf(mb, B[k]);
    mp = fmaxf(mp, mix(A[k], B[k], c.pa, c.pb));
    mq = fmaxf(mq, mix(A[k], B[k], c.qa, c.qb));
  }
  raise_max(acc.a, ma);
  raise_max(acc.b, mb);
  raise_max(acc.p, mp);
  raise_max(acc.q, mq);
  const float oa = offset(acc.a), ob = offset(acc.b), op = offset(acc.p), oq = offset(acc.q);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    acc.a.s += ex2(A[k] - oa);
    acc.b.s += ex2(B[k] - ob);
    acc.p.s += ex2(mix(A[k], B[k], c.pa, c.pb) - op);
    acc.q.s += ex2(mix(A[k], B[k], c.qa, c.qb) - oq);
  }
}

// The anchored path (measured on an H200: the path above ran the bf16 forward at 56–66% of the copy
// bandwidth, issue-bound at ~31 instructions per element). Once a thread's four states have finite
// maxima, its later groups add ex2(x − m) against those fixed anchors, with no group max and each
// mix computed once: ~17 instructions per element, so the 4 ex2 on the SFU become the bound. The
// invariant s = Σ 2^(x_j − m) still holds for any anchor m. A term may exceed 1 when x > m: s is
// renormalised by exact powers of two (s > 2^64 → s·2^-64, m + 64), and a term that overflows
// (x − m ≥ 128), or a NaN from ±inf inputs, leaves s non-finite, which the block detects after the
// pass and then redoes the row on the path above. Terms that flush to zero are below 2^-115 of the
// row's largest, as on the path above. c2 holds the mix coefficients times log2(e).
__device__ __forceinline__ bool anchored(const RowAcc& acc) {
  const float inf = __int_as_float(0x7f800000u);
  return fabsf(acc.a.m) < inf && fabsf(acc.b.m) < inf && fabsf(acc.p.m) < inf && fabsf(acc.q.m) < inf;
}

__device__ __forceinline__ void renorm(Lse2& st) {
  if (st.s > 0x1p64f) {
    st.s *= 0x1p-64f;
    st.m += 64.f;
  }
}

template <int K>
__device__ __forceinline__ void accumulate_anchored(RowAcc& acc, const float* a, const float* b, const Mix& c2) {
  const float na = -acc.a.m, nb = -acc.b.m, np = -acc.p.m, nq = -acc.q.m;
  float sa = 0.f, sb = 0.f, sp = 0.f, sq = 0.f, sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    sum += a[k];
    sa += ex2(fmaf(a[k], kLog2e, na));
    sb += ex2(fmaf(b[k], kLog2e, nb));
    sp += ex2(fmaf(c2.pa, a[k], fmaf(c2.pb, b[k], np)));
    sq += ex2(fmaf(c2.qa, a[k], fmaf(c2.qb, b[k], nq)));
  }
  acc.sum += sum;
  acc.a.s += sa;
  acc.b.s += sb;
  acc.p.s += sp;
  acc.q.s += sq;
  renorm(acc.a);
  renorm(acc.b);
  renorm(acc.p);
  renorm(acc.q);
}

// Strided scalar pass over [lo, hi): heads, tails, and whole rows when a and b are not mutually
// 16-byte aligned. Four elements per step so the max check is shared.
template <int BLOCK, typename T>
__device__ __forceinline__ void accumulate_scalar(RowAcc& acc, const T* a, const T* b, int lo, int hi, const Mix& c) {
  int i = lo + static_cast<int>(threadIdx.x);
  for (; i + 3 * BLOCK < hi; i += 4 * BLOCK) {
    float fa[4], fb[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      fa[k] = Io<T>::load(a + i + k * BLOCK);
      fb[k] = Io<T>::load(b + i + k * BLOCK);
    }
    accumulate<4>(acc, fa, fb, c);
  }
  for (; i < hi; i += BLOCK) {
    const float fa = Io<T>::load(a + i), fb = Io<T>::load(b + i);
    accumulate<1>(acc, &fa, &fb, c);
  }
}

// Merging two states. Equal maxima (including both −inf, or both +inf) use factor 1 instead of
// ex2(±inf ∓ inf) = NaN, so partials that saw only −inf merge to (−inf, 0).
__device__ __forceinline__ void merge(Lse2& x, float m2, float s2) {
  const float m = fmaxf(x.m, m2);
  const float f1 = (x.m == m) ? 1.f : ex2(x.m - m);
  const float f2 = (m2 == m) ? 1.f : ex2(m2 - m);
  x.s = x.s * f1 + s2 * f2;
  x.m = m;
}

__device__ __forceinline__ void merge_shfl(Lse2& x, int lane_mask) {
  const float m2 = __shfl_xor_sync(0xffffffffu, x.m, lane_mask);
  const float s2 = __shfl_xor_sync(0xffffffffu, x.s, lane_mask);
  merge(x, m2, s2);
}

// Butterfly: every lane ends with the warp total, in a fixed order (results are deterministic).
__device__ __forceinline__ void warp_merge(RowAcc& acc) {
#pragma unroll
  for (int lane_mask = 16; lane_mask > 0; lane_mask >>= 1) {
    merge_shfl(acc.a, lane_mask);
    merge_shfl(acc.b, lane_mask);
    merge_shfl(acc.p, lane_mask);
    merge_shfl(acc.q, lane_mask);
    acc.sum += __shfl_xor_sync(0xffffffffu, acc.sum, lane_mask);
  }
}

// kVecOk: a and b have the same address mod 16 (then every row does, since both rows start at the
// same offset r·vocab), so one scalar head aligns both for uint4 loads. Otherwise: scalar only.
// One pass of the block over a row (anchored or not), merged: the row's totals end in thread 0.
// Every thread must call it (it holds a barrier); `partial` is the block's scratch.
template <typename T, int BLOCK, bool kVecOk>
__device__ __forceinline__ RowAcc scan_row(const T* a, const T* b, int vocab, const Mix& c, const Mix& c2, bool fast,
                                           RowAcc* partial) {
  constexpr int kWarps = BLOCK / 32;
  constexpr int kVec = Io<T>::kVec;
  const int tid = static_cast<int>(threadIdx.x);
  RowAcc acc;
  acc.a = acc.b = acc.p = acc.q = Lse2{neg_inf(), 0.f};
  acc.sum = 0.f;

  const int head = kVecOk ? aligned_head(a, vocab) : vocab;
  const int nvec = (vocab - head) / kVec;
  const int body_end = head + nvec * kVec;

  accumulate_scalar<BLOCK>(acc, a, b, 0, head, c);
  {
    const uint4* va = reinterpret_cast<const uint4*>(a + head);
    const uint4* vb = reinterpret_cast<const uint4*>(b + head);
    int v = tid;
    // Two vectors of each row per step: four independent 16-byte loads in flight per thread.
    for (; v + BLOCK < nvec; v += 2 * BLOCK) {
      const uint4 ra0 = __ldg(va + v), ra1 = __ldg(va + v + BLOCK);
      const uint4 rb0 = __ldg(vb + v), rb1 = __ldg(vb + v + BLOCK);
      float fa[2 * kVec], fb[2 * kVec];
      Io<T>::unpack(ra0, fa);
      Io<T>::unpack(ra1, fa + kVec);
      Io<T>::unpack(rb0, fb);
      Io<T>::unpack(rb1, fb + kVec);
      // Groups of 8 share one max check: larger groups would keep too many values live (64 regs).
#pragma unroll
      for (int g = 0; g < 2 * kVec; g += 8) {
        if (fast && anchored(acc))
          accumulate_anchored<8>(acc, fa + g, fb + g, c2);
        else
          accumulate<8>(acc, fa + g, fb + g, c);
      }
    }
    if (v < nvec) {
      float fa[kVec], fb[kVec];
      Io<T>::unpack(__ldg(va + v), fa);
      Io<T>::unpack(__ldg(vb + v), fb);
      accumulate<kVec>(acc, fa, fb, c);
    }
  }
  accumulate_scalar<BLOCK>(acc, a, b, body_end, vocab, c);

  // Block merge: warp butterflies, then warp 0 merges the per-warp partials.
  warp_merge(acc);
  const int lane = tid & 31, warp = tid >> 5;
  if (lane == 0) partial[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    if (lane < kWarps) {
      acc = partial[lane];
    } else {
      acc.a = acc.b = acc.p = acc.q = Lse2{neg_inf(), 0.f};
      acc.sum = 0.f;
    }
    warp_merge(acc);
  }
  return acc;
}

template <typename T, int BLOCK, bool kVecOk>
__global__ void __launch_bounds__(BLOCK, 1024 / BLOCK)
    forward_kernel(const T* __restrict__ policy, const T* __restrict__ reference, const int64_t* __restrict__ labels,
                   const float* __restrict__ row_weight, int vocab, Mix c, RowStats out) {
  static_assert(BLOCK % 32 == 0 && BLOCK <= 1024, "block must be whole warps");
  constexpr int kWarps = BLOCK / 32;
  const int64_t r = blockIdx.x;
  const int tid = static_cast<int>(threadIdx.x);

  // Masked rows (prompt tokens, padding): the caller's sums ignore them, so skip the 2·V reads.
  if (__ldg(row_weight + r) == 0.f) {
    if (tid == 0) {
      out.policy_logp[r] = 0.f;
      out.reference_logp[r] = 0.f;
      out.plus_logp[r] = 0.f;
      out.minus_logp[r] = 0.f;
      out.logit_sum[r] = 0.f;
      out.policy_lse[r] = 0.f;
    }
    return;
  }

  const T* a = policy + r * vocab;
  const T* b = reference + r * vocab;

  // Label gathers, issued first so their latency hides behind the row scan. An out-of-range label
  // breaks the contract; it yields NaN instead of an out-of-bounds read.
  bool label_ok = false;
  float ay = 0.f, by = 0.f;
  if (tid == 0) {
    const int64_t y = __ldg(labels + r);
    label_ok = y >= 0 && y < vocab;
    if (label_ok) {
      ay = Io<T>::load(a + y);
      by = Io<T>::load(b + y);
    }
  }

  __shared__ RowAcc partial[kWarps];
  __shared__ int redo;
  const Mix c2{c.pa * kLog2e, c.pb * kLog2e, c.qa * kLog2e, c.qb * kLog2e};
  RowAcc acc = scan_row<T, BLOCK, kVecOk>(a, b, vocab, c, c2, true, partial);
  // Block-uniform: the anchored pass left a non-finite sum (overflow, ±inf inputs): redo the row.
  if (tid == 0) {
    const float inf = __int_as_float(0x7f800000u);
    redo = !(fabsf(acc.a.s) < inf && fabsf(acc.b.s) < inf && fabsf(acc.p.s) < inf && fabsf(acc.q.s) < inf);
  }
  __syncthreads();
  if (redo) acc = scan_row<T, BLOCK, kVecOk>(a, b, vocab, c, c2, false, partial);
  if (tid != 0) return;

  // log-probs in log2 units first: (x_y − m) − log2 s keeps the large max out of the rounding.
  const float nan = __int_as_float(0x7fc00000u);
  float lp = nan, lr = nan, lpp = nan, lpm = nan;
  if (label_ok) {
    const float Ay = ay * kLog2e, By = by * kLog2e;
    lp = ((Ay - acc.a.m) - log2f(acc.a.s)) * kLn2;
    lr = ((By - acc.b.m) - log2f(acc.b.s)) * kLn2;
    lpp = ((mix(Ay, By, c.pa, c.pb) - acc.p.m) - log2f(acc.p.s)) * kLn2;
    lpm = ((mix(Ay, By, c.qa, c.qb) - acc.q.m) - log2f(acc.q.s)) * kLn2;
  }
  out.policy_logp[r] = lp;
  out.reference_logp[r] = lr;
  out.plus_logp[r] = lpp;
  out.minus_logp[r] = lpm;
  out.logit_sum[r] = acc.sum;
  out.policy_lse[r] = (acc.a.m + log2f(acc.a.s)) * kLn2;
}

// ---------------------------------------------------------------------------------------------
// Backward: grad = g·(onehot(y) − exp(a − lse)), 1 exp per element (memory bound, so the accurate
// expf costs nothing). Rows with g == 0 are zero-filled without reading the policy.
__device__ __forceinline__ float grad_value(float x, float g, float lse, bool hot) {
  return g * ((hot ? 1.f : 0.f) - expf(x - lse));
}

// kVecOk: policy and grad have the same address mod 16, so one head aligns loads and stores.
template <typename T, int BLOCK, bool kVecOk>
__global__ void __launch_bounds__(BLOCK)
    backward_kernel(const T* __restrict__ policy, const int64_t* __restrict__ labels,
                    const float* __restrict__ policy_lse, const float* __restrict__ row_grad, int vocab,
                    T* __restrict__ grad) {
  constexpr int kVec = Io<T>::kVec;
  const int64_t r = blockIdx.x;
  const int tid = static_cast<int>(threadIdx.x);
  const float g = __ldg(row_grad + r);
  const bool live = g != 0.f;
  float lse = 0.f;
  int y = -1;  // out-of-range labels hit no column: the row gets −g·softmax, no bad access
  if (live) {
    lse = __ldg(policy_lse + r);
    const int64_t label = __ldg(labels + r);
    if (label >= 0 && label < vocab) y = static_cast<int>(label);
  }
  const T* a = policy + r * vocab;
  T* o = grad + r * vocab;

  const int head = kVecOk ? aligned_head(o, vocab) : vocab;
  const int nvec = (vocab - head) / kVec;
  const int body_end = head + nvec * kVec;
  const int stride = static_cast<int>(gridDim.y) * BLOCK;
  const int first = static_cast<int>(blockIdx.y) * BLOCK + tid;

  // Scalar head (and everything when not mutually aligned), grid-strided over this row's blocks.
  for (int i = first; i < head; i += stride)
    Io<T>::store(o + i, live ? grad_value(Io<T>::load(a + i), g, lse, i == y) : 0.f);

  {
    const uint4* va = reinterpret_cast<const uint4*>(a + head);
    uint4* vo = reinterpret_cast<uint4*>(o + head);
    const int base = static_cast<int>(blockIdx.y) * BLOCK * kBackwardItems + tid;
    uint4 raw[kBackwardItems];
    if (live) {
#pragma unroll
      for (int k = 0; k < kBackwardItems; ++k) {
        const int v = base + k * BLOCK;
        if (v < nvec) raw[k] = __ldg(va + v);
      }
    }
#pragma unroll
    for (int k = 0; k < kBackwardItems; ++k) {
      const int v = base + k * BLOCK;
      if (v >= nvec) break;
      float f[kVec];
      if (live) {
        Io<T>::unpack(raw[k], f);
        const int j0 = head + v * kVec;
#pragma unroll
        for (int e = 0; e < kVec; ++e) f[e] = grad_value(f[e], g, lse, j0 + e == y);
      } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) f[e] = 0.f;
      }
      __stcs(vo + v, Io<T>::pack(f));
    }
  }

  for (int i = body_end + first; i < vocab; i += stride)
    Io<T>::store(o + i, live ? grad_value(Io<T>::load(a + i), g, lse, i == y) : 0.f);
}

// ---------------------------------------------------------------------------------------------
// Launchers.
bool aligned_to(const void* p, size_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

bool same_mod16(const void* p, const void* q) {
  return ((reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(q)) & 15u) == 0;
}

size_t dtype_size(Dtype dtype) {
  switch (dtype) {
    case Dtype::F32:
      return 4;
    case Dtype::BF16:
      return 2;
    case Dtype::F16:
      return 2;
  }
  return 0;
}

template <typename T, int BLOCK>
cudaError_t launch_forward_block(const void* policy, const void* reference, const int64_t* labels,
                                 const float* row_weight, int64_t rows, int vocab, const Mix& c, const RowStats& out,
                                 cudaStream_t stream) {
  const T* a = static_cast<const T*>(policy);
  const T* b = static_cast<const T*>(reference);
  const dim3 grid(static_cast<unsigned>(rows));
  if (same_mod16(a, b))
    forward_kernel<T, BLOCK, true><<<grid, BLOCK, 0, stream>>>(a, b, labels, row_weight, vocab, c, out);
  else
    forward_kernel<T, BLOCK, false><<<grid, BLOCK, 0, stream>>>(a, b, labels, row_weight, vocab, c, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_forward(const void* policy, const void* reference, const int64_t* labels, const float* row_weight,
                           int64_t rows, int vocab, const Mix& c, const RowStats& out, cudaStream_t stream) {
  if (vocab <= kSmallVocab)
    return launch_forward_block<T, kForwardBlockSmall>(policy, reference, labels, row_weight, rows, vocab, c, out,
                                                       stream);
  return launch_forward_block<T, kForwardBlock>(policy, reference, labels, row_weight, rows, vocab, c, out, stream);
}

template <typename T>
cudaError_t launch_backward(const void* policy, const int64_t* labels, const float* policy_lse, const float* row_grad,
                            int64_t rows, int vocab, void* grad_policy, cudaStream_t stream) {
  const T* a = static_cast<const T*>(policy);
  T* o = static_cast<T*>(grad_policy);
  const bool vec_ok = same_mod16(a, o);
  // Blocks per row: enough to cover the row once (vectors when aligned, scalars otherwise).
  const int64_t per_block = static_cast<int64_t>(kBackwardBlock) * kBackwardItems * (vec_ok ? Io<T>::kVec : 1);
  const int64_t chunks = (vocab + per_block - 1) / per_block;  // <= 256 for vocab <= 262144
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
  if (vec_ok)
    backward_kernel<T, kBackwardBlock, true>
        <<<grid, kBackwardBlock, 0, stream>>>(a, labels, policy_lse, row_grad, vocab, o);
  else
    backward_kernel<T, kBackwardBlock, false>
        <<<grid, kBackwardBlock, 0, stream>>>(a, labels, policy_lse, row_grad, vocab, o);
  return cudaGetLastError();
}

}  // namespace

// rows == 0 is a no-op (pointers may then be null); vocab and dtype are checked regardless.
// Misaligned element pointers, a non-finite ε, and null pointers for rows > 0 are rejected.
cudaError_t forward_rows(const void* policy, const void* reference, const int64_t* labels, const float* row_weight,
                         int64_t rows, int64_t vocab, float epsilon, Dtype dtype, RowStats out, cudaStream_t stream) {
  const size_t elem = dtype_size(dtype);
  if (elem == 0 || vocab < 1 || vocab > kMaxVocab || rows < 0 || rows > kMaxRows || !std::isfinite(epsilon))
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const void* ptrs[] = {policy,          reference,          labels,        row_weight,
                        out.policy_logp, out.reference_logp, out.plus_logp, out.minus_logp,
                        out.logit_sum,   out.policy_lse};
  for (const void* p : ptrs)
    if (p == nullptr) return cudaErrorInvalidValue;
  if (!aligned_to(policy, elem) || !aligned_to(reference, elem) || !aligned_to(labels, sizeof(int64_t)) ||
      !aligned_to(row_weight, sizeof(float)))
    return cudaErrorInvalidValue;
  for (const float* p :
       {out.policy_logp, out.reference_logp, out.plus_logp, out.minus_logp, out.logit_sum, out.policy_lse})
    if (!aligned_to(p, sizeof(float))) return cudaErrorInvalidValue;

  const Mix c{1.f + epsilon, -epsilon, 1.f - epsilon, epsilon};
  const int v = static_cast<int>(vocab);
  switch (dtype) {
    case Dtype::F32:
      return launch_forward<float>(policy, reference, labels, row_weight, rows, v, c, out, stream);
    case Dtype::BF16:
      return launch_forward<__nv_bfloat16>(policy, reference, labels, row_weight, rows, v, c, out, stream);
    case Dtype::F16:
      return launch_forward<__half>(policy, reference, labels, row_weight, rows, v, c, out, stream);
  }
  return cudaErrorInvalidValue;
}

// Same argument rules as forward_rows. grad_policy must not overlap policy.
cudaError_t backward_rows(const void* policy, const int64_t* labels, const float* policy_lse, const float* row_grad,
                          int64_t rows, int64_t vocab, Dtype dtype, void* grad_policy, cudaStream_t stream) {
  const size_t elem = dtype_size(dtype);
  if (elem == 0 || vocab < 1 || vocab > kMaxVocab || rows < 0 || rows > kMaxRows) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (policy == nullptr || labels == nullptr || policy_lse == nullptr || row_grad == nullptr || grad_policy == nullptr)
    return cudaErrorInvalidValue;
  if (!aligned_to(policy, elem) || !aligned_to(grad_policy, elem) || !aligned_to(labels, sizeof(int64_t)) ||
      !aligned_to(policy_lse, sizeof(float)) || !aligned_to(row_grad, sizeof(float)))
    return cudaErrorInvalidValue;

  const int v = static_cast<int>(vocab);
  switch (dtype) {
    case Dtype::F32:
      return launch_backward<float>(policy, labels, policy_lse, row_grad, rows, v, grad_policy, stream);
    case Dtype::BF16:
      return launch_backward<__nv_bfloat16>(policy, labels, policy_lse, row_grad, rows, v, grad_policy, stream);
    case Dtype::F16:
      return launch_backward<__half>(policy, labels, policy_lse, row_grad, rows, v, grad_policy, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace edpo_cuda
