// The decoder layer's fused CPU kernels (models/layer_kernels.h), declared as ops (see
// js_op_table.h) for tests and benches.
#include "js_op_table.h"

#include "models/layer_kernels.h"

namespace edpo_js {

void declare_kernel_ops(std::vector<OpDecl>& ops) {
  using K = ArgKind;
  ops.push_back(
      {"fusedRmsNorm",
       "HF RMSNorm of input (+ residual) on the CPU in one pass, with a hand-written backward.",
       {{"input", K::Tensor, "[..., H] CPU float32, bfloat16 or float64."},
        {"residual", K::OptionalTensor, "Added to input first (same shape and dtype); `sum` returns the sum."},
        {"weight", K::Tensor, "[H], input's dtype."},
        {"eps", K::Number, "Added to the mean square, >= 0.", 0, 0},
        {"plusOne", K::OptionalBoolean, "gemma's flavour: scale by (1 + weight) in fp32, then cast."}},
       {{"output", false, "The normalized, scaled input."}, {"sum", true, "input + residual, when residual is given."}},
       [](const OpArgs& a) -> OpResults {
         auto out = edpo::models::fused_rms_norm(a.tensor("input"), a.tensor("residual"), a.tensor("weight"),
                                                 a.number("eps"), a.flag("plusOne"));
         return {out.first, out.second};
       }});
  ops.push_back({"fusedRope",
                 "Rotate-half rotary embedding x·cos + rotate_half(x)·sin on the CPU, with a hand-written backward.",
                 {{"input", K::Tensor, "[B, T, heads, head_dim] CPU float32, bfloat16 or float64; head_dim even."},
                  {"cos", K::Tensor, "[B, T, head_dim], input's dtype (receives no gradient)."},
                  {"sin", K::Tensor, "[B, T, head_dim], input's dtype (receives no gradient)."}},
                 {{"output", false, "[B, T, heads, head_dim]."}},
                 [](const OpArgs& a) -> OpResults {
                   return {edpo::models::fused_rope(a.tensor("input"), a.tensor("cos"), a.tensor("sin"))};
                 }});
  ops.push_back(
      {"fusedSwiglu",
       "silu(gate) · up on the CPU in one pass, with a hand-written backward.",
       {{"gate", K::Tensor, "CPU float32, bfloat16 or float64."}, {"up", K::Tensor, "gate's shape and dtype."}},
       {{"output", false, "silu(gate) · up."}},
       [](const OpArgs& a) -> OpResults { return {edpo::models::fused_swiglu(a.tensor("gate"), a.tensor("up"))}; }});
}

}  // namespace edpo_js
