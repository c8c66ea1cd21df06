// LayerShards (see layer_shards.h). A gathered unit is one flat buffer; the layer's weights are
// views of it, so the graph's saved weights share its storage. Freeing swaps the storage's data
// out (StorageImpl::set_data_ptr, set_nbytes: in libtorch 1.13 and 2.x alike) and a later gather
// swaps fresh data in, without an in-place op that would bump the saved tensors' versions.
// Collective order: every rank must issue the same collectives in one order, but autograd orders
// nodes that become ready together by sequence numbers, which are per thread (the forward, the
// head and the loss run on different threads), so the order of a unit's reduce-scatter and the
// next unit's gather may differ between ranks. Hence the reduce-scatters travel on a sibling group
// and start strictly in reverse order of the forward's uses, the head's last (like GradReducer's
// buckets), never waited on in the backward (a wait there could block a rank whose peer waits on
// a gather); finish() waits for them and adds each shard's chunk to its gradient.
// In-flight cap (--bucket-mb, DeepSpeed's reduce_bucket_size): a reduce-scatter whose bytes would
// take those in flight over the cap waits its turn in `ready` (one always may start), started by
// a later hook of the backward once older ones are done, or by finish(), which may wait for the
// oldest. The backward itself never waits, for the reason above (so the queued full gradients are
// not bounded by the cap); the order stays the same.
#include "layer_shards.h"

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <c10/core/GradMode.h>
#include <c10/core/StorageImpl.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../ops/arg_error.h"

namespace edpo::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct UnitLayout : UnitParams {
  std::vector<int64_t> sizes;  // each tensor's numel, then the padding (when > 0)
  int64_t chunk = 0;           // elements per rank
};

struct Gathering {
  at::Tensor full;
  std::unique_ptr<Pending> pending;
};

// A unit's gradient reducing onto the ranks that own its chunks (no works yet: waiting to start).
struct Scatter {
  int64_t unit = 0;
  at::Tensor flat;
  std::vector<std::unique_ptr<Pending>> works;
};

int64_t nbytes(const at::Tensor& t) { return t.defined() ? t.numel() * int64_t(t.element_size()) : 0; }

// What the units of one model (the policy, or its frozen reference) share with their autograd nodes.
struct Units {
  std::shared_ptr<Group> group;
  std::shared_ptr<Group> scatter_group;  // the reduce-scatters' own order (a model that trains)
  std::vector<UnitLayout> layout;
  std::vector<at::Tensor> shards;
  std::mutex mu;
  std::map<int64_t, Gathering> prefetched;
  // The storage of each unit's buffer between acquire() and release().
  std::map<int64_t, c10::intrusive_ptr<c10::StorageImpl>> current;

  Gathering start(int64_t u) {
    const at::Tensor& shard = shards[size_t(u)];
    const int64_t chunk = layout[size_t(u)].chunk;
    Gathering g;
    g.full = at::empty({chunk * group->size()}, shard.options());
    std::vector<at::Tensor> outs;
    for (int r = 0; r < group->size(); ++r) outs.push_back(g.full.narrow(0, r * chunk, chunk));
    g.pending = group->start_allgather(shard.detach(), std::move(outs));
    return g;
  }

  // Unit u gathered: its prefetch, or a gather started now.
  at::Tensor take(int64_t u) {
    Gathering g;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = prefetched.find(u);
      if (it != prefetched.end()) {
        g = std::move(it->second);
        prefetched.erase(it);
      }
    }
    if (!g.full.defined()) g = start(u);
    g.pending->wait();
    return g.full;
  }

  void prefetch(int64_t u) {
    std::lock_guard<std::mutex> lock(mu);
    if (prefetched.count(u) == 0) prefetched.emplace(u, start(u));
  }

  // A new forward: what an interrupted pass left prefetched is waited for and dropped (every rank
  // does the same, so the collectives still match).
  void drain() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [u, g] : prefetched) g.pending->wait();
    prefetched.clear();
    started_since_forward = 0;
  }

  // Uses with grad by their order of creation, and the gradients that arrived for them.
  int64_t next_use = 0;
  std::vector<std::pair<int64_t, int64_t>> awaiting;  // (use, unit), in creation order, heads first
  std::map<int64_t, at::Tensor> arrived;
  std::deque<Scatter> ready;       // their turn has come, not started (the cap)
  std::deque<Scatter> scattering;  // started, in start order
  int64_t cap_bytes = 0;           // of reduce-scatters in flight (a model that trains)
  int64_t in_flight_bytes = 0;
  int64_t started_since_forward = 0;
  bool finishing = false;
  ReducerStats stats;  // of the step so far

  // The head's use reduce-scatters after the uses made before it: its GatherFn, made on the loss's
  // thread (another sequence of numbers), may run last in a rank's backward (dist-zero3-overlap saw
  // it), and first in the order it would hold back every other unit's reduce-scatter till then.
  int64_t register_use(int64_t unit, bool head) {
    std::lock_guard<std::mutex> lock(mu);
    if (head)
      awaiting.emplace(awaiting.begin(), next_use, unit);
    else
      awaiting.emplace_back(next_use, unit);
    return next_use++;
  }

  // GatherFn's backward: the gradient of use `use`; then every reduce-scatter whose turn has come.
  void arrive(int64_t use, at::Tensor grad) {
    std::lock_guard<std::mutex> lock(mu);
    stats.started_before_last_hook = started_since_forward;
    arrived[use] = std::move(grad);
    track_peak();
    while (!awaiting.empty() && arrived.count(awaiting.back().first) > 0) {
      const auto [u, unit] = awaiting.back();
      awaiting.pop_back();
      queue_scatter(unit, arrived[u]);
      arrived.erase(u);
    }
    pump();
  }

  // A hook of the backward: starts what the cap now lets through.
  void progress() {
    std::lock_guard<std::mutex> lock(mu);
    pump();
  }

  void queue_scatter(int64_t unit, const at::Tensor& grad) {
    Scatter sc;
    sc.unit = unit;
    sc.flat = grad.defined() ? grad.contiguous()
                             : at::zeros({layout[size_t(unit)].chunk * group->size()}, shards[size_t(unit)].options());
    ready.push_back(std::move(sc));
  }

  bool fits(const Scatter& sc) const { return scattering.empty() || in_flight_bytes + nbytes(sc.flat) <= cap_bytes; }

  // Frees what is done, then starts the ready reduce-scatters that fit under the cap, in order.
  void pump() {
    reap(false);
    while (!ready.empty() && fits(ready.front())) start_next();
  }

  // Sums the next ready unit's gradient onto each chunk's rank: one reduce per rank (Gloo in
  // libtorch 1.13 has no reduce-scatter).
  void start_next() {
    Scatter sc = std::move(ready.front());
    ready.pop_front();
    const int64_t chunk = layout[size_t(sc.unit)].chunk;
    for (int r = 0; r < group->size(); ++r)
      sc.works.push_back(scatter_group->start_sum(sc.flat.narrow(0, r * chunk, chunk), r));
    in_flight_bytes += nbytes(sc.flat);
    stats.peak_in_flight_bytes = std::max(stats.peak_in_flight_bytes, in_flight_bytes);
    ++stats.buckets;
    ++started_since_forward;
    if (!finishing) ++stats.started_in_backward;
    scattering.push_back(std::move(sc));
  }

  // Bytes of this rank's gradients now (shards', and full ones arrived, ready or in flight).
  void track_peak() {
    int64_t live = in_flight_bytes;
    for (const auto& s : shards) live += nbytes(s.grad());
    for (const auto& [u, g] : arrived) live += nbytes(g);
    for (const auto& sc : ready) live += nbytes(sc.flat);
    stats.peak_gradient_bytes = std::max(stats.peak_gradient_bytes, live);
  }

  // Adds the finished reduce-scatters' chunks (averaged over ranks) to the shards' gradients, in
  // the order they started, freeing each full gradient; the `wait` oldest ones waited for, then
  // those done already.
  void reap(bool all, size_t wait = 0) {
    if (all) wait = scattering.size();
    while (!scattering.empty()) {
      Scatter& sc = scattering.front();
      bool finished = true;
      for (auto& w : sc.works) finished = finished && (wait > 0 || w->done());
      if (!finished) break;
      if (wait > 0) --wait;
      for (auto& w : sc.works) w->wait();
      c10::NoGradGuard no_grad;
      const int64_t chunk = layout[size_t(sc.unit)].chunk;
      at::Tensor mine = sc.flat.narrow(0, int64_t(group->rank()) * chunk, chunk).div(double(group->size()));
      at::Tensor& g = shards[size_t(sc.unit)].mutable_grad();
      if (g.defined())
        g.add_(mine);
      else
        g = std::move(mine);
      in_flight_bytes -= nbytes(sc.flat);
      scattering.pop_front();
    }
  }

  // After the backward passes of a step: uses whose gradient never arrived reduce zeros (every
  // rank issues the same collectives), then every reduce-scatter is started, waiting for the
  // oldest where the cap asks, and waited for. Returns the step's stats.
  ReducerStats finish() {
    std::lock_guard<std::mutex> lock(mu);
    finishing = true;
    while (!awaiting.empty()) {
      const auto [u, unit] = awaiting.back();
      awaiting.pop_back();
      auto it = arrived.find(u);
      queue_scatter(unit, it == arrived.end() ? at::Tensor() : it->second);
    }
    arrived.clear();
    while (!ready.empty()) {
      if (!fits(ready.front())) reap(false, 1);
      pump();
    }
    reap(true);
    track_peak();
    finishing = false;
    ReducerStats out = stats;
    stats = ReducerStats{};
    return out;
  }
};

void free_storage(c10::StorageImpl& s, const at::Device& device) {
  s.set_data_ptr(at::DataPtr(nullptr, device));
  s.set_nbytes(0);
}

// Moves `from`'s data into `into` (a freed buffer the graph still references).
void refill(c10::StorageImpl& into, const at::Tensor& from) {
  c10::StorageImpl* src = from.storage().unsafeGetStorageImpl();
  const size_t bytes = src->nbytes();
  into.set_data_ptr(src->set_data_ptr(at::DataPtr(nullptr, from.device())));
  into.set_nbytes(bytes);
  src->set_nbytes(0);
}

// One use of a unit's gathered buffer by a graph: its storage (not the tensor, which would hold
// the node that holds this: a cycle).
struct Use : torch::CustomClassHolder {
  std::shared_ptr<Units> units;
  int64_t unit = 0;
  int64_t order = -1;  // GatherFn: the use's place among the forward's uses with grad
  c10::intrusive_ptr<c10::StorageImpl> storage;
  at::Device device = at::kCPU;
};

c10::intrusive_ptr<Use> use_of(const std::shared_ptr<Units>& units, int64_t unit, const at::Tensor& full) {
  auto use = c10::make_intrusive<Use>();
  use->units = units;
  use->unit = unit;
  use->storage = c10::intrusive_ptr<c10::StorageImpl>::reclaim_copy(full.storage().unsafeGetStorageImpl());
  use->device = full.device();
  return use;
}

// shard → the gathered buffer; backward: the buffer's gradient reduce-scattered onto the shard,
// and the buffer freed (the unit's backward is done when its weights' gradients are).
class GatherFn : public torch::autograd::Function<GatherFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& /*shard*/, const at::Tensor& full,
                            c10::intrusive_ptr<Use> use) {
    ctx->saved_data["use"] = c10::IValue::make_capsule(std::move(use));
    return full;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto use = c10::static_intrusive_pointer_cast<Use>(ctx->saved_data["use"].toCapsule());
    free_storage(*use->storage, use->device);
    // The shard's gradient arrives through finish(), not through autograd.
    use->units->arrive(use->order, grads[0]);
    return {at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Identity on a unit's output; backward: gathers the unit again (its forward freed it) before
// autograd reaches the unit's own nodes, and prefetches the unit below.
class RegatherFn : public torch::autograd::Function<RegatherFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::intrusive_ptr<Use> use) {
    ctx->saved_data["use"] = c10::IValue::make_capsule(std::move(use));
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto use = c10::static_intrusive_pointer_cast<Use>(ctx->saved_data["use"].toCapsule());
    refill(*use->storage, use->units->take(use->unit));
    // Unit 0 (the embedding) needs no weights in its backward: nothing below to gather.
    if (use->unit > 1) use->units->prefetch(use->unit - 1);
    use->units->progress();
    return {grads[0], at::Tensor()};
  }
};

class LayerShards final : public models::UnitSource {
 public:
  explicit LayerShards(std::shared_ptr<Units> units) : units_(std::move(units)) {}

  int64_t units() const override { return int64_t(units_->layout.size()); }

  std::vector<std::pair<std::string, at::Tensor>> acquire(int64_t unit, bool head) override {
    EDPO_ARG_CHECK(unit >= 0 && unit < units(), "zero3: unit ", unit, " is not in [0, ", units(), ")");
    if (unit == 0 && !head) units_->drain();
    at::Tensor full = units_->take(unit);
    // The next unit of the forward, while this one computes (not the head: the loss asks for it).
    const int64_t norm =
        int64_t(units_->layout.size()) - (units_->layout.back().name == "zero3.lm_head.weight" ? 2 : 1);
    if (!head && unit + 1 <= norm) units_->prefetch(unit + 1);
    const at::Tensor& shard = units_->shards[size_t(unit)];
    const bool grad = at::GradMode::is_enabled() && shard.requires_grad();
    auto use = use_of(units_, unit, full);
    {
      std::lock_guard<std::mutex> lock(units_->mu);
      units_->current[unit] = use->storage;
    }
    if (grad) {
      auto gather_use = use_of(units_, unit, full);
      gather_use->order = units_->register_use(unit, head);
      full = GatherFn::apply(shard, full, gather_use);
    }
    const UnitLayout& l = units_->layout[size_t(unit)];
    const std::vector<at::Tensor> pieces = full.split_with_sizes(l.sizes);
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (size_t i = 0; i < l.names.size(); ++i) out.emplace_back(l.names[i], pieces[i].view(l.shapes[i]));
    return out;
  }

  at::Tensor release(int64_t unit, const at::Tensor& out) override {
    c10::intrusive_ptr<c10::StorageImpl> storage;
    {
      std::lock_guard<std::mutex> lock(units_->mu);
      auto it = units_->current.find(unit);
      TORCH_CHECK(it != units_->current.end(), "zero3: unit ", unit, " released without acquire");
      storage = std::move(it->second);
      units_->current.erase(it);
    }
    const at::Device device = out.device();
    const bool grad = at::GradMode::is_enabled() && units_->shards[size_t(unit)].requires_grad();
    free_storage(*storage, device);
    if (!grad || unit == 0) return out;
    auto use = c10::make_intrusive<Use>();
    use->units = units_;
    use->unit = unit;
    use->storage = std::move(storage);
    use->device = device;
    return RegatherFn::apply(out, use);
  }

  std::vector<std::pair<std::string, at::Tensor>> borrow(int64_t unit, bool head) override {
    auto out = acquire(unit, head);
    // Nothing here keeps the buffer between steps: a frozen reference's head would otherwise
    // stay gathered at rest (a whole unit, 1 GiB for Llama-3-8B's bf16 head).
    std::lock_guard<std::mutex> lock(units_->mu);
    units_->current.erase(unit);
    return out;
  }

  std::vector<std::string> shard_names() const override {
    std::vector<std::string> names;
    for (const auto& l : units_->layout) names.push_back(l.name);
    return names;
  }
  std::vector<at::Tensor> shard_tensors() const override { return units_->shards; }

  ReducerStats finish() override { return units_->finish(); }

  const std::vector<UnitLayout>& layout() const { return units_->layout; }

  std::shared_ptr<models::UnitSource> frozen_copy() const override {
    auto copy = std::make_shared<Units>();
    copy->group = units_->group;
    copy->layout = units_->layout;
    c10::NoGradGuard no_grad;
    for (const auto& s : units_->shards) copy->shards.push_back(s.detach().clone());
    return std::make_shared<LayerShards>(std::move(copy));
  }

 private:
  std::shared_ptr<Units> units_;
};

// Sibling groups made so far: every rank shards its models in one order, so the n-th is the same group everywhere.
std::atomic<int> scatter_groups{0};

// The units of a whole model, each with its tensors' indices in model.names(), in model order.
std::vector<std::pair<UnitParams, std::vector<size_t>>> whole_units(const models::CausalLM& model) {
  const int64_t L = model.config().num_layers;
  const bool tied = model.config().tie_word_embeddings;
  const size_t n_units = size_t(L + (tied ? 2 : 3));
  std::vector<std::pair<UnitParams, std::vector<size_t>>> units(n_units);
  const auto& names = model.names();
  const auto& tensors = model.tensors();
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    int64_t u = -1;
    if (n == "model.embed_tokens.weight")
      u = 0;
    else if (n == "model.norm.weight")
      u = L + 1;
    else if (n == "lm_head.weight" && !tied)
      u = L + 2;
    else if (n.rfind("model.layers.", 0) == 0)
      u = 1 + std::stoll(n.substr(13));
    EDPO_ARG_CHECK(u >= 0 && u < int64_t(n_units), "zero3: '", n, "' belongs to no gather unit");
    units[size_t(u)].first.names.push_back(n);
    units[size_t(u)].first.shapes.push_back(tensors[i].sizes().vec());
    units[size_t(u)].second.push_back(i);
  }
  for (size_t u = 0; u < n_units; ++u) {
    EDPO_ARG_CHECK(!units[u].second.empty(), "zero3: gather unit ", u, " has no tensors");
    units[u].first.name = u == 0               ? "zero3.model.embed_tokens.weight"
                          : u == size_t(L + 1) ? "zero3.model.norm.weight"
                          : u == size_t(L + 2) ? "zero3.lm_head.weight"
                                               : "zero3.model.layers." + std::to_string(u - 1);
  }
  return units;
}

}  // namespace

std::vector<UnitParams> unit_params(const models::CausalLM& model) {
  std::vector<UnitParams> out;
  if (model.shards()) {
    const auto* shards = dynamic_cast<const LayerShards*>(model.shards().get());
    EDPO_ARG_CHECK(shards != nullptr, "zero3: the model's shards are not gather units");
    for (const auto& l : shards->layout()) out.push_back(l);
  } else {
    for (auto& [params, members] : whole_units(model)) out.push_back(std::move(params));
  }
  return out;
}

std::shared_ptr<models::UnitSource> make_layer_shards(std::shared_ptr<Group> group, const models::CausalLM& model,
                                                      int64_t bucket_bytes) {
  EDPO_ARG_CHECK(group != nullptr, "zero3: a process group is required");
  EDPO_ARG_CHECK(bucket_bytes > 0, "bucketMb: the bytes of reduce-scatters in flight must be > 0, got ", bucket_bytes);
  EDPO_ARG_CHECK(!model.shards(), "zero3: the model is sharded already");
  const auto& tensors = model.tensors();
  const auto whole = whole_units(model);
  const size_t n_units = whole.size();
  std::vector<UnitLayout> layout(n_units);
  std::vector<std::vector<at::Tensor>> members(n_units);
  for (size_t u = 0; u < n_units; ++u) {
    static_cast<UnitParams&>(layout[u]) = whole[u].first;
    for (size_t i : whole[u].second) {
      layout[u].sizes.push_back(tensors[i].numel());
      members[u].push_back(tensors[i]);
    }
  }
  auto units = std::make_shared<Units>();
  units->group = group;
  units->cap_bytes = bucket_bytes;
  // Only a model that trains reduce-scatters; its sibling group connects now, on every rank.
  if (!tensors.empty() && tensors[0].requires_grad())
    units->scatter_group = group->sibling("zero3-scatter-" + std::to_string(scatter_groups.fetch_add(1)));
  const int64_t world = group->size(), rank = group->rank();
  c10::NoGradGuard no_grad;
  for (size_t u = 0; u < n_units; ++u) {
    UnitLayout& l = layout[u];
    int64_t numel = 0;
    std::vector<at::Tensor> flat;
    const at::Tensor& first = members[u][0];
    for (const auto& t : members[u]) {
      EDPO_ARG_CHECK(t.scalar_type() == first.scalar_type() && t.device() == first.device(), "zero3: '", l.names[0],
                     "' and its unit's other tensors must share one dtype and device");
      flat.push_back(t.detach().reshape(-1));
      numel += t.numel();
    }
    l.chunk = (numel + world - 1) / world;
    const int64_t pad = l.chunk * world - numel;
    if (pad > 0) {
      l.sizes.push_back(pad);
      flat.push_back(at::zeros({pad}, first.options()));
    }
    at::Tensor shard = at::cat(flat).narrow(0, rank * l.chunk, l.chunk).clone();
    shard.requires_grad_(first.requires_grad());
    units->shards.push_back(std::move(shard));
  }
  units->layout = std::move(layout);
  return std::make_shared<LayerShards>(std::move(units));
}

}  // namespace edpo::dist
