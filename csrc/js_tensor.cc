// The Tensor handle: properties, autograd entry points, host copies and dtype/device moves.
// Arithmetic lives in js_tensor_ops.cc.
#include <torch/csrc/autograd/autograd.h>

#include <cstring>

#include <atomic>
#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "js_common.h"
#include "ops/host_sync.h"

namespace edpo_js {

namespace {
// One constructor per environment (worker threads each load the addon once).
struct AddonData {
  Napi::FunctionReference tensor_constructor;
};
}  // namespace

void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "NativeTensor",
                                    {
                                        InstanceMethod("shape", &TensorWrap::Shape),
                                        InstanceMethod("dtype", &TensorWrap::Dtype),
                                        InstanceMethod("device", &TensorWrap::Device),
                                        InstanceMethod("requiresGrad", &TensorWrap::RequiresGrad),
                                        InstanceMethod("setRequiresGrad", &TensorWrap::SetRequiresGrad),
                                        InstanceMethod("grad", &TensorWrap::Grad),
                                        InstanceMethod("zeroGrad", &TensorWrap::ZeroGrad),
                                        InstanceMethod("backward", &TensorWrap::Backward),
                                        InstanceMethod("backwardAsync", &TensorWrap::BackwardAsync),
                                        InstanceMethod("item", &TensorWrap::Item),
                                        InstanceMethod("toArray", &TensorWrap::ToArray),
                                        InstanceMethod("to", &TensorWrap::To),
                                        InstanceMethod("dispose", &TensorWrap::Dispose),
                                        InstanceMethod("isDisposed", &TensorWrap::IsDisposed),
                                        InstanceMethod("numel", &TensorWrap::Numel),
                                        InstanceMethod("op", &TensorWrap::Op),
                                    });
  auto* data = new AddonData();
  data->tensor_constructor = Napi::Persistent(ctor);
  env.SetInstanceData<AddonData>(data);
  exports.Set("NativeTensor", ctor);
}

Napi::Object TensorWrap::Wrap(Napi::Env env, at::Tensor tensor) {
  Napi::Object obj = env.GetInstanceData<AddonData>()->tensor_constructor.New({});
  TensorWrap* wrap = Napi::ObjectWrap<TensorWrap>::Unwrap(obj);
  wrap->tensor_ = std::move(tensor);
  wrap->Account(env, +1);
  return obj;
}

bool TensorWrap::IsTensor(const Napi::Value& v) {
  if (!v.IsObject()) return false;
  return v.As<Napi::Object>().InstanceOf(v.Env().GetInstanceData<AddonData>()->tensor_constructor.Value());
}

at::Tensor TensorWrap::FromValue(const Napi::Value& v, const char* what) {
  if (!IsTensor(v)) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a Tensor");
  // An object that only inherits NativeTensor.prototype (or comes from another addon instance)
  // passes InstanceOf but wraps nothing; ObjectWrap::Unwrap would throw a bare "Invalid argument".
  void* wrapped = nullptr;
  if (napi_unwrap(v.Env(), v, &wrapped) != napi_ok || wrapped == nullptr)
    throw Napi::TypeError::New(v.Env(),
                               std::string(what) + ": expected a Tensor, got an object without a native tensor");
  return static_cast<TensorWrap*>(wrapped)->tensor(what);
}

namespace {

// Handles whose finalizer has not run yet. Node runs N-API finalizers only from the event loop, so
// in a loop that never yields they pile up between the tensor buffers of the glibc heap: freed
// buffers fragment and RSS grows ~1 MB per step even when every tensor is disposed. glibc raises
// its mmap threshold after the first large free, which is what lets buffers land on that heap.
std::atomic<int64_t> unfinalized{0};

// Past this many unfinalized handles the process is not turning its event loop (an awaiting
// training loop on the tiny test model peaks at ~1900, as GCs and finalizers come and go): tensor
// buffers of 256 KiB and more then go to mmap'd blocks, returned to the OS on free, and every
// further kUnfinalizedForFlatMemory handles malloc_trim gives back the free pages the heap holds.
// Not from the start: mmap's page faults cost ~25% of a small CPU training step (bench/RESULTS.md).
// MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES set by the user win.
constexpr int64_t kUnfinalizedForFlatMemory = 4096;

void keep_memory_flat_if_finalizers_starve(int64_t pending) {
#if defined(__GLIBC__)
  if (pending < kUnfinalizedForFlatMemory || pending % kUnfinalizedForFlatMemory != 0) return;
  static std::atomic<bool> switched{false};
  const bool user_tuned = std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("GLIBC_TUNABLES") != nullptr;
  if (!user_tuned && !switched.exchange(true)) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Give back the free pages the fragmented heap holds (every kUnfinalizedForFlatMemory handles).
  if (!user_tuned) malloc_trim(0);
#else
  (void)pending;
#endif
}

}  // namespace

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  keep_memory_flat_if_finalizers_starve(unfinalized.fetch_add(1, std::memory_order_relaxed) + 1);
}

TensorWrap::~TensorWrap() {
  unfinalized.fetch_sub(1, std::memory_order_relaxed);
  // Finalizers may still tell V8 about freed external memory. The raw call never throws: a
  // destructor that threw (a terminating worker's env refuses calls) would abort the process.
  if (accounted_bytes_ != 0) {
    int64_t ignored = 0;
    napi_adjust_external_memory(Env(), -accounted_bytes_, &ignored);
  }
}

// Large tensors live outside the JS heap; reporting their size lets V8 collect handles sooner.
void TensorWrap::Account(Napi::Env env, int64_t sign) {
  if (sign > 0) {
    accounted_bytes_ = tensor_.defined() && tensor_.is_cpu() ? int64_t(tensor_.nbytes()) : 0;
    if (accounted_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, accounted_bytes_);
  } else if (accounted_bytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_bytes_);
    accounted_bytes_ = 0;
  }
}

const at::Tensor& TensorWrap::tensor(const char* what) const {
  TORCH_CHECK(tensor_.defined(), what, ": the tensor was disposed");
  return tensor_;
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const auto sizes = tensor("tensor").sizes();
    Napi::Array out = Napi::Array::New(info.Env(), sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) out.Set(uint32_t(i), Napi::Number::New(info.Env(), double(sizes[i])));
    return out;
  });
}

Napi::Value TensorWrap::Dtype(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return Napi::String::New(info.Env(), dtype_name(tensor("tensor").scalar_type())); });
}

Napi::Value TensorWrap::Device(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return Napi::String::New(info.Env(), tensor("tensor").device().str()); });
}

Napi::Value TensorWrap::RequiresGrad(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return Napi::Boolean::New(info.Env(), tensor("tensor").requires_grad()); });
}

Napi::Value TensorWrap::SetRequiresGrad(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "requiresGrad: expected a boolean");
    const bool value = info[0].As<Napi::Boolean>().Value();
    const at::Tensor& t = tensor("requiresGrad");
    // libtorch's set_requires_grad ignores the flag on non-leaves; say so instead.
    TORCH_CHECK(t.is_leaf(),
                "requiresGrad: can only be set on a leaf tensor (this one is computed by an op; use detach())");
    TORCH_CHECK(!value || t.is_floating_point(),
                "requiresGrad: only floating-point tensors can require gradients, got ", dtype_name(t.scalar_type()));
    tensor_.set_requires_grad(value);
    return info.Env().Undefined();
  });
}

Napi::Value TensorWrap::Grad(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const at::Tensor grad = tensor("tensor").grad();
    if (!grad.defined()) return info.Env().Undefined();
    return Wrap(info.Env(), grad);
  });
}

Napi::Value TensorWrap::ZeroGrad(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    tensor("tensor");
    tensor_.mutable_grad().reset();
    return info.Env().Undefined();
  });
}

Napi::Value TensorWrap::Backward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const at::Tensor& t = tensor("tensor");
    TORCH_CHECK(t.requires_grad(), "backward: the tensor does not require grad (no graph leads to it)");
    torch::autograd::backward({t});
    return info.Env().Undefined();
  });
}

Napi::Value TensorWrap::BackwardAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const at::Tensor t = tensor("tensor");
    TORCH_CHECK(t.requires_grad(), "backward: the tensor does not require grad (no graph leads to it)");
    return PromiseWorker::Run(
        info.Env(), [t] { torch::autograd::backward({t}); }, [](Napi::Env env) { return env.Undefined(); });
  });
}

Napi::Value TensorWrap::Item(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const at::Tensor& t = tensor("tensor");
    TORCH_CHECK(t.numel() == 1, "item: expected a tensor with one element, got ", t.numel());
    if (t.scalar_type() == at::kBool) return Napi::Boolean::New(info.Env(), edpo::read_scalar<bool>(t));
    return Napi::Number::New(info.Env(), edpo::read_scalar<double>(t));
  });
}

namespace {
template <typename ArrayT>
Napi::Value copy_out(Napi::Env env, const at::Tensor& t) {
  ArrayT out = ArrayT::New(env, size_t(t.numel()));
  if (t.numel() > 0) std::memcpy(out.Data(), t.data_ptr(), t.nbytes());
  return out;
}
}  // namespace

Napi::Value TensorWrap::ToArray(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    edpo::count_host_sync();
    const at::Tensor t = tensor("tensor").detach().to(at::kCPU).contiguous();
    Napi::Env env = info.Env();
    switch (t.scalar_type()) {
      case at::kFloat:
        return copy_out<Napi::Float32Array>(env, t);
      case at::kDouble:
        return copy_out<Napi::Float64Array>(env, t);
      case at::kLong:
        return copy_out<Napi::BigInt64Array>(env, t);
      case at::kInt:
        return copy_out<Napi::Int32Array>(env, t);
      case at::kShort:
        return copy_out<Napi::Int16Array>(env, t);
      case at::kChar:
        return copy_out<Napi::Int8Array>(env, t);
      case at::kByte:
      case at::kBool:
        return copy_out<Napi::Uint8Array>(env, t);
      case at::kBFloat16:
      case at::kHalf:
        return copy_out<Napi::Uint16Array>(env, t);  // raw bits; .to('float32') for values
      default:
        TORCH_CHECK(false, "toArray: unsupported dtype ", t.scalar_type());
    }
  });
}

namespace {
bool is_device_name(const std::string& s) { return s.rfind("cpu", 0) == 0 || s.rfind("cuda", 0) == 0; }
}  // namespace

// to(dtype) or to(device) or to(dtype, device): the first argument is a dtype when it does not
// name a device; the second, when present, must be a device.
Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    at::Tensor t = tensor("to");
    size_t given = info.Length();
    while (given > 0 && info[given - 1].IsUndefined()) --given;
    TORCH_CHECK(given >= 1, "to: expected a dtype or a device");
    TORCH_CHECK(given <= 2, "to: expected at most two arguments (dtype, device), got ", given);
    const std::string target = arg_string(info[0], "to");
    if (is_device_name(target)) {
      TORCH_CHECK(given == 1, "device: unexpected after the device '", target, "' (use to(dtype, device))");
      return Wrap(info.Env(), t.to(parse_device(target, "to")));
    }
    t = t.to(parse_dtype(target, "to"));
    if (given == 2) {
      const std::string device = arg_string(info[1], "device");
      TORCH_CHECK(is_device_name(device), "device: expected 'cpu', 'cuda' or 'cuda:N', got '", device, "'");
      t = t.to(parse_device(device, "device"));
    }
    return Wrap(info.Env(), t);
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  Account(info.Env(), -1);
  tensor_.reset();
  return info.Env().Undefined();
}

Napi::Value TensorWrap::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

Napi::Value TensorWrap::Numel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), double(tensor("tensor").numel())); });
}

}  // namespace edpo_js
