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
#include "js_op_table.h"

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

// cuda: also record the device's kernels and copies.
void profiler_start(bool cuda) {
  TORCH_CHECK(!cuda || at::hasCUDA(), "profile: device kernels asked for, but this addon has no CUDA device");
  TORCH_CHECK(!active.load(), "profile: the profiler is already running");
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  torch::autograd::profiler::enableProfiler(ProfilerConfig(ProfilerState::KINETO), activities);
  active.store(true);
}

// { names, onDevice, startUs, durationUs, thread }: one entry per event.
OpResults profiler_stop() {
  TORCH_CHECK(active.load(), "profile: the profiler is not running");
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
  active.store(false);
  const auto& events = result->events();
  const size_t n = events.size();
  std::vector<std::string> names(n);
  std::vector<uint8_t> on_device(n);
  std::vector<double> start(n), duration(n), thread(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& e = events[i];
    names[i] = e.name();
    on_device[i] = e.deviceType() == c10::DeviceType::CPU ? 0 : 1;
    start[i] = start_us(e, 0);
    duration[i] = duration_us(e, 0);
    thread[i] = double(e.startThreadId());
  }
  return {names, on_device, start, duration, thread};
}

}  // namespace

bool profiler_active() { return active.load(std::memory_order_relaxed); }

void declare_profiler_ops(std::vector<OpDecl>& ops) {
  using R = ResultKind;
  ops.push_back({"profilerStart",
                 "Starts libtorch's profiler (Kineto's collector) for `--profile-steps`.",
                 {{"cuda", ArgKind::Boolean, "Also record the device's kernels and copies."}},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   profiler_start(a.flag("cuda"));
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back({"profilerStop",
                 "Stops the profiler: the events it recorded, as columns (one entry per event).",
                 {},
                 {{"names", false, "Each event's name.", R::StringList},
                  {"onDevice", false, "1: a device event (a kernel, a copy, a memset), 0: a host op.", R::Uint8Array},
                  {"startUs", false, "Start, in µs.", R::Float64Array},
                  {"durationUs", false, "Duration, in µs.", R::Float64Array},
                  {"thread", false, "The host thread (0 for device events).", R::Float64Array}},
                 [](const OpArgs&) { return profiler_stop(); },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Fields,
                 "NativeProfile"});
}

}  // namespace edpo_js
