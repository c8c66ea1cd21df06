// Shared N-API plumbing: error translation, dtype names, the Tensor handle class and a
// Promise-returning worker for long native calls. Every JS-facing entry point goes through
// `guarded`, so a c10::Error becomes a JS Error (code EDPO_NATIVE) instead of aborting Node.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>
#include <ATen/ThreadLocalState.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <utility>
#include <initializer_list>

namespace edpo_js {

// c10::Error::what() carries a C++ backtrace; users get the message only.
std::string error_message(const std::exception& e);
// A JS Error with code EDPO_NATIVE (an internal failure) or, for edpo::ArgumentError and the
// argument readers, EDPO_INPUT (lib/errors.ts turns it into EdpoInputError).
Napi::Error make_error(Napi::Env env, const std::string& message);
Napi::Error make_input_error(Napi::Env env, const std::string& message);
Napi::Error make_error(Napi::Env env, const std::exception& e);

template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw make_error(env, e);
  }
}

// dtype names as the TypeScript API spells them ('float32', 'bfloat16', ...).
at::ScalarType parse_dtype(const std::string& name, const char* what);
std::string dtype_name(at::ScalarType t);
c10::Device parse_device(const std::string& name, const char* what);

// Argument readers that throw a JS TypeError naming the argument.
std::string arg_string(const Napi::Value& v, const char* what);
double arg_number(const Napi::Value& v, const char* what);
std::vector<int64_t> arg_shape(const Napi::Value& v, const char* what);
// An integer (any sign): rejects NaN, Infinity and fractions instead of truncating them.
int64_t arg_int(const Napi::Value& v, const char* what);
// An array of integers (any sign), e.g. dims or a reshape target (which may hold -1).
std::vector<int64_t> arg_int_list(const Napi::Value& v, const char* what);

class TensorWrap;
// An array of Tensors, each named `what[i]` in errors; with `allow_null`, null entries are undefined.
std::vector<at::Tensor> arg_tensor_list(const Napi::Value& v, const std::string& what, bool allow_null);

// The JS-side handle of one at::Tensor.
class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, at::Tensor tensor);
  static bool IsTensor(const Napi::Value& v);
  // The tensor behind a JS handle; throws a TypeError naming `what` when it is not one.
  static at::Tensor FromValue(const Napi::Value& v, const char* what);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;
  const at::Tensor& tensor(const char* what) const;

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value Grad(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value BackwardAsync(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value Op(const Napi::CallbackInfo& info);

  void Account(Napi::Env env, int64_t sign);

  at::Tensor tensor_;
  int64_t accounted_bytes_ = 0;
};

// Runs `work` on the libuv thread pool and settles a Promise with `finish(env)` (on the JS
// thread) or with the work's error.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Finish = std::function<Napi::Value(Napi::Env)>;
  static Napi::Promise Run(Napi::Env env, Work work, Finish finish);

 private:
  PromiseWorker(Napi::Env env, Work work, Finish finish);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;
  Napi::Promise::Deferred deferred_;
  bool input_error_ = false;  // the work threw edpo::ArgumentError
  // While the profiler runs: the JS thread's thread-local state (the profiler's among it), applied
  // around the work so its ops are recorded too.
  std::unique_ptr<at::ThreadLocalState> profiled_state_;
  Work work_;
  Finish finish_;
};

// Makes libtorch use the configured intra-op thread count on the calling thread (worker
// threads do not inherit the main thread's setting under OpenMP).
void apply_thread_setting();
int configured_threads();
void set_configured_threads(int threads);

// Every declared entry (js_op_table.h) and opDeclarations().
void InitOps(Napi::Env env, Napi::Object exports);
// Installs the counting CPU allocator (before any tensor is made).
void InitMemory(Napi::Env env, Napi::Object exports);
// Whether profilerStart has run without its profilerStop (js_profiler.cc).
bool profiler_active();

}  // namespace edpo_js
