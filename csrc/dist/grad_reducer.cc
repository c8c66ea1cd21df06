// GradReducer (see grad_reducer.h). Hooks: a FunctionPostHook on each parameter's AccumulateGrad
// node (torch::autograd::impl::grad_accumulator + Node::add_post_hook), the mechanism c10d's own
// Reducer uses, in libtorch 1.13 and PyTorch 2.x alike. The reducer holds the accumulators: a
// parameter keeps only a weak reference to its own, so without this each graph would make a new
// one, without the hook.
#include "grad_reducer.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "../ops/arg_error.h"

namespace edpo::dist {
namespace {

// ZeRO-2: non-owned buckets whose reduce may be in flight at once; starting one more first waits
// for the oldest, so their memory stays bounded (DeepSpeed's overlap_comm keeps two as well).
constexpr size_t kNonOwnedInFlight = 2;

int64_t nbytes(const at::Tensor& t) { return t.defined() ? t.numel() * int64_t(t.element_size()) : 0; }

struct Bucket {
  std::vector<int64_t> params;
  int owner = -1;         // -1: all-reduced
  bool retained = true;   // this rank keeps the result: all-reduced, or owned
  int64_t remaining = 0;  // gradients not yet ready in the armed backward
  bool started = false;
  at::Tensor flat;
  std::unique_ptr<Pending> pending;
};

}  // namespace

struct GradReducer::State {
  std::shared_ptr<Group> group;
  std::vector<at::Tensor> params;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;
  std::vector<int64_t> bucket_of;
  std::vector<char> ready;
  std::vector<Bucket> buckets;
  std::deque<size_t> non_owned_in_flight;
  std::mutex mu;
  bool armed = false;
  bool in_backward = false;
  size_t next = 0;  // the next bucket to start
  int64_t started = 0;
  int64_t in_flight_bytes = 0;  // buckets whose collective started and is not yet waited for
  ReducerStats stats;

  // Bytes of gradients and buckets this rank holds now (+ `extra`): the peak's running maximum.
  void track_peak(int64_t extra) {
    int64_t live = extra;
    for (size_t i = 0; i < params.size(); ++i)
      if (!buckets[size_t(bucket_of[i])].started) live += nbytes(params[i].grad());
    for (const auto& b : buckets) live += nbytes(b.flat);
    stats.peak_gradient_bytes = std::max(stats.peak_gradient_bytes, live);
  }

  void on_ready(int64_t index) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || ready[size_t(index)]) return;
    stats.started_before_last_hook = started;
    ready[size_t(index)] = 1;
    reap(kNonOwnedInFlight);
    track_peak(0);
    --buckets[size_t(bucket_of[size_t(index)])].remaining;
    while (next < buckets.size() && buckets[next].remaining == 0) start(next++);
  }

  // Flattens bucket b's gradients (zeros where a parameter has none) and starts its collective;
  // the gradients themselves are dropped: the bucket holds them now.
  void start(size_t b) {
    c10::NoGradGuard no_grad;
    Bucket& bucket = buckets[b];
    std::vector<at::Tensor> flat;
    flat.reserve(bucket.params.size());
    for (const int64_t i : bucket.params) {
      const at::Tensor& p = params[size_t(i)];
      const at::Tensor g = p.grad();
      flat.push_back(g.defined() ? g.reshape(-1) : at::zeros({p.numel()}, p.options()));
    }
    // One contiguous gradient is its own bucket (no copy); otherwise the copy adds to the peak.
    at::Tensor joined = flat.size() == 1 && flat[0].is_contiguous() ? flat[0] : at::cat(flat);
    flat.clear();
    track_peak(bucket.params.size() == 1 ? 0 : nbytes(joined));
    bucket.flat = std::move(joined);
    for (const int64_t i : bucket.params) params[size_t(i)].mutable_grad().reset();
    bucket.started = true;
    bucket.pending = group->start_sum(bucket.flat, bucket.owner);
    in_flight_bytes += nbytes(bucket.flat);
    stats.peak_in_flight_bytes = std::max(stats.peak_in_flight_bytes, in_flight_bytes);
    ++started;
    if (in_backward) ++stats.started_in_backward;
    if (bucket.retained) return;
    non_owned_in_flight.push_back(b);
    reap(kNonOwnedInFlight);
  }

  // Frees the non-owned buckets whose reduce is done, and waits for the oldest ones while more
  // than `limit` remain.
  void reap(size_t limit) {
    while (!non_owned_in_flight.empty() &&
           (non_owned_in_flight.size() > limit || buckets[non_owned_in_flight.front()].pending->done())) {
      release(buckets[non_owned_in_flight.front()]);
      non_owned_in_flight.pop_front();
    }
  }

  // A non-owned bucket: once its reduce is done, its memory goes (wait() rethrows a failure).
  void release(Bucket& bucket) {
    bucket.pending->wait();
    bucket.pending.reset();
    in_flight_bytes -= nbytes(bucket.flat);
    bucket.flat = at::Tensor();
  }
};

namespace {

class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::weak_ptr<GradReducer::State> state, int64_t index) : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto s = state_.lock()) s->on_ready(index_);
    return outputs;
  }

 private:
  std::weak_ptr<GradReducer::State> state_;
  int64_t index_;
};

}  // namespace

GradReducer::GradReducer(std::shared_ptr<Group> group, std::vector<at::Tensor> params, int64_t bucket_bytes,
                         std::vector<int> owners)
    : state_(std::make_shared<State>()) {
  EDPO_ARG_CHECK(group != nullptr, "GradReducer: a process group is required");
  EDPO_ARG_CHECK(bucket_bytes > 0, "bucketMb: the bucket size must be > 0 bytes, got ", bucket_bytes);
  EDPO_ARG_CHECK(owners.empty() || owners.size() == params.size(), "GradReducer: ", owners.size(), " owners for ",
                 params.size(), " parameters");
  for (size_t i = 0; i < params.size(); ++i) {
    EDPO_ARG_CHECK(params[i].defined() && params[i].requires_grad() && params[i].is_leaf(), "GradReducer: parameter ",
                   i, " is not a leaf tensor that requires grad");
    if (!owners.empty())
      EDPO_ARG_CHECK(owners[i] >= 0 && owners[i] < group->size(), "GradReducer: owner ", owners[i], " of parameter ", i,
                     " is not a rank in [0, ", group->size(), ")");
  }
  State& s = *state_;
  s.group = std::move(group);
  s.params = std::move(params);
  s.bucket_of.assign(s.params.size(), -1);
  s.ready.assign(s.params.size(), 0);
  // Reverse registration order: roughly the order in which the backward produces the gradients.
  int64_t bytes = 0;
  for (size_t k = s.params.size(); k-- > 0;) {
    const at::Tensor& p = s.params[k];
    const int owner = owners.empty() ? -1 : owners[k];
    const int64_t n = nbytes(p);
    bool fits = false;
    if (!s.buckets.empty()) {
      const at::Tensor& first = s.params[size_t(s.buckets.back().params.front())];
      fits = first.scalar_type() == p.scalar_type() && first.device() == p.device() &&
             s.buckets.back().owner == owner && bytes + n <= bucket_bytes;
    }
    if (!fits) {
      s.buckets.emplace_back();
      s.buckets.back().owner = owner;
      s.buckets.back().retained = owner < 0 || owner == s.group->rank();
      bytes = 0;
    }
    s.buckets.back().params.push_back(int64_t(k));
    s.bucket_of[k] = int64_t(s.buckets.size() - 1);
    bytes += n;
  }
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.params.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(s.params[i]);
    TORCH_CHECK(acc != nullptr, "GradReducer: parameter ", i, " has no gradient accumulator");
    s.hook_keys.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(weak, int64_t(i))));
    s.accumulators.push_back(std::move(acc));
  }
}

GradReducer::~GradReducer() { release(); }

void GradReducer::release() {
  if (!state_) return;
  // A graph that outlives the reducer may still hold an accumulator: its hook must go.
  for (size_t i = 0; i < state_->accumulators.size(); ++i) state_->accumulators[i]->del_post_hook(state_->hook_keys[i]);
  state_.reset();
}

void GradReducer::arm() {
  TORCH_CHECK(state_, "GradReducer: used after release()");
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  TORCH_CHECK(!s.armed, "GradReducer: arm() twice without finish()");
  for (auto& b : s.buckets) {
    b.remaining = int64_t(b.params.size());
    b.started = false;
    b.flat = at::Tensor();
    b.pending.reset();
  }
  std::fill(s.ready.begin(), s.ready.end(), 0);
  s.non_owned_in_flight.clear();
  s.next = 0;
  s.started = 0;
  s.in_flight_bytes = 0;
  s.stats = ReducerStats{};
  s.stats.buckets = int64_t(s.buckets.size());
  s.armed = true;
  s.in_backward = true;
}

ReducerStats GradReducer::finish() {
  TORCH_CHECK(state_, "GradReducer: used after release()");
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  TORCH_CHECK(s.armed, "GradReducer: finish() without arm()");
  s.armed = false;
  s.in_backward = false;
  c10::NoGradGuard no_grad;
  // What the backward did not start (gradients it never reached), in order, so every rank issues
  // the same collectives.
  while (s.next < s.buckets.size()) s.start(s.next++);
  s.reap(0);
  const double world = double(s.group->size());
  for (auto& b : s.buckets) {
    if (!b.retained) continue;
    b.pending->wait();
    b.pending.reset();
    b.flat.div_(world);
    int64_t offset = 0;
    for (const int64_t i : b.params) {
      at::Tensor& p = s.params[size_t(i)];
      p.mutable_grad() = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
    }
  }
  s.track_peak(0);
  // The gradients now hold the buckets' storage; the buckets' own handles go.
  for (auto& b : s.buckets) b.flat = at::Tensor();
  return s.stats;
}

std::vector<std::vector<int64_t>> GradReducer::bucket_indices() const {
  TORCH_CHECK(state_, "GradReducer: used after release()");
  std::vector<std::vector<int64_t>> out;
  for (const auto& b : state_->buckets) out.push_back(b.params);
  return out;
}

}  // namespace edpo::dist
