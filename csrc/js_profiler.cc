// profilerStart / profilerStop: libtorch's profiler (Kineto's collector) around a stretch of
// training, for `--profile-steps`. It records the ATen ops of every thread that does the addon's
// work (PromiseWorker applies the JS thread's profiler state while one runs) and, on CUDA, the
// device's kernels and copies. The events come back as columns; lib/profile.ts writes the trace
// and the summary.
#include <ATen/ThreadLocalState.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <atomic>

#include "js_common.h"

namespace edpo_js {
namespace {

std::atomic<bool> active{false};

// KinetoEvent's clock accessors are startUs/durationUs in libtorch 1.x and startNs/durationNs in
// later 2.x: whichever the headers declare is used, both reported in µs.
template <class E>
auto start_us(const E& e, int) -> decltype(double(e.startNs())) {
  return double(e.startNs()) / 1000.0;
}
template <class E>
double start_us(const E& e, long) {
  return double(e.startUs());
}
template <class E>
auto duration_us(const E& e, int) -> decltype(double(e.durationNs())) {
  return double(e.durationNs()) / 1000.0;
}
template <class E>
double duration_us(const E& e, long) {
  return double(e.durationUs());
}

// profilerStart(cuda) — cuda: also record the device's kernels and copies.
Napi::Value ProfilerStart(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "cuda: expected a boolean");
    const bool cuda = info[0].As<Napi::Boolean>().Value();
    TORCH_CHECK(!cuda || at::hasCUDA(), "profile: device kernels asked for, but this addon has no CUDA device");
    TORCH_CHECK(!active.load(), "profile: the profiler is already running");
    using torch::profiler::impl::ActivityType;
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    torch::autograd::profiler::enableProfiler(ProfilerConfig(ProfilerState::KINETO), activities);
    active.store(true);
    return info.Env().Undefined();
  });
}

// profilerStop() → { names, onDevice, startUs, durationUs, thread }: one entry per event.
Napi::Value ProfilerStop(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    TORCH_CHECK(active.load(), "profile: the profiler is not running");
    std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
    active.store(false);
    Napi::Env env = info.Env();
    const auto& events = result->events();
    const size_t n = events.size();
    Napi::Array names = Napi::Array::New(env, n);
    Napi::Uint8Array on_device = Napi::Uint8Array::New(env, n);
    Napi::Float64Array start = Napi::Float64Array::New(env, n);
    Napi::Float64Array duration = Napi::Float64Array::New(env, n);
    Napi::Float64Array thread = Napi::Float64Array::New(env, n);
    for (size_t i = 0; i < n; ++i) {
      const auto& e = events[i];
      names.Set(uint32_t(i), Napi::String::New(env, e.name()));
      on_device[i] = e.deviceType() == c10::DeviceType::CPU ? 0 : 1;
      start[i] = start_us(e, 0);
      duration[i] = duration_us(e, 0);
      thread[i] = double(e.startThreadId());
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("names", names);
    out.Set("onDevice", on_device);
    out.Set("startUs", start);
    out.Set("durationUs", duration);
    out.Set("thread", thread);
    return out;
  });
}

}  // namespace

bool profiler_active() { return active.load(std::memory_order_relaxed); }

void InitProfiler(Napi::Env env, Napi::Object exports) {
  exports.Set("profilerStart", Napi::Function::New(env, ProfilerStart));
  exports.Set("profilerStop", Napi::Function::New(env, ProfilerStop));
}

}  // namespace edpo_js
