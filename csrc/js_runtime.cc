// runtime(): what this addon runs on, for edpo.runtime() / `edpo doctor` and benchmarks.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>
#include <ATen/Context.h>

#include "js_common.h"
#include "ops/host_sync.h"
#include "ops/row_ops.h"

#ifndef EDPO_BUILD_SYSTEM
#define EDPO_BUILD_SYSTEM "unknown"
#endif

namespace edpo_js {
namespace {

Napi::Value Runtime(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("libtorchVersion", Napi::String::New(env, TORCH_VERSION));
    r.Set("cudaBuild", Napi::Boolean::New(env,
#ifdef EDPO_WITH_CUDA
                                          true
#else
                                          false
#endif
                                          ));
    r.Set("cudaAvailable", Napi::Boolean::New(env, at::hasCUDA()));
    r.Set("cpuKernels", Napi::String::New(env, edpo::cpu_kernel_isa()));
    r.Set("threads", Napi::Number::New(env, at::get_num_threads()));
    r.Set("buildSystem", Napi::String::New(env, EDPO_BUILD_SYSTEM));
    r.Set("parallelInfo", Napi::String::New(env, at::get_parallel_info()));
    r.Set("hostSyncs", Napi::Number::New(env, double(edpo::host_syncs())));
    return r;
  });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const double n = arg_number(info[0], "threads");
    TORCH_CHECK(n >= 1 && n == double(int(n)), "threads: expected an integer >= 1, got ", n);
    set_configured_threads(int(n));
    apply_thread_setting();
    return info.Env().Undefined();
  });
}

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("runtime", Napi::Function::New(env, Runtime));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
}

}  // namespace edpo_js
