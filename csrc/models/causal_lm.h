// A Hugging Face-style decoder-only causal LM (llama, mistral, qwen2, gemma2) in plain ATen ops.
// TypeScript parses config.json and checks the checkpoint; this side holds the weights under
// their HF names and runs forward/generate with HF numerics. No N-API here.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "../dist/reducer_stats.h"

namespace edpo::models {

// config.json resolved to what the forward needs (defaults already applied by lib/model/config.ts).
struct ModelConfig {
  std::string model_type;  // llama | mistral | qwen2 | gemma2
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool gelu_tanh = false;              // hidden_act gelu_pytorch_tanh (gemma2) instead of silu
  bool gemma_norm = false;             // RMSNorm scales by (1 + w), embeddings by √hidden, 4 norms per layer
  double attn_scale = 0.0;             // q·k scale: head_dim^-0.5, or query_pre_attn_scalar^-0.5
  double attn_softcap = 0.0;           // 0 = off: tanh(x/c)·c on attention logits
  double final_softcap = 0.0;          // 0 = off: same on the output logits
  std::vector<int64_t> layer_windows;  // per layer: sliding window (keys with i - j < w), 0 = full
  // rope_scaling: "default", "linear" or "llama3".
  std::string rope_type = "default";
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
};

// Slots of one decoder layer's tensors; absent optional ones (biases, gemma norms) stay undefined.
enum LayerSlot : int {
  kInputNorm,
  kPostAttnNorm,
  kPreFfNorm,
  kPostFfNorm,
  kQ,
  kQBias,
  kK,
  kKBias,
  kV,
  kVBias,
  kO,
  kOBias,
  kGate,
  kGateBias,
  kUp,
  kUpBias,
  kDown,
  kDownBias,
  kNumSlots
};
const char* layer_slot_name(int slot);  // "input_layernorm.weight", "self_attn.q_proj.bias", ...

// A weight slot's LoRA adapter: y += scale·B(A(dropout(x))), A [r, in], B [out, r] (PEFT layout).
// Defined only on adapted projection slots (kQ, kK, kV, kO, kGate, kUp, kDown).
struct LayerWeights {
  at::Tensor w[kNumSlots];
  at::Tensor lora_a[kNumSlots], lora_b[kNumSlots];
};

// LoRA settings of a model (lib/model/lora.ts validates them and writes them to adapter_config.json).
struct LoraSpec {
  int64_t r = 0;
  double alpha = 0.0;
  double dropout = 0.0;
  bool use_rslora = false;
  std::vector<int> slots;  // adapted weight slots (kQ, ..., kDown)
  uint64_t init_seed = 0;  // A's kaiming-uniform draw (CPU generator, so every device gets the same A) and dropout
  at::ScalarType dtype = at::kFloat;
  // α/r, or α/√r with rsLoRA.
  double scale() const;
};

// Tensors that are the same for every layer of one forward call.
struct ForwardContext {
  at::Tensor cos, sin;                 // [B, T, head_dim], in the activations' dtype
  at::Tensor key_positions;            // [S] absolute cache index of every key, int64
  at::Tensor query_positions;          // [T] absolute cache index of every query, int64
  at::Tensor key_padding;              // [B, S] bool, true = masked key; undefined = none
  std::vector<at::Tensor> layer_bias;  // per layer: additive attention mask [B|1, 1, T, S]
  // Padding-free: the batch is one packed row of these sequences back to back (B = 1); each
  // attends only to itself, through segment_bias[layer][sequence] ([1, 1, n, n]). Empty: rows.
  std::vector<int64_t> segment_lengths;
  std::vector<std::vector<at::Tensor>> segment_bias;
  bool adapters = false;  // add the LoRA terms (false: the base model, e.g. the reference)
  double lora_scale = 0.0;
  double lora_dropout = 0.0;  // > 0 only in a training forward that builds a graph
  uint64_t dropout_seed = 0;  // per forward: the recompute of a checkpointed layer draws the same masks
};

// The additive mask of one sliding window (0 = none): 0 where a query may read a key, a large
// negative where it may not (future keys, outside the window, padding). `dtype` is the dtype the
// scores are masked in.
at::Tensor attention_bias(const ModelConfig& c, const ForwardContext& ctx, int64_t window, at::ScalarType dtype);

// Per-layer KV cache for generation ([B, kv_heads, S, head_dim] each).
struct KvCache {
  std::vector<at::Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

// ZeRO-3 (csrc/dist/layer_shards.h): a sharded model's weights, one gather unit at a time. Units:
// 0 the embedding, 1 + l decoder layer l, L + 1 the final norm, L + 2 the untied head.
class UnitSource {
 public:
  virtual ~UnitSource() = default;
  virtual int64_t units() const = 0;
  // The unit's tensors under their HF names, gathered; differentiable back to this rank's shard
  // when grad mode is on (the shard's gradient then arrives reduce-scattered). `head`: the output
  // projection's use (lm_head(), after the forward), not a forward's.
  virtual std::vector<std::pair<std::string, at::Tensor>> acquire(int64_t unit, bool head) = 0;
  // After the unit's forward: frees its gathered weights. With grad, returns `out` through an
  // identity whose backward gathers them again first (for the backward or the recompute).
  virtual at::Tensor release(int64_t unit, const at::Tensor& out) = 0;
  // acquire() for a use that never releases them (the lm_head, which the loss reads; a checkpoint's
  // gather): the tensors own the gathered buffer, which goes with them (with grad: at the latest
  // in the unit's backward).
  virtual std::vector<std::pair<std::string, at::Tensor>> borrow(int64_t unit, bool head) = 0;
  // This rank's shards, one flat tensor per unit, and their names ("zero3.<unit>").
  virtual std::vector<std::string> shard_names() const = 0;
  virtual std::vector<at::Tensor> shard_tensors() const = 0;
  // After a step's backward passes: waits for the gradients' reduce-scatters and leaves each
  // shard its gradient (averaged over ranks); what the step's reduce-scatters did.
  virtual dist::ReducerStats finish() = 0;
  // The same layout over copies of the shards with requires_grad off (the frozen reference).
  virtual std::shared_ptr<UnitSource> frozen_copy() const = 0;
};

struct ForwardOutput {
  at::Tensor logits;  // [B, T, V]
  at::Tensor hidden;  // [B, T, H], after the final norm
};

class CausalLM : public std::enable_shared_from_this<CausalLM> {
 public:
  // names/tensors: every parameter under its HF name. A tied lm_head reuses the embedding.
  CausalLM(ModelConfig config, std::vector<std::string> names, std::vector<at::Tensor> tensors);

  const ModelConfig& config() const { return config_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& tensors() const { return tensors_; }

  bool training = false;
  bool gradient_checkpointing = false;

  // input_ids [B,T] int64; attention_mask [B,S] (S = past + T, 1 = token, 0 = padding) or undefined;
  // position_ids [B,T] or undefined (= past .. past+T-1). Builds a graph when a parameter requires grad.
  // with_logits false: only the hidden states (the trainer's chunked loss applies lm_head itself).
  // row_lengths (padding-free): right-padded rows of these token counts are packed into one row
  // without padding, each attending only to itself with positions from 0, and the outputs are
  // returned in the padded [B, T] layout (zeros on padding). Needs no attention_mask, position_ids,
  // cache or last_position_only.
  ForwardOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                        KvCache* cache = nullptr, bool last_position_only = false, bool with_logits = true,
                        const std::vector<int64_t>& row_lengths = {}, bool adapters = true) const;

  // The output projection [V, H] (the embedding when tied); no architecture here has a bias.
  // Sharded (ZeRO-3): gathered on every call, a collective every rank must make.
  at::Tensor lm_head() const;

  // ZeRO-3: the parameters become `source`'s shards; every forward gathers a unit at a time.
  void shard(std::shared_ptr<UnitSource> source);
  const std::shared_ptr<UnitSource>& shards() const { return shards_; }

  // A deep copy with requires_grad off and eval mode (the frozen reference). Adapters are not copied.
  std::shared_ptr<CausalLM> clone_frozen() const;
  // A second model over the same base tensors (no copy) and without adapters, in eval mode.
  std::shared_ptr<CausalLM> share_base() const;

  // LoRA (lora.cc). add_lora creates A (kaiming-uniform) and B (zeros) on every layer's spec.slots.
  void add_lora(const LoraSpec& spec);
  // Drops every tensor the model holds (weights, adapters, shards), so that a disposed model's
  // memory goes now rather than when the last handle is collected; any later use is an error.
  void release();
  bool released() const { return released_; }

  bool has_lora() const { return lora_.r > 0; }
  const LoraSpec& lora() const { return lora_; }
  // Adapter tensors in PEFT order and naming: "model.layers.<l>.<module>.lora_A.weight" / "lora_B".
  void lora_parameters(std::vector<std::string>& names, std::vector<at::Tensor>& tensors) const;
  // W ← W + scale·B·A in W's dtype, then drops the adapters.
  void merge_lora();
  // Dropout forwards drawn so far and their seed (restored on resume so the masks continue).
  uint64_t lora_dropout_forwards() const { return dropout_forwards_.load(); }
  void set_lora_dropout_state(uint64_t seed, uint64_t forwards) {
    lora_.init_seed = seed;
    dropout_forwards_.store(forwards);
  }

  // One decoder layer (used directly and by the gradient-checkpoint Function).
  at::Tensor layer_forward(int64_t layer, const at::Tensor& x, const LayerWeights& w, const ForwardContext& ctx,
                           KvCache* cache) const;

 private:
  // A sharded model over `source` (clone_frozen of a sharded model).
  CausalLM(ModelConfig config, std::shared_ptr<UnitSource> source);
  ModelConfig config_;
  std::vector<std::string> names_;
  std::vector<at::Tensor> tensors_;
  at::Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  LoraSpec lora_;
  mutable std::atomic<uint64_t> dropout_forwards_{0};
  std::shared_ptr<UnitSource> shards_;
  bool released_ = false;
  // A unit's gathered tensors in LayerWeights slots (sharded models).
  LayerWeights layer_weights(int64_t layer, const std::vector<std::pair<std::string, at::Tensor>>& named) const;
};

// The LoRA term of slot `slot` in `layer` for input x (zeros-free: callers add it to the base output).
at::Tensor lora_delta(const at::Tensor& x, const LayerWeights& w, int slot, int64_t layer, const ForwardContext& ctx);

// Gradient checkpointing: runs `layer` saving only its input; backward recomputes it (checkpoint.cc).
at::Tensor checkpointed_layer(std::shared_ptr<const CausalLM> model, int64_t layer, const at::Tensor& x,
                              const LayerWeights& w, const ForwardContext& ctx);

}  // namespace edpo::models
