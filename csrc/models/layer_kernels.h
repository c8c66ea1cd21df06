// Fused CPU kernels of the decoder layer's elementwise parts, each an autograd Function with a
// hand-written backward: RMSNorm (optionally of a residual sum), rotate-half RoPE and SwiGLU.
// They follow the eager composition's numerics (fp32 accumulation, the activations' dtype
// rounded where the eager ops round it) in one pass over memory instead of 4–10 ATen ops and
// their intermediates. CUDA tensors and other dtypes keep the ATen composition (layers.cc).
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace edpo::models {

// True when the fused kernels take tensors of x's device and dtype (CPU float32, bfloat16, float64).
bool fused_layer_kernels(const at::Tensor& x);
// True where the model uses them: CPU float32 and float64. In bf16 they run on 4 SSE2 lanes and
// measured slower than ATen's AVX2/AVX-512 bf16 ops (bench/RESULTS.md), so bf16 keeps the composition.
bool model_uses_fused_layer_kernels(const at::Tensor& x);

// HF RMSNorm of s = x + residual (residual undefined: s = x) along the last dim, accumulated in
// fp32 (fp64 for fp64): llama: w · cast(s / rms(s)); gemma (plus_one): cast(s / rms(s) · (1 + w)).
// Returns {normed, s}; s is undefined without a residual.
std::pair<at::Tensor, at::Tensor> fused_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w,
                                                 double eps, bool plus_one);

// Rotate-half RoPE of x [B, T, heads, head_dim] with cos/sin [B, T, head_dim] (broadcast over the
// heads): x·cos + rotate_half(x)·sin. cos/sin get no gradient.
at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// silu(gate) · up, same shapes.
at::Tensor fused_swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace edpo::models
