// Gradient checkpointing per decoder layer: the forward keeps only the layer input (plus
// references to the weights); backward recomputes the layer with grad on and differentiates it.
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "causal_lm.h"

namespace edpo::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Slot s of 3·kNumSlots: the weights, then the LoRA A and B tensors.
at::Tensor& tensor_slot(LayerWeights& w, int s) {
  return s < kNumSlots ? w.w[s] : s < 2 * kNumSlots ? w.lora_a[s - kNumSlots] : w.lora_b[s - 2 * kNumSlots];
}

// What the recompute needs besides tensors that autograd tracks.
struct LayerState : torch::CustomClassHolder {
  std::shared_ptr<const CausalLM> model;
  int64_t layer = 0;
  // Index into the params list of each weight, LoRA A and LoRA B slot; -1 when the slot is absent.
  int slot_of_param[3 * kNumSlots];
  ForwardContext ctx;

  LayerWeights unpack(at::TensorList params) const {
    LayerWeights w;
    for (int s = 0; s < 3 * kNumSlots; ++s)
      if (slot_of_param[s] >= 0) tensor_slot(w, s) = params[size_t(slot_of_param[s])];
    return w;
  }
};

class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            c10::intrusive_ptr<LayerState> state) {
    variable_list saved{x};
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    // Function::apply runs this with grad mode off: no activations are kept.
    return state->model->layer_forward(state->layer, x, state->unpack(params), state->ctx, nullptr);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const auto state = c10::static_intrusive_pointer_cast<LayerState>(ctx->saved_data["state"].toCapsule());
    at::AutoGradMode grad_on(true);
    const at::Tensor x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    std::vector<at::Tensor> params;
    variable_list wrt;
    if (x.requires_grad()) wrt.push_back(x);
    for (size_t i = 1; i < saved.size(); ++i) {
      params.push_back(saved[i].detach().requires_grad_(saved[i].requires_grad()));
      if (params.back().requires_grad()) wrt.push_back(params.back());
    }
    const at::Tensor out = state->model->layer_forward(state->layer, x, state->unpack(params), state->ctx, nullptr);
    variable_list grads;
    if (!wrt.empty()) grads = torch::autograd::grad({out}, wrt, {grad_out[0]}, false, false, /*allow_unused=*/true);
    // One gradient per forward argument: x, each param, then the (non-tensor) state.
    variable_list result;
    size_t next = 0;
    result.push_back(x.requires_grad() ? grads[next++] : at::Tensor());
    for (const auto& p : params) result.push_back(p.requires_grad() ? grads[next++] : at::Tensor());
    result.emplace_back();
    return result;
  }
};

}  // namespace

at::Tensor checkpointed_layer(std::shared_ptr<const CausalLM> model, int64_t layer, const at::Tensor& x,
                              const LayerWeights& w, const ForwardContext& ctx) {
  auto state = c10::make_intrusive<LayerState>();
  state->model = std::move(model);
  state->layer = layer;
  state->ctx = ctx;
  std::vector<at::Tensor> params;
  LayerWeights all = w;
  for (int s = 0; s < 3 * kNumSlots; ++s) {
    const at::Tensor& t = tensor_slot(all, s);
    state->slot_of_param[s] = t.defined() ? int(params.size()) : -1;
    if (t.defined()) params.push_back(t);
  }
  return CheckpointedLayer::apply(x, at::TensorList(params), state);
}

}  // namespace edpo::models
