// CausalLM: weights by HF name, RoPE tables, the embedding → layers → norm → lm_head forward.
#include "causal_lm.h"
#include "layer_kernels.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>
#include <unordered_map>

namespace edpo::models {
namespace {

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// inv_freq = 1 / θ^(arange(0, d, 2) / d), computed in fp32 like transformers, then rope_scaling.
at::Tensor inverse_frequencies(const ModelConfig& c, at::ScalarType acc, const at::Device& device) {
  const auto opts = at::TensorOptions().dtype(acc).device(device);
  at::Tensor exponent =
      at::arange(0, c.head_dim, 2, at::TensorOptions().dtype(at::kLong).device(device)).to(acc) / double(c.head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(at::scalar_tensor(c.rope_theta, opts), exponent);
  if (c.rope_type == "linear") return inv_freq / c.rope_factor;
  if (c.rope_type == "llama3") {
    // Long wavelengths are divided by `factor`, short ones kept, the band between interpolated.
    const double old_ctx = double(c.rope_original_max_positions);
    const double low_wavelen = old_ctx / c.rope_low_freq_factor, high_wavelen = old_ctx / c.rope_high_freq_factor;
    const at::Tensor wavelen = 2.0 * M_PI / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / c.rope_factor, inv_freq);
    const at::Tensor smooth =
        (old_ctx / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
    const at::Tensor smoothed = (1.0 - smooth) * scaled / c.rope_factor + smooth * scaled;
    const at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    return at::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

}  // namespace

CausalLM::CausalLM(ModelConfig config, std::vector<std::string> names, std::vector<at::Tensor> tensors)
    : config_(std::move(config)), names_(std::move(names)), tensors_(std::move(tensors)) {
  const ModelConfig& c = config_;
  TORCH_CHECK(names_.size() == tensors_.size(), "tensors: ", tensors_.size(), " tensors for ", names_.size(), " names");
  TORCH_CHECK(c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0 && c.head_dim % 2 == 0,
              "config: num_hidden_layers, num_attention_heads, num_key_value_heads must be > 0 and head_dim even");
  TORCH_CHECK(c.num_heads % c.num_kv_heads == 0, "config: num_attention_heads (", c.num_heads,
              ") must be a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  TORCH_CHECK(int64_t(c.layer_windows.size()) == c.num_layers, "config: layer_windows needs one entry per layer");
  std::unordered_map<std::string, at::Tensor> by_name;
  for (size_t i = 0; i < names_.size(); ++i) {
    TORCH_CHECK(tensors_[i].defined() && tensors_[i].is_floating_point(), "tensors: '", names_[i],
                "' must be a floating-point tensor");
    by_name[names_[i]] = tensors_[i];
  }
  auto take = [&](const std::string& name, bool required) {
    const auto it = by_name.find(name);
    TORCH_CHECK(it != by_name.end() || !required, "tensors: missing '", name, "'");
    if (it == by_name.end()) return at::Tensor();
    at::Tensor t = it->second;
    by_name.erase(it);
    return t;
  };
  embed_ = take("model.embed_tokens.weight", true);
  final_norm_ = take("model.norm.weight", true);
  lm_head_ = take("lm_head.weight", !c.tie_word_embeddings);
  if (!lm_head_.defined()) lm_head_ = embed_;
  TORCH_CHECK(embed_.dim() == 2 && embed_.size(0) == c.vocab_size && embed_.size(1) == c.hidden_size,
              "tensors: 'model.embed_tokens.weight' must be [", c.vocab_size, ", ", c.hidden_size, "], got ",
              embed_.sizes());
  layers_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    for (int s = 0; s < kNumSlots; ++s) {
      const bool bias = std::string(layer_slot_name(s)).find(".bias") != std::string::npos;
      const bool gemma_only = s == kPreFfNorm || s == kPostFfNorm;
      layers_[size_t(l)].w[s] = take(prefix + layer_slot_name(s), !bias && (!gemma_only || c.gemma_norm));
    }
  }
  TORCH_CHECK(by_name.empty(), "tensors: unexpected '", by_name.empty() ? "" : by_name.begin()->first, "'");
}

ForwardOutput CausalLM::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                const at::Tensor& position_ids, KvCache* cache, bool last_position_only,
                                bool with_logits, const std::vector<int64_t>& row_lengths, bool adapters) const {
  const ModelConfig& c = config_;
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong, "inputIds: expected int64 [B, T], got ",
              input_ids.scalar_type(), " ", input_ids.sizes());
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  TORCH_CHECK(T > 0, "inputIds: needs at least one token");
  const bool packed = !row_lengths.empty();
  TORCH_CHECK(!packed || (int64_t(row_lengths.size()) == B && !attention_mask.defined() && !position_ids.defined() &&
                          cache == nullptr && !last_position_only),
              "sequenceLengths: one length per row, without attentionMask, positionIds or a cache");
  // Sharded (ZeRO-3): the shards have the whole weights' device and dtype.
  const at::Tensor& any_weight = shards_ ? tensors_.at(0) : embed_;
  const at::Device device = any_weight.device();
  at::Tensor ids = input_ids.to(device);
  if (ids.numel() > 0 && input_ids.is_cpu()) {
    // Host ids: checked now, with the offending id in the message (no device read).
    const int64_t lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < c.vocab_size, "inputIds: token ids must lie in [0, ", c.vocab_size, "), found ",
                lo < 0 ? lo : hi);
  } else if (ids.numel() > 0) {
    // Device ids: an asynchronous device assertion instead of a read that would stall every forward.
    at::_assert_async(ids.ge(0).logical_and(ids.lt(c.vocab_size)).all());
  }
  const int64_t past = cache != nullptr ? cache->length() : 0, S = past + T;
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);

  ForwardContext ctx;
  ctx.query_positions = at::arange(past, S, long_opts);
  ctx.key_positions = at::arange(0, S, long_opts);
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                "attentionMask: expected [", B, ", ", S, "], got ", attention_mask.sizes());
    ctx.key_padding = attention_mask.to(device).eq(0);
  }
  at::Tensor positions =
      position_ids.defined() ? position_ids.to(device).to(at::kLong) : ctx.query_positions.unsqueeze(0).expand({B, T});
  TORCH_CHECK(positions.dim() == 2 && positions.size(0) == B && positions.size(1) == T, "positionIds: expected [", B,
              ", ", T, "], got ", positions.sizes());
  // Padding-free: the rows' tokens back to back in one row, positions restarting per sequence.
  at::Tensor pack_index;
  if (packed) {
    std::vector<int64_t> index, pos;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = row_lengths[size_t(b)];
      TORCH_CHECK(n >= 1 && n <= T, "sequenceLengths[", b, "]: ", n, " is not in [1, ", T, "]");
      for (int64_t t = 0; t < n; ++t) {
        index.push_back(b * T + t);
        pos.push_back(t);
      }
    }
    pack_index = at::tensor(index, at::kLong).to(device);
    ids = ids.reshape({-1}).index_select(0, pack_index).unsqueeze(0);
    positions = at::tensor(pos, at::kLong).to(device).unsqueeze(0);
    ctx.segment_lengths = row_lengths;
  }

  ctx.adapters = adapters && has_lora();
  bool needs_grad = false;
  for (const auto& t : tensors_) needs_grad = needs_grad || t.requires_grad();
  if (ctx.adapters)
    for (const LayerWeights& lw : layers_)
      for (int s : lora_.slots) needs_grad = needs_grad || lw.lora_a[s].requires_grad() || lw.lora_b[s].requires_grad();
  at::AutoGradMode grad_mode(needs_grad && cache == nullptr && at::GradMode::is_enabled());
  const bool checkpoint = gradient_checkpointing && training && at::GradMode::is_enabled();
  if (ctx.adapters) {
    ctx.lora_scale = lora_.scale();
    // Dropout only where PEFT applies it: a training forward (train mode, building a graph).
    if (lora_.dropout > 0.0 && training && at::GradMode::is_enabled()) {
      ctx.lora_dropout = lora_.dropout;
      ctx.dropout_seed = lora_.init_seed ^ (dropout_forwards_.fetch_add(1) * 0x9e3779b97f4a7c15ULL + 1);
    }
  }

  const at::ScalarType dtype = any_weight.scalar_type(), acc = acc_type(dtype);
  const at::Tensor freqs = positions.to(acc).unsqueeze(-1) * inverse_frequencies(c, acc, device);  // [B,T,hd/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  ctx.cos = emb.cos().to(dtype);
  ctx.sin = emb.sin().to(dtype);
  // One additive mask per distinct window, shared by the layers that use it.
  std::unordered_map<int64_t, at::Tensor> bias_by_window;
  if (!packed) {
    for (int64_t w : c.layer_windows) {
      auto it = bias_by_window.find(w);
      if (it == bias_by_window.end()) it = bias_by_window.emplace(w, attention_bias(c, ctx, w, dtype)).first;
      ctx.layer_bias.push_back(it->second);
    }
  } else {
    // One causal mask per distinct (window, length), shared by the sequences and layers that use it.
    std::map<std::pair<int64_t, int64_t>, at::Tensor> bias_by_shape;
    for (int64_t w : c.layer_windows) {
      std::vector<at::Tensor> per_sequence;
      for (int64_t n : row_lengths) {
        auto it = bias_by_shape.find({w, n});
        if (it == bias_by_shape.end()) {
          ForwardContext one;
          one.query_positions = one.key_positions = at::arange(n, long_opts);
          it = bias_by_shape.emplace(std::make_pair(w, n), attention_bias(c, one, w, dtype)).first;
        }
        per_sequence.push_back(it->second);
      }
      ctx.segment_bias.push_back(std::move(per_sequence));
    }
  }

  // ZeRO-3: each unit gathered just before its use and released after it.
  UnitSource* src = shards_.get();
  auto unit_tensor = [&](int64_t unit) { return src->acquire(unit, false).at(0).second; };
  at::Tensor x = at::embedding(src ? unit_tensor(0) : embed_, ids);
  if (src) x = src->release(0, x);
  // gemma: HF multiplies by √hidden cast to the activations' dtype.
  if (c.gemma_norm) x = x * at::scalar_tensor(std::sqrt(double(c.hidden_size)), x.options());
  std::shared_ptr<const CausalLM> self = checkpoint ? shared_from_this() : nullptr;
  // The last layer is not checkpointed: backward would recompute it at once, so keeping its
  // activations costs one layer's memory and saves one layer's forward.
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights w = src ? layer_weights(l, src->acquire(1 + l, false)) : layers_[size_t(l)];
    x = checkpoint && l + 1 < c.num_layers ? checkpointed_layer(self, l, x, w, ctx)
                                           : layer_forward(l, x, w, ctx, cache);
    if (src) x = src->release(1 + l, x);
  }
  if (last_position_only) x = x.narrow(1, T - 1, 1);
  // Final norm: same RMSNorm flavour as the layers.
  ForwardOutput out;
  const at::Tensor final_norm = src ? unit_tensor(c.num_layers + 1) : final_norm_;
  if (model_uses_fused_layer_kernels(x) && final_norm.scalar_type() == x.scalar_type()) {
    out.hidden = fused_rms_norm(x, at::Tensor(), final_norm, c.rms_norm_eps, c.gemma_norm).first;
  } else {
    const at::Tensor xf = x.to(acc);
    const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + c.rms_norm_eps);
    out.hidden = c.gemma_norm ? (normed * (final_norm.to(acc) + 1.0)).to(dtype) : final_norm * normed.to(dtype);
  }
  if (src) out.hidden = src->release(c.num_layers + 1, out.hidden);
  if (packed) {
    // Back to the padded layout the loss reads; padding positions hold zeros.
    const at::Tensor flat = out.hidden.squeeze(0);
    out.hidden = at::zeros({B * T, flat.size(1)}, flat.options()).index_copy(0, pack_index, flat).view({B, T, -1});
  }
  if (!with_logits) return out;
  out.logits = at::linear(out.hidden, lm_head());
  if (c.final_softcap > 0.0) out.logits = at::tanh(out.logits / c.final_softcap) * c.final_softcap;
  return out;
}

at::Tensor CausalLM::lm_head() const {
  if (!shards_) return lm_head_;
  // Tied: the embedding's unit.
  return shards_->borrow(config_.tie_word_embeddings ? 0 : config_.num_layers + 2, true).at(0).second;
}

CausalLM::CausalLM(ModelConfig config, std::shared_ptr<UnitSource> source) : config_(std::move(config)) {
  layers_.resize(size_t(config_.num_layers));
  shard(std::move(source));
}

void CausalLM::shard(std::shared_ptr<UnitSource> source) {
  TORCH_CHECK(source != nullptr && source->units() == config_.num_layers + (config_.tie_word_embeddings ? 2 : 3),
              "shard: the unit source does not match this model's layers");
  TORCH_CHECK(!has_lora(), "shard: ZeRO-3 shards full fine-tuning only, not a model with LoRA adapters");
  shards_ = std::move(source);
  names_ = shards_->shard_names();
  tensors_ = shards_->shard_tensors();
  // The whole tensors go: the shards are all this rank keeps.
  embed_ = final_norm_ = lm_head_ = at::Tensor();
  for (auto& lw : layers_) lw = LayerWeights();
}

LayerWeights CausalLM::layer_weights(int64_t layer,
                                     const std::vector<std::pair<std::string, at::Tensor>>& named) const {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  LayerWeights w;
  for (const auto& [name, t] : named)
    for (int s = 0; s < kNumSlots; ++s)
      if (name == prefix + layer_slot_name(s)) w.w[s] = t;
  return w;
}

void CausalLM::release() {
  names_.clear();
  tensors_.clear();
  embed_ = at::Tensor();
  final_norm_ = at::Tensor();
  lm_head_ = at::Tensor();
  layers_.clear();
  lora_ = LoraSpec{};
  shards_.reset();
  released_ = true;
}

std::shared_ptr<CausalLM> CausalLM::clone_frozen() const {
  at::NoGradGuard no_grad;
  if (shards_) {
    // The same units over copies of this rank's shards: a sharded reference.
    auto copy = std::shared_ptr<CausalLM>(new CausalLM(config_, shards_->frozen_copy()));
    copy->gradient_checkpointing = gradient_checkpointing;
    return copy;
  }
  std::vector<at::Tensor> copies;
  copies.reserve(tensors_.size());
  for (const auto& t : tensors_) copies.push_back(t.detach().clone());
  auto copy = std::make_shared<CausalLM>(config_, names_, std::move(copies));
  copy->training = false;
  copy->gradient_checkpointing = gradient_checkpointing;
  return copy;
}

}  // namespace edpo::models
