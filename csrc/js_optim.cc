// optim.*: AdamW steps and gradient clipping over lists of parameter tensors (sync and Async).
#include <memory>

#include "js_common.h"
#include "ops/adamw.h"

namespace edpo_js {
namespace {

// A list of Tensors; with `allow_null`, null/undefined entries become undefined tensors.
std::vector<at::Tensor> tensor_array(const Napi::Value& v, const char* what, bool allow_null) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of Tensors");
  const auto array = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    if (allow_null && (item.IsNull() || item.IsUndefined())) {
      out.emplace_back();
    } else {
      out.push_back(TensorWrap::FromValue(item, what));
    }
  }
  return out;
}

struct AdamWCall {
  std::vector<at::Tensor> params, master, exp_avg, exp_avg_sq;
  int64_t step = 0;
  edpo::AdamWOptions options;
};

// adamwStep(params, master, expAvg, expAvgSq, step, {lr, beta1, beta2, eps, weightDecay})
std::shared_ptr<AdamWCall> read_adamw(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<AdamWCall>();
  call->params = tensor_array(info[0], "params", false);
  call->master = tensor_array(info[1], "master", true);
  call->exp_avg = tensor_array(info[2], "expAvg", false);
  call->exp_avg_sq = tensor_array(info[3], "expAvgSq", false);
  call->step = arg_int(info[4], "step");
  if (!info[5].IsObject()) throw Napi::TypeError::New(info.Env(), "options: expected an object");
  const Napi::Object o = info[5].As<Napi::Object>();
  call->options.lr = arg_number(o.Get("lr"), "lr");
  call->options.beta1 = arg_number(o.Get("beta1"), "beta1");
  call->options.beta2 = arg_number(o.Get("beta2"), "beta2");
  call->options.eps = arg_number(o.Get("eps"), "eps");
  call->options.weight_decay = arg_number(o.Get("weightDecay"), "weightDecay");
  return call;
}

void run_adamw(const AdamWCall& c) { edpo::adamw_step(c.params, c.master, c.exp_avg, c.exp_avg_sq, c.step, c.options); }

Napi::Value AdamWStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    run_adamw(*read_adamw(info));
    return info.Env().Undefined();
  });
}

Napi::Value AdamWStepAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_adamw(info);
    return PromiseWorker::Run(
        info.Env(), [call] { run_adamw(*call); }, [](Napi::Env env) { return env.Undefined(); });
  });
}

// clipGradNorm(params, maxNorm) → the norm before clipping
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const double norm = edpo::clip_grad_norm(tensor_array(info[0], "params", false), arg_number(info[1], "maxNorm"));
    return Napi::Number::New(info.Env(), norm);
  });
}

}  // namespace

void InitOptim(Napi::Env env, Napi::Object exports) {
  exports.Set("adamwStep", Napi::Function::New(env, AdamWStep));
  exports.Set("adamwStepAsync", Napi::Function::New(env, AdamWStepAsync));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm));
}

}  // namespace edpo_js
