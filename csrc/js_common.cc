// Error translation, argument readers, dtype names, the Promise worker and thread settings.
#include "js_common.h"

#include "ops/arg_error.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <thread>

namespace edpo_js {

std::string error_message(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

namespace {
Napi::Error coded_error(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}
}  // namespace

Napi::Error make_error(Napi::Env env, const std::string& message) { return coded_error(env, message, "EDPO_NATIVE"); }
Napi::Error make_input_error(Napi::Env env, const std::string& message) {
  return coded_error(env, message, "EDPO_INPUT");
}
Napi::Error make_error(Napi::Env env, const std::exception& e) {
  if (dynamic_cast<const edpo::ArgumentError*>(&e) != nullptr) return make_input_error(env, e.what());
  return make_error(env, error_message(e));
}

namespace {
struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"bfloat16", at::kBFloat16}, {"float16", at::kHalf},
    {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort},       {"int8", at::kChar},
    {"uint8", at::kByte},    {"bool", at::kBool},
};
}  // namespace

at::ScalarType parse_dtype(const std::string& name, const char* what) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  TORCH_CHECK(false, what, ": unknown dtype '", name,
              "' (expected float32, float64, bfloat16, float16, int64, int32, int16, int8, uint8 or bool)");
}

std::string dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.name;
  return c10::toString(t);
}

c10::Device parse_device(const std::string& name, const char* what) {
  try {
    return c10::Device(name);
  } catch (const c10::Error&) {
    TORCH_CHECK(false, what, ": invalid device '", name, "' (expected 'cpu', 'cuda' or 'cuda:N')");
  }
}

std::string arg_string(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a string");
  return v.As<Napi::String>().Utf8Value();
}

double arg_number(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::vector<int64_t> arg_shape(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of integers");
  const auto array = v.As<Napi::Array>();
  std::vector<int64_t> shape(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    const double d = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0 && d == double(int64_t(d))))
      throw Napi::TypeError::New(v.Env(), std::string(what) + "[" + std::to_string(i) + "]: expected an integer >= 0");
    shape[i] = int64_t(d);
  }
  return shape;
}

int64_t arg_int(const Napi::Value& v, const char* what) {
  const double d = arg_number(v, what);
  // 2^63 itself does not fit; the range check also rejects NaN and ±Infinity.
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != double(int64_t(d)))
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an integer, got " + v.ToString().Utf8Value());
  return int64_t(d);
}

std::vector<int64_t> arg_int_list(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of integers");
  const auto array = v.As<Napi::Array>();
  std::vector<int64_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i)
    out[i] = arg_int(array.Get(i), (std::string(what) + "[" + std::to_string(i) + "]").c_str());
  return out;
}

Napi::Promise PromiseWorker::Run(Napi::Env env, Work work, Finish finish) {
  auto* worker = new PromiseWorker(env, std::move(work), std::move(finish));
  Napi::Promise promise = worker->deferred_.Promise();
  worker->Queue();
  return promise;
}

PromiseWorker::PromiseWorker(Napi::Env env, Work work, Finish finish)
    : Napi::AsyncWorker(env, "edpo"),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      finish_(std::move(finish)) {
  if (profiler_active()) profiled_state_ = std::make_unique<at::ThreadLocalState>();
}

void PromiseWorker::Execute() {
  try {
    apply_thread_setting();
    std::unique_ptr<at::ThreadLocalStateGuard> profiled;
    if (profiled_state_) profiled = std::make_unique<at::ThreadLocalStateGuard>(*profiled_state_);
    work_();
  } catch (const std::exception& e) {
    input_error_ = dynamic_cast<const edpo::ArgumentError*>(&e) != nullptr;
    SetError(error_message(e));
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(finish_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const std::exception& e) {
    deferred_.Reject(make_error(env, e).Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  Napi::Env env = Env();
  deferred_.Reject((input_error_ ? make_input_error(env, error.Message()) : make_error(env, error.Message())).Value());
}

namespace {
std::atomic<int>& thread_setting() {
  static std::atomic<int> threads{[] {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n > 0) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw > 0 ? int(hw) : 1;
  }()};
  return threads;
}
}  // namespace

int configured_threads() { return thread_setting().load(); }
void set_configured_threads(int threads) { thread_setting().store(threads); }

void apply_thread_setting() {
  const int threads = configured_threads();
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
}

}  // namespace edpo_js

namespace edpo_js {

std::vector<at::Tensor> arg_tensor_list(const Napi::Value& v, const std::string& what, bool allow_null) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), what + ": expected an array of Tensors");
  const auto array = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    const std::string name = what + "[" + std::to_string(i) + "]";
    out.push_back(allow_null && item.IsNull() ? at::Tensor() : TensorWrap::FromValue(item, name.c_str()));
  }
  return out;
}

}  // namespace edpo_js
