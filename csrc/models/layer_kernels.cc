// Fused CPU RMSNorm (+ residual add), RoPE and SwiGLU with hand-written backward (layer_kernels.h).
// Every kernel walks rows in parallel (ATen's intra-op threads) and accumulates in A = fp32 (fp64
// for fp64). Where the eager composition rounds an intermediate to the activations' dtype T (bf16
// products, silu's output), rnd<T>() rounds it too, so bf16 results track eager ones.
#include "layer_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "../ops/arg_error.h"
#include "../ops/autograd_function.h"

namespace edpo::models {
namespace {

// A value of accumulation type A, rounded through the activations' dtype T (a no-op for fp32/fp64).
template <typename T, typename A>
inline A rnd(A v) {
  return A(T(v));
}

// Four fp32 lanes (SSE2, the x86-64 baseline; GCC vector extensions elsewhere too). Written as
// vectors because GCC will not if-convert the clamp of a scalar loop into vector code.
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

// e^x per lane, no libm call: Cody–Waite reduction x = n·ln2 + f and Cephes' degree-7
// polynomial, ~1 ulp. Inputs are clamped to [-87, 88] (results stay normal); NaN stays NaN.
inline f32x4 exp_lanes(f32x4 x) {
  const f32x4 zero{};
  x = x < -87.0f ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  const f32x4 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  f32x4 f = x - n * 0.693359375f;
  f = f - n * -2.12194440e-4f;
  f32x4 p = zero + 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  p = p * f * f + f + 1.0f;
  const i32x4 bits = (__builtin_convertvector(n, i32x4) + 127) << 23;
  f32x4 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

typedef uint32_t u32x4 __attribute__((vector_size(16)));

// m ≤ 4 values of T as fp32 lanes (zeros past m), lanes rounded through T, and the lanes stored
// as T. bf16 is the top half of fp32, rounded to nearest even (NaN stays NaN), as c10 rounds it.
inline f32x4 load4(const float* p, int64_t m) {
  f32x4 v{};
  std::memcpy(&v, p, size_t(m) * 4);
  return v;
}
inline f32x4 load4(const c10::BFloat16* p, int64_t m) {
  uint16_t h[4] = {0, 0, 0, 0};
  std::memcpy(h, p, size_t(m) * 2);
  const u32x4 u = u32x4{h[0], h[1], h[2], h[3]} << 16;
  f32x4 v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
inline u32x4 bf16_bits(f32x4 v) {
  u32x4 u;
  std::memcpy(&u, &v, sizeof u);
  const u32x4 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded;
}
inline f32x4 round4(f32x4 v, float) { return v; }
inline f32x4 round4(f32x4 v, c10::BFloat16) {
  const u32x4 u = bf16_bits(v) << 16;
  f32x4 r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}
inline void store4(float* p, f32x4 v, int64_t m) { std::memcpy(p, &v, size_t(m) * 4); }
inline void store4(c10::BFloat16* p, f32x4 v, int64_t m) {
  const u32x4 u = bf16_bits(v);
  const uint16_t h[4] = {uint16_t(u[0]), uint16_t(u[1]), uint16_t(u[2]), uint16_t(u[3])};
  std::memcpy(p, h, size_t(m) * 2);
}

// σ(g) = 1 / (1 + e^-g) per lane.
inline f32x4 sigmoid4(f32x4 g) { return 1.0f / (1.0f + exp_lanes(-g)); }

// Runs f(T{}, A{}) for the element type of t.
template <typename F>
void dispatch(at::ScalarType t, F&& f) {
  switch (t) {
    case at::kFloat:
      return f(float{}, float{});
    case at::kBFloat16:
      return f(c10::BFloat16{}, float{});
    case at::kDouble:
      return f(double{}, double{});
    default:
      TORCH_CHECK(false, "fused layer kernels: unsupported dtype ", t);
  }
}

// Rows per task so that one task touches ~32K elements.
int64_t grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

// ---- RMSNorm -------------------------------------------------------------------------------

// Both Functions below share these; libtorch 1.13's Function cannot take an undefined input, so
// the residual form is its own Function.
variable_list rms_norm_forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& residual_in,
                               const at::Tensor& w_in, double eps, bool plus_one) {
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const at::Tensor residual = residual_in.defined() ? residual_in.contiguous() : residual_in;
  const int64_t H = x.size(-1), R = x.numel() / std::max<int64_t>(H, 1);
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor y = at::empty_like(x), sum = residual.defined() ? at::empty_like(x) : at::Tensor();
  at::Tensor rstd = at::empty({R}, x.options().dtype(acc));
  dispatch(x.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    const T* xp = x.data_ptr<T>();
    const T* rp = residual.defined() ? residual.data_ptr<T>() : nullptr;
    const T* wp = w.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    T* sp = sum.defined() ? sum.data_ptr<T>() : nullptr;
    A* rs = rstd.data_ptr<A>();
    at::parallel_for(0, R, grain(H), [=](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = xp + r * H;
        const T* src = xr;
        A ss = 0;
        if (rp != nullptr) {
          // s = x + residual, rounded to T as the eager add is.
          const T* rr = rp + r * H;
          T* sr = sp + r * H;
          for (int64_t i = 0; i < H; ++i) {
            const T s = T(A(xr[i]) + A(rr[i]));
            sr[i] = s;
            ss += A(s) * A(s);
          }
          src = sr;
        } else {
          for (int64_t i = 0; i < H; ++i) ss += A(xr[i]) * A(xr[i]);
        }
        const A inv = A(1) / std::sqrt(ss / A(H) + A(eps));
        rs[r] = inv;
        T* yr = yp + r * H;
        if (plus_one) {
          for (int64_t i = 0; i < H; ++i) yr[i] = T(A(src[i]) * inv * (A(wp[i]) + A(1)));
        } else {
          for (int64_t i = 0; i < H; ++i) yr[i] = T(A(wp[i]) * rnd<T>(A(src[i]) * inv));
        }
      }
    });
  });
  ctx->save_for_backward({residual.defined() ? sum : x, w, rstd});
  ctx->saved_data["plus_one"] = plus_one;
  ctx->saved_data["residual"] = residual.defined();
  if (residual.defined()) return {y, sum};
  return {y};
}

// Gradients of x, w (and the residual: the same as x's).
variable_list rms_norm_backward(AutogradContext* ctx, const variable_list& grads, bool need_x, bool need_w) {
  const variable_list saved = ctx->get_saved_variables();
  const at::Tensor& s = saved[0];
  const at::Tensor& w = saved[1];
  const at::Tensor& rstd = saved[2];
  const bool plus_one = ctx->saved_data["plus_one"].toBool();
  const bool has_residual = ctx->saved_data["residual"].toBool();
  const int64_t H = s.size(-1), R = s.numel() / std::max<int64_t>(H, 1);
  const at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(s);
  const at::Tensor gs = has_residual && grads.size() > 1 && grads[1].defined() ? grads[1].contiguous() : at::Tensor();
  const at::ScalarType acc = rstd.scalar_type();
  at::Tensor gx = need_x ? at::empty_like(s) : at::Tensor();
  // gw: one fp32 partial per block of rows, summed afterwards. A fixed block count keeps the
  // summation order independent of the thread count.
  const int64_t blocks = need_w ? std::min<int64_t>(R, 16) : 0;
  at::Tensor partial = need_w ? at::zeros({std::max<int64_t>(blocks, 1), H}, s.options().dtype(acc)) : at::Tensor();
  dispatch(s.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    const T* sp = s.data_ptr<T>();
    const T* wp = w.data_ptr<T>();
    const T* gyp = gy.data_ptr<T>();
    const T* gsp = gs.defined() ? gs.data_ptr<T>() : nullptr;
    const A* rs = rstd.data_ptr<A>();
    T* gxp = need_x ? gx.data_ptr<T>() : nullptr;
    A* pp = need_w ? partial.data_ptr<A>() : nullptr;
    auto rows = [=](int64_t begin, int64_t end, A* gw_acc) {
      for (int64_t r = begin; r < end; ++r) {
        const T* sr = sp + r * H;
        const T* gr = gyp + r * H;
        const A inv = rs[r];
        if (gw_acc != nullptr) {
          if (plus_one) {
            for (int64_t i = 0; i < H; ++i) gw_acc[i] += A(gr[i]) * (A(sr[i]) * inv);
          } else {
            for (int64_t i = 0; i < H; ++i) gw_acc[i] += A(gr[i]) * rnd<T>(A(sr[i]) * inv);
          }
        }
        if (gxp == nullptr) continue;
        // d/ds of s·inv: inv·(g − ŝ·mean(g·ŝ)), g the gradient reaching the normalized ŝ.
        A dot = 0;
        if (plus_one) {
          for (int64_t i = 0; i < H; ++i) dot += A(gr[i]) * (A(wp[i]) + A(1)) * (A(sr[i]) * inv);
        } else {
          for (int64_t i = 0; i < H; ++i) dot += rnd<T>(A(gr[i]) * A(wp[i])) * (A(sr[i]) * inv);
        }
        const A c = dot / A(H);
        T* out = gxp + r * H;
        for (int64_t i = 0; i < H; ++i) {
          const A g = plus_one ? A(gr[i]) * (A(wp[i]) + A(1)) : rnd<T>(A(gr[i]) * A(wp[i]));
          A v = inv * (g - A(sr[i]) * inv * c);
          if (gsp != nullptr) v = A(gsp[r * H + i]) + A(T(v));
          out[i] = T(v);
        }
      }
    };
    if (need_w) {
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) rows(b * R / blocks, (b + 1) * R / blocks, pp + b * H);
      });
    } else {
      at::parallel_for(0, R, grain(H), [&](int64_t begin, int64_t end) { rows(begin, end, nullptr); });
    }
  });
  at::Tensor gw = need_w ? partial.sum(0).to(w.scalar_type()) : at::Tensor();
  return {gx, gw};
}

class RmsNorm : public torch::autograd::Function<RmsNorm> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, double eps,
                               bool plus_one) {
    return rms_norm_forward(ctx, x, at::Tensor(), w, eps, plus_one);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list g = rms_norm_backward(ctx, grads, ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {ctx->needs_input_grad(0) ? g[0] : at::Tensor(), g[1], at::Tensor(), at::Tensor()};
  }
};

// (x + residual, its RMSNorm): outputs {normed, sum}.
class AddRmsNorm : public torch::autograd::Function<AddRmsNorm> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& residual,
                               const at::Tensor& w, double eps, bool plus_one) {
    return rms_norm_forward(ctx, x, residual, w, eps, plus_one);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool need_x = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    const variable_list g = rms_norm_backward(ctx, grads, need_x, ctx->needs_input_grad(2));
    return {ctx->needs_input_grad(0) ? g[0] : at::Tensor(), ctx->needs_input_grad(1) ? g[0] : at::Tensor(), g[1],
            at::Tensor(), at::Tensor()};
  }
};

// ---- RoPE ----------------------------------------------------------------------------------

// out = x·cos + rotate_half(x)·sin on one [heads, hd] row, or its transpose (backward: the
// rotation by −θ): out_i = x_i·c_i ∓ x_{i+h}·s_i, out_{i+h} = x_{i+h}·c_{i+h} ± x_i·s_{i+h} (forward),
// out_i = x_i·c_i + x_{i+h}·s_{i+h}, out_{i+h} = x_{i+h}·c_{i+h} − x_i·s_i (backward).
template <typename T, typename A>
void rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& out, bool transpose) {
  const int64_t hd = x.size(3), heads = x.size(2), half = hd / 2, BT = x.size(0) * x.size(1);
  const T* xp = x.data_ptr<T>();
  const T* cp = cos.data_ptr<T>();
  const T* sp = sin.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, BT, grain(heads * hd), [=](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const T* c = cp + bt * hd;
      const T* s = sp + bt * hd;
      for (int64_t h = 0; h < heads; ++h) {
        const T* xr = xp + (bt * heads + h) * hd;
        T* o = op + (bt * heads + h) * hd;
        if (!transpose) {
          for (int64_t i = 0; i < half; ++i) {
            const A a = A(xr[i]), b = A(xr[i + half]);
            o[i] = T(rnd<T>(a * A(c[i])) + rnd<T>(-b * A(s[i])));
            o[i + half] = T(rnd<T>(b * A(c[i + half])) + rnd<T>(a * A(s[i + half])));
          }
        } else {
          for (int64_t i = 0; i < half; ++i) {
            const A a = A(xr[i]), b = A(xr[i + half]);
            o[i] = T(rnd<T>(a * A(c[i])) + rnd<T>(b * A(s[i + half])));
            o[i + half] = T(rnd<T>(b * A(c[i + half])) - rnd<T>(a * A(s[i])));
          }
        }
      }
    }
  });
}

class Rope : public torch::autograd::Function<Rope> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& cos_in,
                            const at::Tensor& sin_in) {
    const at::Tensor x = x_in.contiguous(), cos = cos_in.contiguous(), sin = sin_in.contiguous();
    at::Tensor out = at::empty_like(x);
    dispatch(x.scalar_type(), [&](auto t, auto a) { rope_rows<decltype(t), decltype(a)>(x, cos, sin, out, false); });
    ctx->save_for_backward({cos, sin});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor g = grads[0].contiguous();
    at::Tensor gx = at::empty_like(g);
    dispatch(g.scalar_type(),
             [&](auto t, auto a) { rope_rows<decltype(t), decltype(a)>(g, saved[0], saved[1], gx, true); });
    return {gx, at::Tensor(), at::Tensor()};
  }
};

// ---- SwiGLU --------------------------------------------------------------------------------

class Swiglu : public torch::autograd::Function<Swiglu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate_in, const at::Tensor& up_in) {
    const at::Tensor gate = gate_in.contiguous(), up = up_in.contiguous();
    at::Tensor out = at::empty_like(gate);
    const int64_t n = gate.numel();
    dispatch(gate.scalar_type(), [&](auto t, auto a) {
      using T = decltype(t);
      using A = decltype(a);
      const T* gp = gate.data_ptr<T>();
      const T* up_p = up.data_ptr<T>();
      T* op = out.data_ptr<T>();
      at::parallel_for(0, n, 32768, [=](int64_t begin, int64_t end) {
        if constexpr (std::is_same<A, float>::value) {
          // silu(g) = g·σ(g), rounded to T as eager's silu output is, times up.
          auto block = [&](int64_t i, int64_t m) {
            const f32x4 g = load4(gp + i, m);
            store4(op + i, round4(g * sigmoid4(g), T{}) * load4(up_p + i, m), m);
          };
          int64_t i = begin;
          for (; i + 4 <= end; i += 4) block(i, 4);
          if (i < end) block(i, end - i);
        } else {
          for (int64_t i = begin; i < end; ++i) {
            const A g = A(gp[i]);
            op[i] = T(g / (A(1) + std::exp(-g)) * A(up_p[i]));
          }
        }
      });
    });
    ctx->save_for_backward({gate, up});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& gate = saved[0];
    const at::Tensor& up = saved[1];
    const at::Tensor go = grads[0].contiguous();
    const bool need_gate = ctx->needs_input_grad(0), need_up = ctx->needs_input_grad(1);
    at::Tensor ggate = at::empty_like(gate), gup = at::empty_like(up);
    const int64_t n = gate.numel();
    dispatch(gate.scalar_type(), [&](auto t, auto a) {
      using T = decltype(t);
      using A = decltype(a);
      const T* gp = gate.data_ptr<T>();
      const T* up_p = up.data_ptr<T>();
      const T* gop = go.data_ptr<T>();
      T* ggp = ggate.data_ptr<T>();
      T* gup_p = gup.data_ptr<T>();
      // eager: silu(g) rounded to T; its grad g_s = o·up rounded to T, then silu_backward:
      // g_s · σ · (1 + g·(1 − σ)).
      at::parallel_for(0, n, 32768, [=](int64_t begin, int64_t end) {
        if constexpr (std::is_same<A, float>::value) {
          auto block = [&](int64_t i, int64_t m) {
            const f32x4 g = load4(gp + i, m), o = load4(gop + i, m), sig = sigmoid4(g);
            store4(gup_p + i, o * round4(g * sig, T{}), m);
            store4(ggp + i, round4(o * load4(up_p + i, m), T{}) * (sig * (1.0f + g * (1.0f - sig))), m);
          };
          int64_t i = begin;
          for (; i + 4 <= end; i += 4) block(i, 4);
          if (i < end) block(i, end - i);
        } else {
          for (int64_t i = begin; i < end; ++i) {
            const A g = A(gp[i]), o = A(gop[i]);
            const A sig = A(1) / (A(1) + std::exp(-g));
            gup_p[i] = T(o * g * sig);
            ggp[i] = T(o * A(up_p[i]) * sig * (A(1) + g * (A(1) - sig)));
          }
        }
      });
    });
    return {need_gate ? ggate : at::Tensor(), need_up ? gup : at::Tensor()};
  }
};

void check_same(const at::Tensor& a, const at::Tensor& b, const char* a_name, const char* b_name) {
  EDPO_ARG_CHECK(b.device() == a.device() && b.scalar_type() == a.scalar_type(), b_name, ": expected ", a_name, "'s ",
                 a.scalar_type(), " on ", a.device(), ", got ", b.scalar_type(), " on ", b.device());
}

void check_input(const at::Tensor& x, const char* name) {
  EDPO_ARG_CHECK(fused_layer_kernels(x), name, ": expected a CPU float32, bfloat16 or float64 tensor, got ",
                 x.scalar_type(), " on ", x.device());
}

}  // namespace

bool fused_layer_kernels(const at::Tensor& x) {
  if (!x.defined() || !x.device().is_cpu()) return false;
  const at::ScalarType t = x.scalar_type();
  return t == at::kFloat || t == at::kBFloat16 || t == at::kDouble;
}

bool model_uses_fused_layer_kernels(const at::Tensor& x) {
  return fused_layer_kernels(x) && x.scalar_type() != at::kBFloat16;
}

std::pair<at::Tensor, at::Tensor> fused_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w,
                                                 double eps, bool plus_one) {
  check_input(x, "input");
  EDPO_ARG_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1), "weight: expected [", x.size(-1), "], got ",
                 w.sizes());
  check_same(x, w, "input", "weight");
  if (!residual.defined()) return {RmsNorm::apply(x, w, eps, plus_one)[0], at::Tensor()};
  check_same(x, residual, "input", "residual");
  EDPO_ARG_CHECK(residual.sizes() == x.sizes(), "residual: expected ", x.sizes(), ", got ", residual.sizes());
  const variable_list out = AddRmsNorm::apply(x, residual, w, eps, plus_one);
  return {out[0], out[1]};
}

at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_input(x, "input");
  EDPO_ARG_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "input: expected [B, T, heads, even head_dim], got ", x.sizes());
  const std::vector<int64_t> table{x.size(0), x.size(1), x.size(3)};
  EDPO_ARG_CHECK(cos.sizes() == table, "cos: expected ", at::IntArrayRef(table), ", got ", cos.sizes());
  EDPO_ARG_CHECK(sin.sizes() == table, "sin: expected ", at::IntArrayRef(table), ", got ", sin.sizes());
  check_same(x, cos, "input", "cos");
  check_same(x, sin, "input", "sin");
  return Rope::apply(x, cos, sin);
}

at::Tensor fused_swiglu(const at::Tensor& gate, const at::Tensor& up) {
  check_input(gate, "gate");
  EDPO_ARG_CHECK(gate.sizes() == up.sizes(), "up: expected gate's shape ", gate.sizes(), ", got ", up.sizes());
  check_same(gate, up, "gate", "up");
  return Swiglu::apply(gate, up);
}

}  // namespace edpo::models
