// Generation: one prefill over the (left-padded) prompts, then one cached step per token.
#include "generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <limits>

#include "../ops/host_sync.h"

namespace edpo::models {
namespace {

// Next tokens [B] from last-position logits [B, V]. Sampling runs on the CPU so a seed gives
// the same tokens on every device.
at::Tensor pick(const at::Tensor& logits, const GenerateOptions& o, at::Generator& gen) {
  if (o.temperature <= 0.0) return logits.argmax(-1);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor l = logits.to(at::kCPU).to(at::kFloat) / o.temperature;
  const int64_t V = l.size(-1);
  if (o.top_k > 0 && o.top_k < V) {
    const at::Tensor kth = std::get<0>(l.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
    l = l.masked_fill(l < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    // Keep the most likely tokens until their mass reaches top_p (HF TopPLogitsWarper).
    const auto sorted = l.sort(-1, /*descending=*/true);
    const at::Tensor values = std::get<0>(sorted), order = std::get<1>(sorted);
    const at::Tensor probs = values.softmax(-1);
    at::Tensor drop = (probs.cumsum(-1) - probs) >= o.top_p;
    drop.narrow(-1, 0, 1).fill_(false);
    l = at::full_like(l, neg_inf).scatter(-1, order, values.masked_fill(drop, neg_inf));
  }
  return at::multinomial(l.softmax(-1), 1, false, gen).squeeze(-1).to(logits.device());
}

}  // namespace

at::Tensor generate(const CausalLM& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                    const GenerateOptions& o) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong, "inputIds: expected int64 [B, T], got ",
              input_ids.scalar_type(), " ", input_ids.sizes());
  TORCH_CHECK(o.max_new_tokens >= 0, "maxNewTokens: must be >= 0");
  TORCH_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "topP: must lie in (0, 1], got ", o.top_p);
  TORCH_CHECK(o.top_k >= 0, "topK: must be >= 0");
  const at::Device device = model.tensors().front().device();
  const int64_t B = input_ids.size(0), T = input_ids.size(1), L = model.config().num_layers;
  at::Tensor ids = input_ids.to(device);
  at::Tensor mask =
      attention_mask.defined() ? attention_mask.to(device).to(at::kLong) : at::ones({B, T}, ids.options());
  TORCH_CHECK(mask.sizes() == ids.sizes(), "attentionMask: expected [", B, ", ", T, "], got ", mask.sizes());
  if (o.max_new_tokens == 0) return ids;

  at::Generator gen = o.has_seed ? at::detail::createCPUGenerator(o.seed) : at::detail::getDefaultCPUGenerator();
  // HF: positions count real tokens only, so left padding does not shift them.
  at::Tensor positions = (mask.cumsum(-1) - 1).masked_fill(mask.eq(0), 1);
  KvCache cache;
  cache.k.resize(size_t(L));
  cache.v.resize(size_t(L));
  at::Tensor logits = model.forward(ids, mask, positions, &cache, true, true, {}, o.adapters).logits.select(1, 0);

  at::Tensor finished = at::zeros({B}, ids.options().dtype(at::kBool));
  std::vector<at::Tensor> out{ids};
  at::Tensor next_pos = positions.narrow(1, T - 1, 1) + 1;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    at::Tensor next = pick(logits, o, gen);
    if (!o.eos_token_ids.empty()) {
      const at::Tensor eos0 = at::full_like(next, o.eos_token_ids[0]);
      next = at::where(finished, eos0, next);
      for (int64_t e : o.eos_token_ids) finished = finished.logical_or(next.eq(e));
    }
    out.push_back(next.unsqueeze(1));
    if (step + 1 == o.max_new_tokens || edpo::read_scalar<bool>(finished.all())) break;
    mask = at::cat({mask, at::ones({B, 1}, mask.options())}, 1);
    logits = model.forward(next.unsqueeze(1), mask, next_pos, &cache, true, true, {}, o.adapters).logits.select(1, 0);
    next_pos = next_pos + 1;
  }
  return at::cat(out, 1);
}

}  // namespace edpo::models
