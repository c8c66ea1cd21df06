// The model entries: a CausalLM handle (an External owning a shared_ptr) built from a resolved
// config and named tensors; its forward pass and generation, parameters, modes, LoRA adapters and
// clones, each declared as an op (js_op_table.h).
#include <memory>

#include "js_common.h"
#include "js_op_table.h"
#include "models/causal_lm.h"
#include "models/generate.h"
#include "ops/arg_error.h"

namespace edpo_js {
namespace {

using edpo::models::CausalLM;
using K = ArgKind;
using R = ResultKind;

// modelForward's arguments beyond their kinds.
void check_forward_args(const OpArgs& a) {
  const at::Tensor positions = a.tensor("positionIds");
  // Float positions would be cast silently inside RoPE; they are always a caller bug.
  EDPO_ARG_CHECK(!positions.defined() || positions.scalar_type() == at::kLong || positions.scalar_type() == at::kInt,
                 "positionIds: expected an int64 or int32 tensor, got ", dtype_name(positions.scalar_type()));
  const std::vector<int64_t>& lengths = a.integer_list("sequenceLengths");
  const at::Tensor ids = a.tensor("inputIds");
  if (lengths.empty()) return;
  EDPO_ARG_CHECK(!a.tensor("attentionMask").defined() && !positions.defined(),
                 "sequenceLengths: padding-free rows take no attentionMask or positionIds");
  EDPO_ARG_CHECK(ids.dim() == 2 && int64_t(lengths.size()) == ids.size(0),
                 "sequenceLengths: expected one length per row of inputIds (", ids.dim() == 2 ? ids.size(0) : -1,
                 "), got ", lengths.size());
  for (size_t b = 0; b < lengths.size(); ++b)
    EDPO_ARG_CHECK(lengths[b] >= 1 && lengths[b] <= ids.size(1), "sequenceLengths[", b, "]: ", lengths[b],
                   " is not in [1, ", ids.size(1), "]");
}

const std::vector<ArgDecl> kConfigFields = {
    {"modelType", K::String, "The Hugging Face model_type (llama, qwen2, mistral, gemma2, ...)."},
    {"vocabSize", K::Integer, "Vocabulary size V."},
    {"hiddenSize", K::Integer, "Hidden size H."},
    {"intermediateSize", K::Integer, "The MLP's inner width."},
    {"numLayers", K::Integer, "Decoder layers."},
    {"numHeads", K::Integer, "Attention heads."},
    {"numKvHeads", K::Integer, "Key/value heads (grouped-query attention)."},
    {"headDim", K::Integer, "Width of one head."},
    {"rmsNormEps", K::Number, "RMSNorm's epsilon."},
    {"ropeTheta", K::Number, "RoPE base."},
    {"tieWordEmbeddings", K::Boolean, "The lm_head is the embedding."},
    {"geluTanh", K::Boolean, "gelu(tanh) MLP activation (gemma) instead of SiLU."},
    {"gemmaNorm", K::Boolean, "gemma's RMSNorm (scale by 1 + weight) and embedding scaling."},
    {"attnScale", K::Number, "Scale of the attention scores."},
    {"attnSoftcap", K::Number, "Attention logit soft-capping (0: none)."},
    {"finalSoftcap", K::Number, "Final logit soft-capping (0: none)."},
    {"layerWindows", K::Shape, "Per layer: sliding window (0 = full attention)."},
    {"ropeType", K::String, "'default', 'linear' or 'llama3'."},
    {"ropeFactor", K::Number, "RoPE scaling factor."},
    {"ropeLowFreqFactor", K::Number, "llama3 RoPE scaling: low-frequency factor."},
    {"ropeHighFreqFactor", K::Number, "llama3 RoPE scaling: high-frequency factor."},
    {"ropeOriginalMaxPositions", K::Integer, "llama3 RoPE scaling: the original context length."},
};

edpo::models::ModelConfig read_config(const OpArgs& o) {
  edpo::models::ModelConfig c;
  c.model_type = o.string("modelType");
  c.vocab_size = o.integer("vocabSize");
  c.hidden_size = o.integer("hiddenSize");
  c.intermediate_size = o.integer("intermediateSize");
  c.num_layers = o.integer("numLayers");
  c.num_heads = o.integer("numHeads");
  c.num_kv_heads = o.integer("numKvHeads");
  c.head_dim = o.integer("headDim");
  c.rms_norm_eps = o.number("rmsNormEps");
  c.rope_theta = o.number("ropeTheta");
  c.tie_word_embeddings = o.flag("tieWordEmbeddings");
  c.gelu_tanh = o.flag("geluTanh");
  c.gemma_norm = o.flag("gemmaNorm");
  c.attn_scale = o.number("attnScale");
  c.attn_softcap = o.number("attnSoftcap");
  c.final_softcap = o.number("finalSoftcap");
  c.layer_windows = o.integer_list("layerWindows");
  c.rope_type = o.string("ropeType");
  c.rope_factor = o.number("ropeFactor");
  c.rope_low_freq_factor = o.number("ropeLowFreqFactor");
  c.rope_high_freq_factor = o.number("ropeHighFreqFactor");
  c.rope_original_max_positions = o.integer("ropeOriginalMaxPositions");
  return c;
}

const std::vector<ArgDecl> kLoraFields = {
    {"r", K::Integer, "Adapter rank."},
    {"alpha", K::Number, "LoRA alpha (the scale is alpha / r, or alpha / sqrt(r) with useRslora)."},
    {"dropout", K::Number, "Dropout on the adapters' input while training."},
    {"useRslora", K::Boolean, "rsLoRA scaling."},
    {"slots", K::StringList, "Projection names as in the HF module path: 'self_attn.q_proj', 'mlp.down_proj', …"},
    {"initSeed", K::Integer, "Seeds the adapters' initialisation (and their dropout masks)."},
    {"dtype", K::DType, "The adapters' dtype: float32 or float64."},
};

edpo::models::LoraSpec read_lora(const OpArgs& o) {
  edpo::models::LoraSpec spec;
  spec.r = o.integer("r");
  spec.alpha = o.number("alpha");
  spec.dropout = o.number("dropout");
  spec.use_rslora = o.flag("useRslora");
  spec.init_seed = uint64_t(o.integer("initSeed"));
  spec.dtype = o.dtype("dtype");
  TORCH_CHECK(spec.dtype == at::kFloat || spec.dtype == at::kDouble, "lora dtype: expected float32 or float64, got ",
              dtype_name(spec.dtype));
  for (const std::string& slot : o.string_list("slots")) {
    const std::string name = slot + ".weight";
    int found = -1;
    for (int s = 0; s < edpo::models::kNumSlots; ++s)
      if (name == edpo::models::layer_slot_name(s)) found = s;
    TORCH_CHECK(found >= 0, "lora target modules: no projection '", name, "'");
    spec.slots.push_back(found);
  }
  return spec;
}

// The same doc for the state modelLoraDropoutState takes and returns (one TypeScript interface).
const ResultDecl kSeedResult{"seed", false, "The dropout masks' seed.", R::Number};
const ResultDecl kForwardsResult{"forwards", false, "Training forwards that drew masks so far.", R::Number};

OpResults named_tensors(const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors) {
  return {names, tensors};
}

}  // namespace

ModelPtr arg_model(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a model handle");
  ModelPtr m = *v.As<Napi::External<ModelPtr>>().Data();
  if (m->released()) throw Napi::Error::New(v.Env(), std::string(what) + ": the model was disposed");
  return m;
}

Napi::Value wrap_model(Napi::Env env, ModelPtr model) {
  return Napi::External<ModelPtr>::New(env, new ModelPtr(std::move(model)), [](Napi::Env, ModelPtr* p) { delete p; });
}

void declare_model_ops(std::vector<OpDecl>& ops) {
  const ArgDecl model{"model", K::Model, "The model's handle (createModel)."};
  const ArgDecl input_ids{"inputIds", K::Tensor, "[B,T] int64 token ids."};
  ops.push_back(
      {"modelForward",
       "A CausalLM's forward pass: logits and final hidden states (after the final norm).",
       {model,
        input_ids,
        {"attentionMask", K::OptionalTensor, "[B,T] 1 = token, 0 = padding."},
        {"positionIds", K::OptionalTensor, "[B,T] int64 or int32 positions; default 0..T-1."},
        {"logits", K::OptionalBoolean, "false: only the hidden states (no lm_head).", 1},
        {"grad", K::OptionalBoolean, "false: run without building an autograd graph.", 1},
        {"sequenceLengths", K::IntegerList,
         "Padding-free when not empty: the token count of each right-padded row; the rows run packed "
         "without padding (each attends only to itself, positions from 0). Excludes attentionMask and positionIds."},
        {"adapters", K::OptionalBoolean, "false: the base model with its LoRA adapters off (the reference).", 1}},
       {{"logits", true, "[B,T,V] logits; absent when `logits` is false."},
        {"hidden", false, "[B,T,H] final hidden states (zeros on padding when padding-free)."}},
       [](const OpArgs& a) -> OpResults {
         check_forward_args(a);
         const at::Tensor positions = a.tensor("positionIds");
         const std::vector<int64_t>& lengths = a.integer_list("sequenceLengths");
         const at::Tensor ids = a.tensor("inputIds");
         // Grad mode is per thread: set it where the forward runs.
         at::AutoGradMode grad_mode(a.flag("grad"));
         const edpo::models::ForwardOutput out = a.model("model")->forward(
             ids, a.tensor("attentionMask"), positions, nullptr, false, a.flag("logits"), lengths, a.flag("adapters"));
         return {out.logits, out.hidden};
       }});
  ops.push_back({"modelGenerate",
                 "Samples (or greedily decodes) up to maxNewTokens per row with a CausalLM.",
                 {model,
                  input_ids,
                  {"maxNewTokens", K::Integer, "Tokens to add per row, >= 0."},
                  {"temperature", K::Number, "0: greedy."},
                  {"topP", K::Number, "Nucleus sampling mass in (0, 1]."},
                  {"topK", K::Integer, "0: no top-k cut."},
                  {"seed", K::OptionalInteger, "Seeds a private generator (>= 0); absent: the global one.", 0, 0},
                  {"eosTokenIds", K::IntegerList, "A row stops at any of these tokens."},
                  {"attentionMask", K::OptionalTensor, "[B,T] with zeros on the left for left-padded prompts."},
                  {"adapters", K::OptionalBoolean, "false: the base model with its LoRA adapters off.", 1}},
                 {{"tokens", false, "[B, T + n] int64: the prompts and what was generated."}},
                 [](const OpArgs& a) -> OpResults {
                   edpo::models::GenerateOptions o;
                   o.max_new_tokens = int64_t(a.number("maxNewTokens"));
                   o.temperature = a.number("temperature");
                   o.top_p = a.number("topP");
                   o.top_k = int64_t(a.number("topK"));
                   if (a.has("seed")) {
                     o.has_seed = true;
                     o.seed = uint64_t(a.integer("seed"));
                   }
                   o.eos_token_ids = a.integer_list("eosTokenIds");
                   o.adapters = a.flag("adapters");
                   return {
                       edpo::models::generate(*a.model("model"), a.tensor("inputIds"), a.tensor("attentionMask"), o)};
                 }});
  const auto one_model = [&](const char* name, const char* doc, std::vector<ResultDecl> results, Returns returns,
                             std::function<OpResults(const OpArgs&)> run, std::vector<ArgDecl> more = {}) {
    std::vector<ArgDecl> args{model};
    args.insert(args.end(), more.begin(), more.end());
    ops.push_back(
        {name, doc, std::move(args), std::move(results), std::move(run), Call::Positional, Mode::Sync, returns});
  };
  const std::vector<ResultDecl> named = {
      {"names", false, "The tensors' names (Hugging Face module paths).", R::StringList},
      {"tensors", false, "The live tensors (not copies), in the names' order.", R::TensorList}};
  ops.push_back({"createModel",
                 "A CausalLM over the given tensors, which become its parameters as they are.",
                 {{"config", K::Object, "The resolved config (lib/model/config.ts builds it).", 0, NAN, kConfigFields,
                   "NativeModelConfig"},
                  {"names", K::StringList, "The parameters' names (Hugging Face layout)."},
                  {"tensors", K::TensorList, "The parameters, in the names' order."}},
                 {{"model", false, "The model's handle.", R::Model}},
                 [](const OpArgs& a) -> OpResults {
                   return {ModelPtr(std::make_shared<CausalLM>(read_config(a.object("config")), a.string_list("names"),
                                                               a.list("tensors")))};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  one_model("modelLmHead", "The lm_head the loss ops take.",
            {{"weight", false, "[V,H] (the embedding when tied).", R::Tensor},
             {"finalLogitSoftcap", false, "Final logit soft-capping (0: none).", R::Number}},
            Returns::Fields, [](const OpArgs& a) -> OpResults {
              const ModelPtr& m = a.model("model");
              return {m->lm_head(), m->config().final_softcap};
            });
  ops.back().outputs_name = "NativeLmHead";
  one_model("modelParameters", "The model's parameters.", named, Returns::Fields, [](const OpArgs& a) {
    const ModelPtr& m = a.model("model");
    return named_tensors(m->names(), m->tensors());
  });
  ops.back().outputs_name = "NativeNamedTensors";
  one_model("modelRelease",
            "Drops every tensor the model holds (weights, adapters, shards) now; any later use of it is an error.", {},
            Returns::Value, [](const OpArgs& a) -> OpResults {
              a.model("model")->release();
              return {};
            });
  one_model("modelSetTraining", "Training mode (LoRA dropout on) or eval mode.", {}, Returns::Value,
            [](const OpArgs& a) -> OpResults {
              a.model("model")->training = a.flag("training");
              return {};
            },
            {{"training", K::Boolean, "true: training mode."}});
  one_model("modelSetGradientCheckpointing",
            "Recompute each decoder layer in the backward pass instead of keeping its activations.", {}, Returns::Value,
            [](const OpArgs& a) -> OpResults {
              a.model("model")->gradient_checkpointing = a.flag("enabled");
              return {};
            },
            {{"enabled", K::Boolean, "true: checkpoint every layer."}});
  one_model("modelClone", "A deep copy with requires_grad off, in eval mode.",
            {{"model", false, "The copy's handle.", R::Model}}, Returns::Value,
            [](const OpArgs& a) -> OpResults { return {a.model("model")->clone_frozen()}; });
  one_model("modelShareBase", "A second model over the same base tensors (no copy), without adapters.",
            {{"model", false, "The new model's handle.", R::Model}}, Returns::Value,
            [](const OpArgs& a) -> OpResults { return {a.model("model")->share_base()}; });
  one_model("modelAddLora", "Adds LoRA adapters on the given projections of every layer.", {}, Returns::Value,
            [](const OpArgs& a) -> OpResults {
              a.model("model")->add_lora(read_lora(a.object("lora")));
              return {};
            },
            {{"lora", K::Object, "The adapters (lib/model/lora.ts resolves and checks them first).", 0, NAN,
              kLoraFields, "NativeLoraSpec"}});
  one_model("modelLoraParameters", "The live adapter tensors, in PEFT's order and names.", named, Returns::Fields,
            [](const OpArgs& a) {
              std::vector<std::string> names;
              std::vector<at::Tensor> tensors;
              a.model("model")->lora_parameters(names, tensors);
              return named_tensors(names, tensors);
            });
  ops.back().outputs_name = "NativeNamedTensors";
  one_model("modelMergeLora", "Folds the adapters into the base weights.", {}, Returns::Value,
            [](const OpArgs& a) -> OpResults {
              a.model("model")->merge_lora();
              return {};
            });
  one_model("modelLoraDropoutState",
            "The LoRA dropout masks' seed and the training forwards that drew masks so far; sets both first when given "
            "(an exact resume).",
            {kSeedResult, kForwardsResult}, Returns::Fields,
            [](const OpArgs& a) -> OpResults {
              const ModelPtr& m = a.model("model");
              if (a.has("state")) {
                const OpArgs& s = a.object("state");
                m->set_lora_dropout_state(uint64_t(s.integer("seed")), uint64_t(s.integer("forwards")));
              }
              return {double(m->lora().init_seed), double(m->lora_dropout_forwards())};
            },
            {{"state",
              K::OptionalObject,
              "The state to set.",
              0,
              NAN,
              {{"seed", K::Integer, kSeedResult.doc, 0, 0}, {"forwards", K::Integer, kForwardsResult.doc, 0, 0}},
              "LoraDropoutState"}});
  ops.back().outputs_name = "LoraDropoutState";
}

}  // namespace edpo_js
