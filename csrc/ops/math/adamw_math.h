// One element of the AdamW step, as torch.optim.AdamW's single-tensor path computes it, in the
// state's dtype S. Raw C++ for the host (cpu/optimizer_kernels.cc's vectorised loop) and the device
// (cuda/optimizer_kernels.cu): one formula, so the CPU tests check the arithmetic the GPU runs.
#pragma once
#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace edpo {

// The scalars of one AdamW step, as torch.optim.AdamW's single-tensor path applies them.
struct AdamWScalars {
  double decay;       // 1 − lr·weight_decay
  double beta1;       // m ← lerp(m, g, 1 − β1)
  double beta2;       // v ← β2·v + (1 − β2)·g²
  double bias2_sqrt;  // √(1 − β2^t)
  double eps;
  double neg_step_size;  // −lr / (1 − β1^t)
};

// The same, each rounded to S once (as ATen converts a Scalar to the tensor's dtype).
template <typename S>
struct AdamWElementScalars {
  S decay;  // 1 − lr·weight_decay
  S w;      // 1 − β1, the lerp weight
  S beta2;
  S c2;     // 1 − β2
  S bias2;  // √(1 − β2^t)
  S eps;
  S step;  // −lr / (1 − β1^t)
};

template <typename S>
AdamWElementScalars<S> element_scalars(const AdamWScalars& sc) {
  return {S(sc.decay), S(1 - sc.beta1), S(sc.beta2), S(1 - sc.beta2), S(sc.bias2_sqrt), S(sc.eps), S(sc.neg_step_size)};
}

// ATen's lerp form for weight w: the low-weight one when |w| < 0.5.
inline bool adamw_low_weight(const AdamWScalars& sc) { return (1 - sc.beta1) < 0.5 && (1 - sc.beta1) > -0.5; }

// CUDA's device sqrt has float and double overloads, correctly rounded like std::sqrt.
template <typename S>
EDPO_HOST_DEVICE inline S adamw_sqrt(S x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// t ← t·decay; m ← lerp(m, g, w) in the form ATen picks (kLowWeight: |w| < 0.5); v ← β2·v + (1−β2)·g·g;
// t ← t + step·m / (√v / bias2 + eps). Returns the new t (the caller rounds it into a bf16/fp16 parameter).
template <typename S, bool kLowWeight>
EDPO_HOST_DEVICE inline S adamw_element(S g, S& target, S& m, S& v, const AdamWElementScalars<S>& s) {
  const S t = target * s.decay;
  const S mi = kLowWeight ? m + s.w * (g - m) : g - (g - m) * (S(1) - s.w);
  const S vi = v * s.beta2 + s.c2 * g * g;
  const S denom = adamw_sqrt(vi) / s.bias2 + s.eps;
  const S ti = t + s.step * mi / denom;
  m = mi;
  v = vi;
  target = ti;
  return ti;
}

}  // namespace edpo
