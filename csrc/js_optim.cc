// Gradient clipping over a list of parameter tensors (the AdamW step is a declared op: js_op_table.cc).
#include "js_common.h"
#include "ops/adamw.h"

namespace edpo_js {
namespace {

// clipGradNorm(params, maxNorm) → the norm before clipping
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const double norm = edpo::clip_grad_norm(arg_tensor_list(info[0], "params", false), arg_number(info[1], "maxNorm"));
    return Napi::Number::New(info.Env(), norm);
  });
}

}  // namespace

void InitOptim(Napi::Env env, Napi::Object exports) {
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm));
}

}  // namespace edpo_js
