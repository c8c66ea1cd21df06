// model* entry points: a CausalLM handle (an External owning a shared_ptr) built from a resolved
// config and named tensors; parameters, modes, clone. modelForward and modelGenerate (sync and
// async) are declared in js_op_table.cc and read the handle with arg_model.
#include <memory>

#include "js_common.h"
#include "js_op_table.h"
#include "models/causal_lm.h"

namespace edpo_js {
namespace {

using edpo::models::CausalLM;

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

ModelPtr model_arg(const Napi::Value& v) { return arg_model(v, "model"); }

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

// modelShareBase(model) → a second model over the same base tensors (no copy), without adapters.
Napi::Value ModelShareBase(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return wrap_model(info.Env(), model_arg(info[0])->share_base()); });
}

// modelAddLora(model, {r, alpha, dropout, useRslora, slots: [slot names], initSeed, dtype}).
Napi::Value ModelAddLora(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const ModelPtr model = model_arg(info[0]);
    if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "lora: expected an object");
    const auto o = info[1].As<Napi::Object>();
    edpo::models::LoraSpec spec;
    spec.r = int_field(o, "r");
    spec.alpha = field(o, "alpha");
    spec.dropout = field(o, "dropout");
    spec.use_rslora = bool_field(o, "useRslora");
    spec.init_seed = uint64_t(int_field(o, "initSeed"));
    const std::string dtype = arg_string(o.Get("dtype"), "dtype");
    TORCH_CHECK(dtype == "float32" || dtype == "float64", "lora dtype: expected float32 or float64, got ", dtype);
    spec.dtype = dtype == "float64" ? at::kDouble : at::kFloat;
    if (!o.Get("slots").IsArray()) throw Napi::TypeError::New(info.Env(), "slots: expected an array");
    const auto slots = o.Get("slots").As<Napi::Array>();
    for (uint32_t i = 0; i < slots.Length(); ++i) {
      const std::string name = arg_string(slots.Get(i), "slots[]") + ".weight";
      int found = -1;
      for (int s = 0; s < edpo::models::kNumSlots; ++s)
        if (name == edpo::models::layer_slot_name(s)) found = s;
      TORCH_CHECK(found >= 0, "lora target modules: no projection '", name, "'");
      spec.slots.push_back(found);
    }
    model->add_lora(spec);
    return info.Env().Undefined();
  });
}

// modelLoraParameters(model) → {names, tensors}: the live adapter tensors, PEFT order and names.
Napi::Value ModelLoraParameters(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const ModelPtr model = model_arg(info[0]);
    std::vector<std::string> names;
    std::vector<at::Tensor> tensors;
    model->lora_parameters(names, tensors);
    Napi::Env env = info.Env();
    Napi::Array n = Napi::Array::New(env, names.size());
    Napi::Array t = Napi::Array::New(env, tensors.size());
    for (size_t i = 0; i < names.size(); ++i) {
      n.Set(uint32_t(i), Napi::String::New(env, names[i]));
      t.Set(uint32_t(i), TensorWrap::Wrap(env, tensors[i]));
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("names", n);
    r.Set("tensors", t);
    return r;
  });
}

Napi::Value ModelMergeLora(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    model_arg(info[0])->merge_lora();
    return info.Env().Undefined();
  });
}

// modelLoraDropoutState(model[, {seed, forwards}]) → {seed, forwards}: the dropout masks' seed and
// the training forwards that drew masks so far (sets both when given: an exact resume).
Napi::Value ModelLoraDropoutState(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const ModelPtr model = model_arg(info[0]);
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "state: expected {seed, forwards}");
      const auto o = info[1].As<Napi::Object>();
      const int64_t seed = int_field(o, "seed"), forwards = int_field(o, "forwards");
      TORCH_CHECK(seed >= 0 && forwards >= 0, "state: seed and forwards must be >= 0");
      model->set_lora_dropout_state(uint64_t(seed), uint64_t(forwards));
    }
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("seed", Napi::Number::New(info.Env(), double(model->lora().init_seed)));
    r.Set("forwards", Napi::Number::New(info.Env(), double(model->lora_dropout_forwards())));
    return r;
  });
}

}  // namespace

ModelPtr arg_model(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a model handle");
  return *v.As<Napi::External<ModelPtr>>().Data();
}

void InitModel(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
                                      {"createModel", CreateModel},
                                      {"modelParameters", ModelParameters},
                                      {"modelSetTraining", ModelSetTraining},
                                      {"modelSetGradientCheckpointing", ModelSetGradientCheckpointing},
                                      {"modelClone", ModelClone},
                                      {"modelLmHead", ModelLmHead},
                                      {"modelShareBase", ModelShareBase},
                                      {"modelAddLora", ModelAddLora},
                                      {"modelLoraParameters", ModelLoraParameters},
                                      {"modelMergeLora", ModelMergeLora},
                                      {"modelLoraDropoutState", ModelLoraDropoutState},
                                  });
}

}  // namespace edpo_js
