// model* entry points: a CausalLM handle (an External owning a shared_ptr) built from a resolved
// config and named tensors; forward (sync + async), generate (async), parameters, modes, clone.
#include <memory>

#include "js_common.h"
#include "models/causal_lm.h"
#include "models/generate.h"

namespace edpo_js {
namespace {

using edpo::models::CausalLM;
using ModelPtr = std::shared_ptr<CausalLM>;

double field(const Napi::Object& o, const char* name) { return arg_number(o.Get(name), name); }
int64_t int_field(const Napi::Object& o, const char* name) {
  const double d = field(o, name);
  TORCH_CHECK(d == double(int64_t(d)), name, ": expected an integer, got ", d);
  return int64_t(d);
}
bool bool_field(const Napi::Object& o, const char* name) {
  const Napi::Value v = o.Get(name);
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string(name) + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

edpo::models::ModelConfig read_config(const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "config: expected an object");
  const auto o = v.As<Napi::Object>();
  edpo::models::ModelConfig c;
  c.model_type = arg_string(o.Get("modelType"), "modelType");
  c.vocab_size = int_field(o, "vocabSize");
  c.hidden_size = int_field(o, "hiddenSize");
  c.intermediate_size = int_field(o, "intermediateSize");
  c.num_layers = int_field(o, "numLayers");
  c.num_heads = int_field(o, "numHeads");
  c.num_kv_heads = int_field(o, "numKvHeads");
  c.head_dim = int_field(o, "headDim");
  c.rms_norm_eps = field(o, "rmsNormEps");
  c.rope_theta = field(o, "ropeTheta");
  c.tie_word_embeddings = bool_field(o, "tieWordEmbeddings");
  c.gelu_tanh = bool_field(o, "geluTanh");
  c.gemma_norm = bool_field(o, "gemmaNorm");
  c.attn_scale = field(o, "attnScale");
  c.attn_softcap = field(o, "attnSoftcap");
  c.final_softcap = field(o, "finalSoftcap");
  c.layer_windows = arg_shape(o.Get("layerWindows"), "layerWindows");
  c.rope_type = arg_string(o.Get("ropeType"), "ropeType");
  c.rope_factor = field(o, "ropeFactor");
  c.rope_low_freq_factor = field(o, "ropeLowFreqFactor");
  c.rope_high_freq_factor = field(o, "ropeHighFreqFactor");
  c.rope_original_max_positions = int_field(o, "ropeOriginalMaxPositions");
  return c;
}

Napi::Value wrap_model(Napi::Env env, ModelPtr model) {
  return Napi::External<ModelPtr>::New(env, new ModelPtr(std::move(model)),
                                       [](Napi::Env, ModelPtr* p) { delete p; });
}

ModelPtr model_arg(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "model: expected a model handle");
  return *v.As<Napi::External<ModelPtr>>().Data();
}

// An optional Tensor argument: undefined/null → an undefined at::Tensor.
at::Tensor optional_tensor(const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return at::Tensor();
  return TensorWrap::FromValue(v, what);
}

// createModel(config, names, tensors): the tensors become the model's parameters as they are.
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto config = read_config(info[0]);
    if (!info[1].IsArray() || !info[2].IsArray())
      throw Napi::TypeError::New(info.Env(), "names, tensors: expected two arrays");
    const auto names_js = info[1].As<Napi::Array>();
    const auto tensors_js = info[2].As<Napi::Array>();
    std::vector<std::string> names;
    std::vector<at::Tensor> tensors;
    for (uint32_t i = 0; i < names_js.Length(); ++i) names.push_back(arg_string(names_js.Get(i), "names[]"));
    for (uint32_t i = 0; i < tensors_js.Length(); ++i)
      tensors.push_back(TensorWrap::FromValue(tensors_js.Get(i), "tensors[]"));
    return wrap_model(info.Env(), std::make_shared<CausalLM>(std::move(config), std::move(names), std::move(tensors)));
  });
}

struct ForwardCall {
  ModelPtr model;
  at::Tensor ids, mask, positions;
  bool with_logits = true, with_grad = true;
  edpo::models::ForwardOutput out;
  void run() {
    // Grad mode is per thread: set it where the forward runs.
    at::AutoGradMode grad_mode(with_grad);
    out = model->forward(ids, mask, positions, nullptr, false, with_logits);
  }
};

std::shared_ptr<ForwardCall> read_forward(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<ForwardCall>();
  call->model = model_arg(info[0]);
  call->ids = TensorWrap::FromValue(info[1], "inputIds");
  call->mask = optional_tensor(info[2], "attentionMask");
  call->positions = optional_tensor(info[3], "positionIds");
  // Float positions would be cast silently inside RoPE; they are always a caller bug.
  TORCH_CHECK(!call->positions.defined() || call->positions.scalar_type() == at::kLong ||
                  call->positions.scalar_type() == at::kInt,
              "positionIds: expected an int64 or int32 tensor, got ", dtype_name(call->positions.scalar_type()));
  // options?: {logits?: boolean, grad?: boolean}
  if (info.Length() > 4 && info[4].IsObject()) {
    const auto o = info[4].As<Napi::Object>();
    if (o.Get("logits").IsBoolean()) call->with_logits = o.Get("logits").As<Napi::Boolean>().Value();
    if (o.Get("grad").IsBoolean()) call->with_grad = o.Get("grad").As<Napi::Boolean>().Value();
  }
  return call;
}

Napi::Object forward_result(Napi::Env env, const edpo::models::ForwardOutput& out) {
  Napi::Object r = Napi::Object::New(env);
  if (out.logits.defined()) r.Set("logits", TensorWrap::Wrap(env, out.logits));
  r.Set("hidden", TensorWrap::Wrap(env, out.hidden));
  return r;
}

// modelForward(model, inputIds, attentionMask?, positionIds?) → {logits, hidden}
Napi::Value ModelForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_forward(info);
    call->run();
    return forward_result(info.Env(), call->out);
  });
}

Napi::Value ModelForwardAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_forward(info);
    return PromiseWorker::Run(
        info.Env(), [call] { call->run(); },
        [call](Napi::Env env) -> Napi::Value { return forward_result(env, call->out); });
  });
}

struct GenerateCall {
  ModelPtr model;
  at::Tensor ids, mask, out;
  edpo::models::GenerateOptions opts;
  void run() { out = edpo::models::generate(*model, ids, mask, opts); }
};

std::shared_ptr<GenerateCall> read_generate(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<GenerateCall>();
  call->model = model_arg(info[0]);
  call->ids = TensorWrap::FromValue(info[1], "inputIds");
  if (!info[2].IsObject()) throw Napi::TypeError::New(info.Env(), "options: expected an object");
  const auto o = info[2].As<Napi::Object>();
  edpo::models::GenerateOptions& opts = call->opts;
  opts.max_new_tokens = int_field(o, "maxNewTokens");
  opts.temperature = field(o, "temperature");
  opts.top_p = field(o, "topP");
  opts.top_k = int_field(o, "topK");
  if (!o.Get("seed").IsUndefined()) {
    const double seed = field(o, "seed");
    TORCH_CHECK(seed >= 0 && seed == double(uint64_t(seed)), "seed: expected a non-negative integer, got ", seed);
    opts.has_seed = true;
    opts.seed = uint64_t(seed);
  }
  opts.eos_token_ids = arg_shape(o.Get("eosTokenIds"), "eosTokenIds");
  call->mask = optional_tensor(o.Get("attentionMask"), "attentionMask");
  return call;
}

// modelGenerate(model, inputIds, {maxNewTokens, temperature, topP, topK, seed?, eosTokenIds, attentionMask?})
Napi::Value ModelGenerate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_generate(info);
    call->run();
    return TensorWrap::Wrap(info.Env(), call->out);
  });
}

Napi::Value ModelGenerateAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_generate(info);
    return PromiseWorker::Run(
        info.Env(), [call] { call->run(); }, [call](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, call->out); });
  });
}

// modelParameters(model) → {names, tensors}: the live parameter tensors (not copies).
Napi::Value ModelParameters(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const ModelPtr model = model_arg(info[0]);
    Napi::Env env = info.Env();
    Napi::Array names = Napi::Array::New(env, model->names().size());
    Napi::Array tensors = Napi::Array::New(env, model->tensors().size());
    for (size_t i = 0; i < model->names().size(); ++i) {
      names.Set(uint32_t(i), Napi::String::New(env, model->names()[i]));
      tensors.Set(uint32_t(i), TensorWrap::Wrap(env, model->tensors()[i]));
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("names", names);
    r.Set("tensors", tensors);
    return r;
  });
}

Napi::Value ModelSetTraining(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    if (!info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "training: expected a boolean");
    model_arg(info[0])->training = info[1].As<Napi::Boolean>().Value();
    return info.Env().Undefined();
  });
}

Napi::Value ModelSetGradientCheckpointing(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    if (!info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "enabled: expected a boolean");
    model_arg(info[0])->gradient_checkpointing = info[1].As<Napi::Boolean>().Value();
    return info.Env().Undefined();
  });
}

// modelClone(model) → a deep copy with requires_grad off, in eval mode.
Napi::Value ModelClone(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return wrap_model(info.Env(), model_arg(info[0])->clone_frozen()); });
}

// modelLmHead(model) → {weight [V,H] (the embedding when tied), finalLogitSoftcap}
Napi::Value ModelLmHead(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const ModelPtr model = model_arg(info[0]);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("weight", TensorWrap::Wrap(info.Env(), model->lm_head()));
    r.Set("finalLogitSoftcap", Napi::Number::New(info.Env(), model->config().final_softcap));
    return r;
  });
}

}  // namespace

void InitModel(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
                                      {"createModel", CreateModel},
                                      {"modelForward", ModelForward},
                                      {"modelForwardAsync", ModelForwardAsync},
                                      {"modelGenerate", ModelGenerate},
                                      {"modelGenerateAsync", ModelGenerateAsync},
                                      {"modelParameters", ModelParameters},
                                      {"modelSetTraining", ModelSetTraining},
                                      {"modelSetGradientCheckpointing", ModelSetGradientCheckpointing},
                                      {"modelClone", ModelClone},
                                      {"modelLmHead", ModelLmHead},
                                  });
}

}  // namespace edpo_js
