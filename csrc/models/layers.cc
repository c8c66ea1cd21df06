// One decoder layer with HF numerics: RMSNorm in fp32, rotate-half RoPE, GQA attention with a
// fp32 softmax (or SDPA on libtorch >= 2.1), SiLU/GeGLU MLP, and gemma2's extra norms and caps.
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "causal_lm.h"
#include "layer_kernels.h"

namespace edpo::models {
namespace {

// fp64 models compute in fp64 (tests); everything else accumulates in fp32 as transformers does.
at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, const ModelConfig& c) {
  if (model_uses_fused_layer_kernels(x) && w.scalar_type() == x.scalar_type())
    return fused_rms_norm(x, at::Tensor(), w, c.rms_norm_eps, c.gemma_norm).first;
  const at::ScalarType acc = acc_type(x.scalar_type());
  at::Tensor xf = x.to(acc);
  xf = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + c.rms_norm_eps);
  if (c.gemma_norm) return (xf * (w.to(acc) + 1.0)).to(x.scalar_type());  // gemma: (1 + w) in fp32, then cast
  return w * xf.to(x.scalar_type());                                      // llama: cast, then scale
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [B, T, heads, hd] (the projection's layout), cos/sin [B, T, hd]; returns [B, heads, T, hd].
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (model_uses_fused_layer_kernels(x) && cos.scalar_type() == x.scalar_type())
    return fused_rope(x, cos, sin).transpose(1, 2);
  const at::Tensor xt = x.transpose(1, 2), c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  return xt * c + rotate_half(xt) * s;  // cos/sin broadcast over heads
}

// x + residual and the RMSNorm of that sum: {normed, sum}, fused on the CPU.
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w,
                                               const ModelConfig& c) {
  if (model_uses_fused_layer_kernels(x) && w.scalar_type() == x.scalar_type() &&
      residual.scalar_type() == x.scalar_type())
    return fused_rms_norm(x, residual, w, c.rms_norm_eps, c.gemma_norm);
  at::Tensor sum = x + residual;
  return {rms_norm(sum, w, c), sum};
}

// The MLP's activation times its up projection: silu (SwiGLU, fused on the CPU) or gelu-tanh (GeGLU).
at::Tensor gated(const at::Tensor& gate, const at::Tensor& up, const ModelConfig& c) {
  if (c.gelu_tanh) return at::gelu(gate, "tanh") * up;
  if (model_uses_fused_layer_kernels(gate) && up.scalar_type() == gate.scalar_type()) return fused_swiglu(gate, up);
  return at::silu(gate) * up;
}

// [B, nkv, S, hd] → [B, nkv·rep, S, hd]: head h reads kv head h / rep (HF repeat_kv).
at::Tensor repeat_kv(const at::Tensor& x, int64_t rep) {
  if (rep == 1) return x;
  const auto s = x.sizes();
  return x.unsqueeze(2).expand({s[0], s[1], rep, s[2], s[3]}).reshape({s[0], s[1] * rep, s[2], s[3]});
}

bool use_sdpa(const ModelConfig& c, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return c.attn_softcap == 0.0 && dtype != at::kDouble;
#else
  (void)c;
  (void)dtype;
  return false;
#endif
}

at::Tensor attend(const ModelConfig& c, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& bias) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  // No bias: plain causal attention (attention_bias), which SDPA's flash kernels run without a mask.
  if (use_sdpa(c, q.scalar_type())) {
    // An undefined tensor is not "no mask" to SDPA: it must get an empty optional.
    if (!bias.defined()) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, c.attn_scale);
    return at::scaled_dot_product_attention(q, k, v, bias, 0.0, false, c.attn_scale);
  }
#endif
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) * c.attn_scale;
  if (c.attn_softcap > 0.0) scores = at::tanh(scores / c.attn_softcap) * c.attn_softcap;
  // Added like HF's 4-D mask, so backward passes the gradient through untouched.
  return at::matmul((scores.to(acc_type(q.scalar_type())) + bias).softmax(-1).to(q.scalar_type()), v);
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

// Projection `slot` (its bias is the next slot), plus its LoRA term when adapters are on.
at::Tensor project(const at::Tensor& x, const LayerWeights& lw, int slot, int64_t layer, const ForwardContext& ctx) {
  at::Tensor y = linear(x, lw.w[slot], lw.w[slot + 1]);
  if (ctx.adapters && lw.lora_a[slot].defined()) y = y + lora_delta(x, lw, slot, layer, ctx);
  return y;
}

}  // namespace

at::Tensor attention_bias(const ModelConfig& c, const ForwardContext& ctx, int64_t window, at::ScalarType dtype) {
  // SDPA's own causal flag replaces a mask that would only say "causal" (no padding, no window,
  // no cached keys): on CUDA that picks the flash kernels, which take no bias.
  const bool sdpa = use_sdpa(c, dtype);
  if (sdpa && window <= 0 && !ctx.key_padding.defined() && ctx.query_positions.size(0) == ctx.key_positions.size(0))
    return at::Tensor();
  const at::Tensor q = ctx.query_positions.unsqueeze(1);  // [T,1]
  const at::Tensor k = ctx.key_positions.unsqueeze(0);    // [1,S]
  at::Tensor masked = k > q;
  if (window > 0) masked = masked.logical_or(q - k >= window);
  masked = masked.unsqueeze(0).unsqueeze(0);  // [1,1,T,S]
  if (ctx.key_padding.defined()) masked = masked.logical_or(ctx.key_padding.unsqueeze(1).unsqueeze(2));
  // SDPA masks in the activations' dtype: a finite fill that bf16/fp16 can hold keeps fully
  // masked rows (left padding) uniform instead of NaN. Otherwise the scores are fp32/fp64 and
  // take HF's finfo(float32).min.
  const at::ScalarType bias_type = sdpa ? dtype : acc_type(dtype);
  const double fill = !sdpa ? double(std::numeric_limits<float>::lowest()) : dtype == at::kHalf ? -65504.0 : -1e30;
  return at::zeros(masked.sizes(), ctx.query_positions.options().dtype(bias_type)).masked_fill(masked, fill);
}

const char* layer_slot_name(int slot) {
  static const char* const names[kNumSlots] = {
      "input_layernorm.weight",
      "post_attention_layernorm.weight",
      "pre_feedforward_layernorm.weight",
      "post_feedforward_layernorm.weight",
      "self_attn.q_proj.weight",
      "self_attn.q_proj.bias",
      "self_attn.k_proj.weight",
      "self_attn.k_proj.bias",
      "self_attn.v_proj.weight",
      "self_attn.v_proj.bias",
      "self_attn.o_proj.weight",
      "self_attn.o_proj.bias",
      "mlp.gate_proj.weight",
      "mlp.gate_proj.bias",
      "mlp.up_proj.weight",
      "mlp.up_proj.bias",
      "mlp.down_proj.weight",
      "mlp.down_proj.bias",
  };
  return names[slot];
}

at::Tensor CausalLM::layer_forward(int64_t layer, const at::Tensor& x, const LayerWeights& lw,
                                   const ForwardContext& ctx, KvCache* cache) const {
  const ModelConfig& c = config_;
  const at::Tensor* w = lw.w;
  const int64_t B = x.size(0), T = x.size(1), hd = c.head_dim;

  // Attention block.
  at::Tensor h = rms_norm(x, w[kInputNorm], c);
  at::Tensor q = apply_rope(project(h, lw, kQ, layer, ctx).view({B, T, c.num_heads, hd}), ctx.cos, ctx.sin);
  at::Tensor k = apply_rope(project(h, lw, kK, layer, ctx).view({B, T, c.num_kv_heads, hd}), ctx.cos, ctx.sin);
  at::Tensor v = project(h, lw, kV, layer, ctx).view({B, T, c.num_kv_heads, hd}).transpose(1, 2);
  if (cache != nullptr) {
    at::Tensor& ck = cache->k[size_t(layer)];
    at::Tensor& cv = cache->v[size_t(layer)];
    if (ck.defined()) {
      k = at::cat({ck, k}, 2);
      v = at::cat({cv, v}, 2);
    }
    ck = k;
    cv = v;
  }
  const int64_t rep = c.num_heads / c.num_kv_heads;
  at::Tensor a;
  if (ctx.segment_lengths.empty()) {
    a = attend(c, q, repeat_kv(k, rep), repeat_kv(v, rep), ctx.layer_bias[size_t(layer)]);
  } else {
    // Padding-free: each packed sequence attends to itself only (varlen attention), no [N, N] scores.
    std::vector<at::Tensor> parts;
    int64_t start = 0;
    for (size_t s = 0; s < ctx.segment_lengths.size(); ++s) {
      const int64_t n = ctx.segment_lengths[s];
      parts.push_back(attend(c, q.narrow(2, start, n), repeat_kv(k.narrow(2, start, n), rep),
                             repeat_kv(v.narrow(2, start, n), rep), ctx.segment_bias[size_t(layer)][s]));
      start += n;
    }
    a = at::cat(parts, 2);
  }
  a = project(a.transpose(1, 2).reshape({B, T, c.num_heads * hd}), lw, kO, layer, ctx);
  if (c.gemma_norm) a = rms_norm(a, w[kPostAttnNorm], c);
  // out = x + a, h = its norm (one pass on the CPU).
  at::Tensor out;
  std::tie(h, out) = add_rms_norm(x, a, c.gemma_norm ? w[kPreFfNorm] : w[kPostAttnNorm], c);

  // MLP block.
  const at::Tensor gate = project(h, lw, kGate, layer, ctx);
  at::Tensor m = project(gated(gate, project(h, lw, kUp, layer, ctx), c), lw, kDown, layer, ctx);
  if (c.gemma_norm) m = rms_norm(m, w[kPostFfNorm], c);
  return out + m;
}

}  // namespace edpo::models
