// Standalone correctness and bandwidth check of csrc/ops/cuda/epsilon_dpo_kernels.cu (no torch).
//
//   kernel_check            correctness cases, then timing (rows = 4096, V in {32000, 128256})
//   kernel_check --quick    a few small correctness cases only (for compute-sanitizer)
//   kernel_check --no-timing
//
// Correctness: seeded random logits are rounded to the dtype on the host, and an fp64 reference is
// computed from those same rounded values, so the only difference is the kernel's fp32 accumulation.
// Timing: cudaEvent medians of the forward, the backward, and a device-to-device copy of the bytes the
// forward reads (2·rows·V·sizeof(T)) as the bandwidth ceiling. JSON goes to $OUT/kernel_check.json
// (or ./kernel_check.json). Exit status: 0 all good, 1 a correctness failure, 2 a CUDA error.
#include "../../csrc/ops/cuda/epsilon_dpo_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using edpo_cuda::Dtype;

#define CK(call)                                                                                       \
  do {                                                                                                 \
    const cudaError_t err_ = (call);                                                                   \
    if (err_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(err_), __FILE__, __LINE__, \
                   cudaGetErrorString(err_));                                                          \
      std::exit(2);                                                                                    \
    }                                                                                                  \
  } while (0)

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------------
// Host-side dtype helpers.
template <typename T>
struct H;
template <>
struct H<float> {
  static constexpr Dtype dtype = Dtype::F32;
  static constexpr const char* name = "fp32";
  static float from(double x) { return static_cast<float>(x); }
  static double to(float v) { return v; }
};
template <>
struct H<__nv_bfloat16> {
  static constexpr Dtype dtype = Dtype::BF16;
  static constexpr const char* name = "bf16";
  static __nv_bfloat16 from(double x) { return __float2bfloat16_rn(static_cast<float>(x)); }
  static double to(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct H<__half> {
  static constexpr Dtype dtype = Dtype::F16;
  static constexpr const char* name = "fp16";
  static __half from(double x) { return __float2half_rn(static_cast<float>(x)); }
  static double to(__half v) { return __half2float(v); }
};

template <typename T>
bool is_pos_zero_bits(const T& v) {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  for (unsigned char c : bytes)
    if (c != 0) return false;
  return true;
}

// Gradient tolerance of the output dtype (relative, absolute).
template <typename T>
void grad_tolerance(double& rtol, double& atol);
template <>
void grad_tolerance<float>(double& rtol, double& atol) {
  rtol = 0.0, atol = 1e-5;
}
template <>
void grad_tolerance<__nv_bfloat16>(double& rtol, double& atol) {
  rtol = 1e-2, atol = 1e-6;
}
template <>
void grad_tolerance<__half>(double& rtol, double& atol) {
  rtol = 2e-3, atol = 1e-6;
}

// splitmix64: seeded, fast, identical on every platform.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

template <typename T>
struct DeviceBuf {
  T* p = nullptr;
  explicit DeviceBuf(size_t n) { CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
  ~DeviceBuf() { cudaFree(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Cases.
enum class Dist {
  Normal,    // a ~ N(0, 2.5²), b = a + N(0, 0.5²): reference close to policy, as in training
  Spread30,  // a, b independent uniform in [−30, 30]: large, far-apart logits
  NegInf,    // Normal, but in every other live row ~90% of the policy logits are −inf
};

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Normal:
      return "normal";
    case Dist::Spread30:
      return "spread30";
    case Dist::NegInf:
      return "neginf";
  }
  return "?";
}

struct Case {
  int64_t vocab;
  int64_t rows;
  Dist dist;
  float eps;
  int off_a, off_b, off_g;  // element offsets of policy / reference / grad from a 256-byte aligned base
};

struct Failure {
  int count = 0;
  void report(const char* what, const char* dtype, const Case& c, int64_t r, int64_t j, double got, double want,
              double tol) {
    if (count < 20)
      std::printf("  FAIL %s %s V=%lld rows=%lld %s off=(%d,%d,%d) row %lld col %lld: got %.9g want %.9g tol %.3g\n",
                  what, dtype, (long long)c.vocab, (long long)c.rows, dist_name(c.dist), c.off_a, c.off_b, c.off_g,
                  (long long)r, (long long)j, got, want, tol);
    ++count;
  }
};

bool close_enough(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= tol;
}

struct RefRow {
  double lp, lr, lpp, lpm, sum, lse, sum_abs;
};

// fp64 reference of one row from the dtype-rounded inputs (spec §2).
RefRow reference_row(const std::vector<double>& a, const std::vector<double>& b, int64_t y, double eps) {
  const size_t n = a.size();
  auto lse = [n](auto value) {
    double m = -kInf;
    for (size_t j = 0; j < n; ++j) m = std::max(m, value(j));
    if (m == -kInf) return -kInf;
    double s = 0;
    for (size_t j = 0; j < n; ++j) s += std::exp(value(j) - m);
    return m + std::log(s);
  };
  auto va = [&](size_t j) { return a[j]; };
  auto vb = [&](size_t j) { return b[j]; };
  auto vp = [&](size_t j) { return (1 + eps) * a[j] - eps * b[j]; };
  auto vq = [&](size_t j) { return (1 - eps) * a[j] + eps * b[j]; };
  RefRow out{};
  out.lse = lse(va);
  out.lp = a[y] - out.lse;
  out.lr = b[y] - lse(vb);
  out.lpp = vp(y) - lse(vp);
  out.lpm = vq(y) - lse(vq);
  for (size_t j = 0; j < n; ++j) {
    out.sum += a[j];
    if (std::isfinite(a[j])) out.sum_abs += std::fabs(a[j]);
  }
  return out;
}

template <typename T>
int run_case(const Case& c, uint64_t seed, bool verbose) {
  const int64_t V = c.vocab, R = c.rows;
  const size_t n = static_cast<size_t>(V * R);
  Rng rng(seed);

  std::vector<T> ha(n), hb(n);
  std::vector<int64_t> labels(R);
  std::vector<float> weight(R), row_grad(R);
  for (int64_t r = 0; r < R; ++r) {
    const bool masked = (r % 5 == 3) || (R > 1 && r == R - 1);
    weight[r] = masked ? 0.f : 1.f;
    row_grad[r] = masked ? 0.f : static_cast<float>((rng.uniform() - 0.5) * 2.0 + (rng.uniform() < 0.5 ? 0.05 : -0.05));
    labels[r] = masked && (r % 2 == 1) ? -100 : rng.below(V);  // -100: the usual ignore_index
    const bool neginf_row = c.dist == Dist::NegInf && (r % 2 == 0);
    for (int64_t j = 0; j < V; ++j) {
      double x, z;
      if (c.dist == Dist::Spread30) {
        x = (rng.uniform() * 2 - 1) * 30;
        z = (rng.uniform() * 2 - 1) * 30;
      } else {
        x = 2.5 * rng.normal();
        z = x + 0.5 * rng.normal();
      }
      if (neginf_row && j != labels[r] && rng.uniform() < 0.9) x = -kInf;
      // Masked rows hold garbage the kernels must never turn into output.
      if (masked && (j % 3 == 0)) x = z = std::nan("");
      ha[r * V + j] = H<T>::from(x);
      hb[r * V + j] = H<T>::from(z);
    }
  }

  // Device buffers with room for the element offsets (cudaMalloc bases are 256-byte aligned).
  DeviceBuf<T> da(n + 16), db(n + 16), dg(n + 16);
  DeviceBuf<int64_t> dl(R);
  DeviceBuf<float> dw(R), drg(R), dout(6 * R);
  T* pa = da.p + c.off_a;
  T* pb = db.p + c.off_b;
  T* pg = dg.p + c.off_g;
  CK(cudaMemcpy(pa, ha.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(pb, hb.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dl.p, labels.data(), R * sizeof(int64_t), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dw.p, weight.data(), R * sizeof(float), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(drg.p, row_grad.data(), R * sizeof(float), cudaMemcpyHostToDevice));
  // Poison outputs so unwritten entries show up.
  CK(cudaMemset(dout.p, 0xff, 6 * R * sizeof(float)));
  CK(cudaMemset(dg.p, 0xff, (n + 16) * sizeof(T)));

  edpo_cuda::RowStats st{dout.p, dout.p + R, dout.p + 2 * R, dout.p + 3 * R, dout.p + 4 * R, dout.p + 5 * R};
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CK(edpo_cuda::forward_rows(pa, pb, dl.p, dw.p, R, V, c.eps, H<T>::dtype, st, stream));
  CK(edpo_cuda::backward_rows(pa, dl.p, st.policy_lse, drg.p, R, V, H<T>::dtype, pg, stream));
  CK(cudaStreamSynchronize(stream));
  CK(cudaStreamDestroy(stream));

  std::vector<float> out(6 * R);
  std::vector<T> grad(n + 16);
  CK(cudaMemcpy(out.data(), dout.p, 6 * R * sizeof(float), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(grad.data(), dg.p, (n + 16) * sizeof(T), cudaMemcpyDeviceToHost));

  Failure fail;
  const char* dn = H<T>::name;
  double grad_rtol, grad_atol;
  grad_tolerance<T>(grad_rtol, grad_atol);
  double worst_fwd = 0, worst_grad = 0;  // error / tolerance
  std::vector<double> a(V), b(V);
  static const char* kFields[6] = {"policy_logp", "reference_logp", "plus_logp",
                                   "minus_logp",  "logit_sum",      "policy_lse"};
  for (int64_t r = 0; r < R; ++r) {
    const T* gr = grad.data() + c.off_g + r * V;
    if (weight[r] == 0.f) {
      for (int f = 0; f < 6; ++f)
        if (!is_pos_zero_bits(out[f * R + r])) fail.report(kFields[f], dn, c, r, -1, out[f * R + r], 0.0, 0.0);
      for (int64_t j = 0; j < V; ++j)
        if (!is_pos_zero_bits(gr[j])) fail.report("grad(masked)", dn, c, r, j, H<T>::to(gr[j]), 0.0, 0.0);
      continue;
    }
    for (int64_t j = 0; j < V; ++j) {
      a[j] = H<T>::to(ha[r * V + j]);
      b[j] = H<T>::to(hb[r * V + j]);
    }
    const RefRow ref = reference_row(a, b, labels[r], static_cast<double>(c.eps));
    const double want[6] = {ref.lp, ref.lr, ref.lpp, ref.lpm, ref.sum, ref.lse};
    for (int f = 0; f < 6; ++f) {
      // Row sums: fp32 rounding scales with Σ|a_j|, not with the (possibly cancelled) sum itself.
      const double tol = 2e-4 + 1e-5 * std::fabs(want[f]) + (f == 4 ? 1e-6 * ref.sum_abs : 0.0);
      const double got = out[f * R + r];
      if (!close_enough(got, want[f], tol))
        fail.report(kFields[f], dn, c, r, -1, got, want[f], tol);
      else if (std::isfinite(want[f]))
        worst_fwd = std::max(worst_fwd, std::fabs(got - want[f]) / tol);
    }
    const double g = row_grad[r];
    for (int64_t j = 0; j < V; ++j) {
      const double p = std::exp(a[j] - ref.lse);
      const double want_g = g * ((j == labels[r] ? 1.0 : 0.0) - p);
      // The saved LSE is an fp32 number: p_j carries a few fp32 ulps of |lse|, which matters where
      // 1 − p_y cancels (one dominant logit).
      const double slack = 8 * 0x1.0p-24 * (std::fabs(ref.lse) + 1) * std::fabs(g) * p;
      const double tol = grad_atol + grad_rtol * std::fabs(want_g) + slack;
      const double got = H<T>::to(gr[j]);
      if (!close_enough(got, want_g, tol))
        fail.report("grad", dn, c, r, j, got, want_g, tol);
      else if (std::isfinite(want_g))
        worst_grad = std::max(worst_grad, std::fabs(got - want_g) / tol);
    }
  }
  // Padding around the gradient must be untouched (still 0xff poison).
  auto untouched = [&](const T* p, size_t count, const char* what) {
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p);
    for (size_t k = 0; k < count * sizeof(T); ++k)
      if (bytes[k] != 0xff) {
        fail.report(what, dn, c, -1, static_cast<int64_t>(k), bytes[k], 255, 0);
        return;
      }
  };
  untouched(grad.data(), c.off_g, "grad(before row 0)");
  untouched(grad.data() + c.off_g + n, 16 - c.off_g, "grad(after last row)");

  if (verbose || fail.count)
    std::printf("%-4s %-5s V=%-6lld rows=%-4lld %-8s eps=%-5g off=(%d,%d,%d)  max err/tol fwd %.3f grad %.3f  %s\n", dn,
                fail.count ? "FAIL" : "ok", (long long)V, (long long)R, dist_name(c.dist), c.eps, c.off_a, c.off_b,
                c.off_g, worst_fwd, worst_grad, fail.count ? "<<<" : "");
  return fail.count;
}

// The launchers' argument checks (no kernel runs).
int check_arguments() {
  int bad = 0;
  auto expect = [&](cudaError_t got, cudaError_t want, const char* what) {
    if (got != want) {
      std::printf("  FAIL argument check %s: got %s want %s\n", what, cudaGetErrorName(got), cudaGetErrorName(want));
      ++bad;
    }
  };
  DeviceBuf<float> buf(1024);
  DeviceBuf<int64_t> lab(16);
  float* f = buf.p;
  edpo_cuda::RowStats st{f + 100, f + 200, f + 300, f + 400, f + 500, f + 600};
  const cudaError_t inval = cudaErrorInvalidValue;
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 0, 7, 0.01f, Dtype::F32, st, 0), cudaSuccess, "fwd rows=0");
  expect(edpo_cuda::forward_rows(nullptr, nullptr, nullptr, nullptr, 0, 7, 0.01f, Dtype::F32, edpo_cuda::RowStats{}, 0),
         cudaSuccess, "fwd rows=0 null");
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, -1, 7, 0.01f, Dtype::F32, st, 0), inval, "fwd rows<0");
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 1, 0, 0.01f, Dtype::F32, st, 0), inval, "fwd vocab=0");
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 1, 262145, 0.01f, Dtype::F32, st, 0), inval, "fwd vocab>max");
  expect(edpo_cuda::forward_rows(nullptr, f, lab.p, f, 1, 7, 0.01f, Dtype::F32, st, 0), inval, "fwd null policy");
  edpo_cuda::RowStats st_null = st;
  st_null.logit_sum = nullptr;
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 1, 7, 0.01f, Dtype::F32, st_null, 0), inval, "fwd null output");
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 1, 7, 0.01f, static_cast<Dtype>(7), st, 0), inval, "fwd dtype");
  expect(edpo_cuda::forward_rows(f, f, lab.p, f, 1, 7, std::nanf(""), Dtype::F32, st, 0), inval, "fwd eps NaN");
  expect(edpo_cuda::forward_rows(reinterpret_cast<char*>(f) + 1, f, lab.p, f, 1, 7, 0.01f, Dtype::BF16, st, 0), inval,
         "fwd misaligned bf16");
  expect(edpo_cuda::backward_rows(f, lab.p, f, f, 0, 7, Dtype::F32, f, 0), cudaSuccess, "bwd rows=0");
  expect(edpo_cuda::backward_rows(f, lab.p, f, f, -1, 7, Dtype::F32, f + 512, 0), inval, "bwd rows<0");
  expect(edpo_cuda::backward_rows(f, lab.p, f, f, 1, 262145, Dtype::F32, f + 512, 0), inval, "bwd vocab>max");
  expect(edpo_cuda::backward_rows(f, lab.p, f, f, 1, 7, Dtype::F32, nullptr, 0), inval, "bwd null grad");
  CK(cudaDeviceSynchronize());
  std::printf("argument checks: %s\n", bad ? "FAIL" : "ok");
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Timing.
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

template <typename T>
__global__ void fill_logits(T* a, T* b, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float u = hash32(seed ^ (i * 2)) * 0x1.0p-32f - 0.5f;
    const float w = hash32(seed ^ (i * 2 + 1)) * 0x1.0p-32f - 0.5f;
    const float x = 16.f * u;  // spread ±8
    a[i] = T(x);
    b[i] = T(x + w);
  }
}

__global__ void fill_rows(int64_t* labels, float* weight, float* row_grad, int64_t rows, int64_t vocab) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    labels[r] = hash32(0x1234 + r) % vocab;
    weight[r] = 1.f;
    row_grad[r] = 1e-3f;
  }
}

template <typename F>
float median_ms(F&& launch, cudaStream_t stream, int warmup, int iters) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < warmup; ++i) CK(launch());
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    CK(cudaEventRecord(e0, stream));
    CK(launch());
    CK(cudaEventRecord(e1, stream));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&ms[i], e0, e1));
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

struct Timing {
  const char* dtype;
  int64_t vocab, rows;
  double fwd_ms, fwd_gbps, copy_gbps, fwd_pct, bwd_ms, bwd_gbps, bwd_pct;
  bool spot_ok;
};

// Forward reads 2·N·s bytes; backward reads N·s and writes N·s; the copy moves 2·N·s bytes, which is
// 4·N·s bytes of DRAM traffic, so copy GB/s counts read + written bytes (the achievable ceiling).
template <typename T>
Timing time_case(int64_t V, int64_t R, int& failures) {
  const size_t n = static_cast<size_t>(V * R);
  const double bytes_rows = static_cast<double>(n) * sizeof(T);
  DeviceBuf<T> ab(2 * n), copy_dst(2 * n), grad(n);
  DeviceBuf<int64_t> labels(R);
  DeviceBuf<float> weight(R), row_grad(R), outs(6 * R);
  T* a = ab.p;
  T* b = ab.p + n;
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  fill_logits<T><<<1024, 256, 0, stream>>>(a, b, n, 0xfeedull + V);
  fill_rows<<<64, 256, 0, stream>>>(labels.p, weight.p, row_grad.p, R, V);
  CK(cudaGetLastError());
  edpo_cuda::RowStats st{outs.p, outs.p + R, outs.p + 2 * R, outs.p + 3 * R, outs.p + 4 * R, outs.p + 5 * R};
  const float eps = 0.01f;
  const int warmup = 3, iters = 21;

  Timing t{};
  t.dtype = H<T>::name;
  t.vocab = V;
  t.rows = R;
  t.fwd_ms =
      median_ms([&] { return edpo_cuda::forward_rows(a, b, labels.p, weight.p, R, V, eps, H<T>::dtype, st, stream); },
                stream, warmup, iters);
  t.bwd_ms = median_ms(
      [&] {
        return edpo_cuda::backward_rows(a, labels.p, st.policy_lse, row_grad.p, R, V, H<T>::dtype, grad.p, stream);
      },
      stream, warmup, iters);
  const double copy_ms =
      median_ms([&] { return cudaMemcpyAsync(copy_dst.p, ab.p, 2 * n * sizeof(T), cudaMemcpyDeviceToDevice, stream); },
                stream, warmup, iters);
  t.fwd_gbps = 2 * bytes_rows / (t.fwd_ms * 1e6);
  t.bwd_gbps = 2 * bytes_rows / (t.bwd_ms * 1e6);
  t.copy_gbps = 4 * bytes_rows / (copy_ms * 1e6);
  t.fwd_pct = 100 * t.fwd_gbps / t.copy_gbps;
  t.bwd_pct = 100 * t.bwd_gbps / t.copy_gbps;

  // Spot check a few rows of the big run against the fp64 reference.
  CK(cudaStreamSynchronize(stream));
  std::vector<float> out(6 * R);
  CK(cudaMemcpy(out.data(), outs.p, 6 * R * sizeof(float), cudaMemcpyDeviceToHost));
  std::vector<int64_t> hl(R);
  CK(cudaMemcpy(hl.data(), labels.p, R * sizeof(int64_t), cudaMemcpyDeviceToHost));
  t.spot_ok = true;
  std::vector<T> ra(V), rb(V);
  std::vector<double> da(V), db(V);
  for (int64_t r : {int64_t(0), int64_t(1), R / 2, R - 1}) {
    CK(cudaMemcpy(ra.data(), a + r * V, V * sizeof(T), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(rb.data(), b + r * V, V * sizeof(T), cudaMemcpyDeviceToHost));
    for (int64_t j = 0; j < V; ++j) {
      da[j] = H<T>::to(ra[j]);
      db[j] = H<T>::to(rb[j]);
    }
    const RefRow ref = reference_row(da, db, hl[r], eps);
    const double want[6] = {ref.lp, ref.lr, ref.lpp, ref.lpm, ref.sum, ref.lse};
    for (int f = 0; f < 6; ++f) {
      const double tol = 2e-4 + 1e-5 * std::fabs(want[f]) + (f == 4 ? 1e-6 * ref.sum_abs : 0.0);
      if (!close_enough(out[f * R + r], want[f], tol)) {
        std::printf("  FAIL timing spot check %s V=%lld row %lld field %d: got %.9g want %.9g\n", H<T>::name,
                    (long long)V, (long long)r, f, out[f * R + r], want[f]);
        t.spot_ok = false;
        ++failures;
      }
    }
  }
  CK(cudaStreamDestroy(stream));
  return t;
}

template <typename T>
int run_correctness(bool quick) {
  int failures = 0;
  uint64_t seed = 1000 + static_cast<uint64_t>(H<T>::dtype) * 100;
  std::vector<Case> cases;
  if (quick) {
    cases = {{7, 8, Dist::Normal, 0.01f, 0, 0, 0},
             {50257, 8, Dist::Spread30, 0.01f, 0, 0, 0},
             {4099, 8, Dist::NegInf, 0.01f, 1, 1, 1},
             {5003, 6, Dist::Normal, 0.01f, 1, 0, 3}};
  } else {
    for (int64_t V : {7, 50257, 32000, 128256, 256000}) cases.push_back({V, 64, Dist::Normal, 0.01f, 0, 0, 0});
    cases.push_back({1, 8, Dist::Normal, 0.01f, 0, 0, 0});
    cases.push_back({4096, 16, Dist::Normal, 0.01f, 0, 0, 0});  // last size on the 128-thread forward
    cases.push_back({4097, 16, Dist::Normal, 0.01f, 0, 0, 0});  // first on the 512-thread forward
    cases.push_back({50257, 64, Dist::Spread30, 0.01f, 0, 0, 0});
    cases.push_back({7, 64, Dist::Spread30, 0.1f, 0, 0, 0});
    cases.push_back({32000, 32, Dist::NegInf, 0.01f, 0, 0, 0});
    cases.push_back({50257, 32, Dist::Normal, 0.0f, 1, 1, 1});   // shifted but mutually aligned: vector path
    cases.push_back({32000, 32, Dist::Normal, 0.02f, 1, 0, 3});  // mutually misaligned: scalar fallback
    cases.push_back({262144, 8, Dist::Normal, 0.01f, 3, 3, 5});
  }
  for (const Case& c : cases) failures += run_case<T>(c, seed++, true);
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, timing = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick")
      quick = true, timing = false;
    else if (arg == "--no-timing")
      timing = false;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--no-timing]\n", argv[0]);
      return 2;
    }
  }
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f GiB)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              prop.totalGlobalMem / 1073741824.0);

  int failures = check_arguments();
  failures += run_correctness<float>(quick);
  failures += run_correctness<__nv_bfloat16>(quick);
  failures += run_correctness<__half>(quick);
  std::printf("correctness: %s (%d failure%s)\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");

  std::vector<Timing> timings;
  if (timing) {
    const int64_t R = 4096;
    for (int64_t V : {32000, 128256}) {
      timings.push_back(time_case<float>(V, R, failures));
      timings.push_back(time_case<__nv_bfloat16>(V, R, failures));
      timings.push_back(time_case<__half>(V, R, failures));
    }
    std::printf(
        "\ncopy GB/s counts bytes read + written by a D2D copy of the forward's input (the ceiling);\n"
        "fwd GB/s = 2*rows*V*size / t (read), bwd GB/s = (read + write) / t.\n");
    std::printf("%-5s %7s %5s %9s %9s %9s %7s %9s %9s %7s\n", "dtype", "V", "rows", "fwd ms", "fwd GB/s", "copy GB/s",
                "fwd/cp%", "bwd ms", "bwd GB/s", "bwd/cp%");
    for (const Timing& t : timings)
      std::printf("%-5s %7lld %5lld %9.4f %9.1f %9.1f %7.1f %9.4f %9.1f %7.1f%s\n", t.dtype, (long long)t.vocab,
                  (long long)t.rows, t.fwd_ms, t.fwd_gbps, t.copy_gbps, t.fwd_pct, t.bwd_ms, t.bwd_gbps, t.bwd_pct,
                  t.spot_ok ? "" : "  (spot check FAILED)");
  }

  const char* out_dir = std::getenv("OUT");
  const std::string path = (out_dir && *out_dir) ? std::string(out_dir) + "/kernel_check.json" : "kernel_check.json";
  if (FILE* fp = std::fopen(path.c_str(), "w")) {
    std::fprintf(fp, "{\n  \"device\": \"%s\",\n  \"sm\": %d,\n  \"correctness_failures\": %d,\n  \"quick\": %s,\n",
                 prop.name, prop.major * 10 + prop.minor, failures, quick ? "true" : "false");
    std::fprintf(fp, "  \"timing\": [");
    for (size_t i = 0; i < timings.size(); ++i) {
      const Timing& t = timings[i];
      std::fprintf(fp,
                   "%s\n    {\"dtype\": \"%s\", \"vocab\": %lld, \"rows\": %lld, \"fwd_ms\": %.5f, \"fwd_gbps\": %.1f, "
                   "\"copy_gbps\": %.1f, \"fwd_pct_of_copy\": %.1f, \"bwd_ms\": %.5f, \"bwd_gbps\": %.1f, "
                   "\"bwd_pct_of_copy\": %.1f, \"spot_check_ok\": %s}",
                   i ? "," : "", t.dtype, (long long)t.vocab, (long long)t.rows, t.fwd_ms, t.fwd_gbps, t.copy_gbps,
                   t.fwd_pct, t.bwd_ms, t.bwd_gbps, t.bwd_pct, t.spot_ok ? "true" : "false");
    }
    std::fprintf(fp, "%s]\n}\n", timings.empty() ? "" : "\n  ");
    std::fclose(fp);
    std::printf("wrote %s\n", path.c_str());
  } else {
    std::fprintf(stderr, "could not write %s\n", path.c_str());
  }
  return failures ? 1 : 0;
}
