// LoRA adapters on a CausalLM's projections (PEFT's LoraLayer numerics): y = W x + s·B(A(dropout(x)))
// with s = α/r (α/√r with rsLoRA), A kaiming-uniform and B = 0 at creation, the adapter term computed
// in the adapters' dtype (fp32 over a bf16 base) and cast back. Merge folds s·B·A into W.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "causal_lm.h"

namespace edpo::models {
namespace {

// splitmix64: well-spread generator seeds from (run seed, forward, layer, slot).
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A private generator of x's device type seeded with `seed` (the device's default, cloned, so no
// global state moves and a recompute draws the same numbers).
at::Generator seeded_generator(const at::Device& device, uint64_t seed) {
  const at::Generator& global = at::globalContext().defaultGenerator(device);
  at::Generator gen;
  {
    std::lock_guard<std::mutex> lock(const_cast<at::Generator&>(global).mutex());
    gen = global.clone();
  }
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return gen;
}

bool adaptable(int slot) {
  return slot == kQ || slot == kK || slot == kV || slot == kO || slot == kGate || slot == kUp || slot == kDown;
}

}  // namespace

double LoraSpec::scale() const { return use_rslora ? alpha / std::sqrt(double(r)) : alpha / double(r); }

at::Tensor lora_delta(const at::Tensor& x, const LayerWeights& w, int slot, int64_t layer, const ForwardContext& ctx) {
  const at::Tensor& a = w.lora_a[slot];
  const at::Tensor& b = w.lora_b[slot];
  at::Tensor in = x.to(a.scalar_type());
  if (ctx.lora_dropout > 0.0) {
    const double keep = 1.0 - ctx.lora_dropout;
    at::Generator gen =
        seeded_generator(in.device(), mix(ctx.dropout_seed ^ mix(uint64_t(layer) * 64 + uint64_t(slot))));
    const at::Tensor mask = at::empty_like(in).bernoulli_(keep, gen);
    in = in * mask / keep;
  }
  return (at::linear(at::linear(in, a), b) * ctx.lora_scale).to(x.scalar_type());
}

void CausalLM::add_lora(const LoraSpec& spec) {
  TORCH_CHECK(!has_lora(), "addLora: the model already has adapters");
  TORCH_CHECK(spec.r > 0, "lora r: must be > 0, got ", spec.r);
  TORCH_CHECK(std::isfinite(spec.alpha), "lora alpha: must be finite, got ", spec.alpha);
  TORCH_CHECK(spec.dropout >= 0.0 && spec.dropout < 1.0, "lora dropout: must lie in [0, 1), got ", spec.dropout);
  TORCH_CHECK(!spec.slots.empty(), "lora target modules: none given");
  TORCH_CHECK(!shards_, "lora: a ZeRO-3 sharded model takes no adapters (--zero-stage 3 with --lora-r)");
  for (int s : spec.slots)
    TORCH_CHECK(s >= 0 && s < kNumSlots && adaptable(s), "lora target modules: slot ", s, " is not a projection");
  at::NoGradGuard no_grad;
  // Only the adapters train: the base is frozen (it is also the reference).
  for (const at::Tensor& t : tensors_) t.requires_grad_(false);
  at::Generator gen = at::detail::createCPUGenerator(spec.init_seed);
  for (size_t l = 0; l < layers_.size(); ++l) {
    LayerWeights& lw = layers_[l];
    for (int s : spec.slots) {
      const at::Tensor& w = lw.w[s];
      const int64_t out = w.size(0), in = w.size(1);
      // kaiming_uniform_(a=√5) as nn.Linear and PEFT: bound = 1/√fan_in.
      const double bound = 1.0 / std::sqrt(double(in));
      at::Tensor a = at::empty({spec.r, in}, at::TensorOptions().dtype(at::kDouble)).uniform_(-bound, bound, gen);
      lw.lora_a[s] = a.to(w.device(), spec.dtype).requires_grad_(true);
      lw.lora_b[s] = at::zeros({out, spec.r}, w.options().dtype(spec.dtype)).requires_grad_(true);
    }
  }
  lora_ = spec;
}

void CausalLM::lora_parameters(std::vector<std::string>& names, std::vector<at::Tensor>& tensors) const {
  if (!has_lora()) return;
  for (size_t l = 0; l < layers_.size(); ++l)
    for (int s : lora_.slots) {
      std::string module = layer_slot_name(s);
      module =
          "model.layers." + std::to_string(l) + "." + module.substr(0, module.size() - std::string(".weight").size());
      names.push_back(module + ".lora_A.weight");
      tensors.push_back(layers_[l].lora_a[s]);
      names.push_back(module + ".lora_B.weight");
      tensors.push_back(layers_[l].lora_b[s]);
    }
}

void CausalLM::merge_lora() {
  TORCH_CHECK(has_lora(), "mergeLora: the model has no adapters");
  at::NoGradGuard no_grad;
  const double scale = lora_.scale();
  for (LayerWeights& lw : layers_)
    for (int s : lora_.slots) {
      at::Tensor& w = lw.w[s];
      const at::ScalarType acc = w.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      const at::Tensor delta = at::matmul(lw.lora_b[s].to(acc), lw.lora_a[s].to(acc)) * scale;
      w.copy_((w.to(acc) + delta).to(w.scalar_type()));
      lw.lora_a[s] = at::Tensor();
      lw.lora_b[s] = at::Tensor();
    }
  lora_ = LoraSpec();
}

std::shared_ptr<CausalLM> CausalLM::share_base() const {
  auto view = std::make_shared<CausalLM>(config_, names_, tensors_);
  view->training = false;
  view->gradient_checkpointing = gradient_checkpointing;
  return view;
}

}  // namespace edpo::models
