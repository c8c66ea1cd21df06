// AdamW and gradient-norm kernels (contract in optimizer_kernels.h). All memory-bound: one pass
// over each tensor, grid-stride loops of 256 threads.
#include "optimizer_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace edpo_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Storage ↔ arithmetic: bf16/fp16 widen exactly to float and round to nearest even back.
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ double widen(double x) { return x; }
template <typename P>
__device__ __forceinline__ P narrow_to(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 narrow_to<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half narrow_to<__half>(float x) {
  return __float2half_rn(x);
}

// Without a master (S = P) param is target, and only target is written.
template <typename S, typename P, bool kLowWeight>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(P* param, S* __restrict__ target, S* __restrict__ m, S* __restrict__ v, const P* __restrict__ grad,
                 int64_t n, edpo::AdamWElementScalars<S> s) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    S t = target[i], mi = m[i], vi = v[i];
    const S updated = edpo::adamw_element<S, kLowWeight>(S(widen(grad[i])), t, mi, vi, s);
    target[i] = t;
    m[i] = mi;
    v[i] = vi;
    if constexpr (!std::is_same<S, P>::value) param[i] = narrow_to<P>(updated);
  }
}

template <typename S, typename P>
cudaError_t launch_adamw(void* param, void* target, void* m, void* v, const void* grad, int64_t n,
                         const edpo::AdamWScalars& sc, cudaStream_t stream) {
  const auto s = edpo::element_scalars<S>(sc);
  auto* p = static_cast<P*>(param);
  auto* t = static_cast<S*>(target);
  auto* mm = static_cast<S*>(m);
  auto* vv = static_cast<S*>(v);
  const auto* g = static_cast<const P*>(grad);
  if (edpo::adamw_low_weight(sc))
    adamw_kernel<S, P, true><<<grid_for(n), kThreads, 0, stream>>>(p, t, mm, vv, g, n, s);
  else
    adamw_kernel<S, P, false><<<grid_for(n), kThreads, 0, stream>>>(p, t, mm, vv, g, n, s);
  return cudaGetLastError();
}

// One block per kSquareSumBlock elements: each thread's strided sum, then a shared-memory tree.
template <typename P>
__global__ void __launch_bounds__(kThreads)
    square_sum_kernel(const P* __restrict__ grad, int64_t n, double* __restrict__ partials) {
  __shared__ double partial[kThreads];
  const int64_t begin = int64_t(blockIdx.x) * kSquareSumBlock;
  const int64_t end = begin + kSquareSumBlock < n ? begin + kSquareSumBlock : n;
  double acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const double x = double(widen(grad[i]));
    acc += x * x;
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = partial[0];
}

constexpr int kSumThreads = 1024;

__global__ void __launch_bounds__(kSumThreads)
    sum_partials_kernel(const double* __restrict__ partials, int64_t count, double* __restrict__ sum) {
  __shared__ double partial[kSumThreads];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < count; i += kSumThreads) acc += partials[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *sum = partial[0];
}

__global__ void clip_factor_kernel(const double* __restrict__ square_sum, double max_norm,
                                   double* __restrict__ norm_scale) {
  const double norm = sqrt(*square_sum);
  const double coef = max_norm / (norm + 1e-6);
  norm_scale[0] = norm;
  norm_scale[1] = max_norm > 0 && isfinite(norm) && coef < 1 ? coef : 1.0;
}

template <typename P>
__global__ void __launch_bounds__(kThreads)
    scale_kernel(P* __restrict__ grad, int64_t n, const double* __restrict__ norm_scale) {
  const double scale = norm_scale[1];
  if (scale == 1.0) return;
  const float f = float(scale);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    if constexpr (std::is_same<P, double>::value)
      grad[i] = grad[i] * scale;
    else if constexpr (std::is_same<P, float>::value)
      grad[i] = grad[i] * f;
    else
      grad[i] = narrow_to<P>(widen(grad[i]) * f);
  }
}

}  // namespace

cudaError_t adamw_update(ParamDtype dtype, void* param, void* target, void* exp_avg, void* exp_avg_sq, const void* grad,
                         int64_t n, const edpo::AdamWScalars& scalars, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (dtype) {
    case ParamDtype::F32:
      return launch_adamw<float, float>(param, target, exp_avg, exp_avg_sq, grad, n, scalars, stream);
    case ParamDtype::F64:
      return launch_adamw<double, double>(param, target, exp_avg, exp_avg_sq, grad, n, scalars, stream);
    case ParamDtype::BF16:
      return launch_adamw<float, __nv_bfloat16>(param, target, exp_avg, exp_avg_sq, grad, n, scalars, stream);
    case ParamDtype::F16:
      return launch_adamw<float, __half>(param, target, exp_avg, exp_avg_sq, grad, n, scalars, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t square_sum_partials(ParamDtype dtype, const void* grad, int64_t n, double* partials, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = square_sum_blocks(n);
  if (blocks > 2147483647) return cudaErrorInvalidValue;
  switch (dtype) {
    case ParamDtype::F32:
      square_sum_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(static_cast<const float*>(grad), n, partials);
      break;
    case ParamDtype::F64:
      square_sum_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(static_cast<const double*>(grad), n, partials);
      break;
    case ParamDtype::BF16:
      square_sum_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(grad), n,
                                                                   partials);
      break;
    case ParamDtype::F16:
      square_sum_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(static_cast<const __half*>(grad), n, partials);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t sum_partials(const double* partials, int64_t count, double* sum, cudaStream_t stream) {
  if (count < 0) return cudaErrorInvalidValue;
  sum_partials_kernel<<<1, kSumThreads, 0, stream>>>(partials, count, sum);
  return cudaGetLastError();
}

cudaError_t clip_factor(const double* square_sum, double max_norm, double* norm_scale, cudaStream_t stream) {
  clip_factor_kernel<<<1, 1, 0, stream>>>(square_sum, max_norm, norm_scale);
  return cudaGetLastError();
}

cudaError_t scale_grad(ParamDtype dtype, void* grad, int64_t n, const double* norm_scale, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (dtype) {
    case ParamDtype::F32:
      scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<float*>(grad), n, norm_scale);
      break;
    case ParamDtype::F64:
      scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<double*>(grad), n, norm_scale);
      break;
    case ParamDtype::BF16:
      scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(grad), n, norm_scale);
      break;
    case ParamDtype::F16:
      scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<__half*>(grad), n, norm_scale);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace edpo_cuda
