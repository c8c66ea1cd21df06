// c10d process groups behind edpo::dist::Group (see process_group.h). Only ATen and c10d headers:
// no torch/torch.h.
#include "process_group.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(EDPO_WITH_CUDA) && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <stdexcept>
#include <utility>

#include "../ops/arg_error.h"

namespace edpo::dist {
namespace {

std::shared_ptr<Group> connect(c10::intrusive_ptr<c10d::Store> store, const GroupOptions& o);

// c10::Error messages carry a backtrace after the first lines; keep what a user can act on.
std::string first_line(const std::exception& e) {
  std::string m = e.what();
  const auto cut = m.find("\nException raised from");
  if (cut != std::string::npos) m.resize(cut);
  return m;
}

// Consecutive runs of tensors with one dtype and device, each at most ~bucket_bytes (a tensor
// larger than that is a bucket of its own).
std::vector<std::vector<at::Tensor>> buckets_of(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel() * int64_t(t.element_size());
    const bool fits = !out.empty() && out.back().front().scalar_type() == t.scalar_type() &&
                      out.back().front().device() == t.device() && bytes + n <= bucket_bytes;
    if (!fits) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += n;
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& bucket) {
  if (bucket.size() == 1 && bucket[0].is_contiguous()) return bucket[0].view(-1);
  std::vector<at::Tensor> flat;
  flat.reserve(bucket.size());
  for (const auto& t : bucket) flat.push_back(t.reshape(-1));
  return at::cat(flat);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& bucket) {
  if (bucket.size() == 1 && bucket[0].is_contiguous() && flat.data_ptr() == bucket[0].data_ptr()) return;
  int64_t offset = 0;
  for (const auto& t : bucket) {
    const int64_t n = t.numel();
    t.copy_(flat.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

template <class PG>
class GroupImpl final : public Group {
 public:
  GroupImpl(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<PG> pg, GroupOptions options)
      : store_(std::move(store)),
        pg_(std::move(pg)),
        backend_(options.backend),
        timeout_(options.timeout),
        options_(std::move(options)) {}

  std::shared_ptr<Group> sibling(const std::string& prefix) override {
    return connect(c10::make_intrusive<c10d::PrefixStore>(prefix, store_), options_);
  }

  int rank() const override { return pg_->getRank(); }
  int size() const override { return pg_->getSize(); }
  std::string backend() const override { return backend_; }

  void allreduce(const std::vector<at::Tensor>& tensors, bool max, bool average, int64_t bucket_bytes) override {
    run_buckets("all-reduce", tensors, bucket_bytes, average, [&](std::vector<at::Tensor>& io) {
      c10d::AllreduceOptions o;
      o.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
      o.timeout = timeout_;
      return pg_->allreduce(io, o);
    });
  }

  void reduce(const std::vector<at::Tensor>& tensors, int root, bool average, int64_t bucket_bytes) override {
    check_root(root, "reduce");
    run_buckets("reduce", tensors, bucket_bytes, average, [&](std::vector<at::Tensor>& io) {
      c10d::ReduceOptions o;
      o.rootRank = root;
      o.timeout = timeout_;
      return pg_->reduce(io, o);
    });
  }

  void broadcast(const std::vector<at::Tensor>& tensors, int root, int64_t bucket_bytes) override {
    check_root(root, "broadcast");
    run_buckets("broadcast", tensors, bucket_bytes, false, [&](std::vector<at::Tensor>& io) {
      c10d::BroadcastOptions o;
      o.rootRank = root;
      o.timeout = timeout_;
      return pg_->broadcast(io, o);
    });
  }

  at::Tensor allgather(const at::Tensor& tensor) override {
    std::vector<at::Tensor> input{tensor.contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < size(); ++r) output[0].push_back(at::empty_like(input[0]));
    wait("all-gather", [&] { return pg_->allgather(output, input); });
    return at::stack(output[0]);
  }

  std::unique_ptr<Pending> start_sum(const at::Tensor& flat, int root) override {
    TORCH_CHECK(flat.is_contiguous(), "start_sum: the bucket must be contiguous");
    if (root >= 0) check_root(root, "reduce");
    const char* what = root < 0 ? "all-reduce" : "reduce";
    std::vector<at::Tensor> io{flat};
    try {
      if (root < 0) {
        c10d::AllreduceOptions o;
        o.timeout = timeout_;
        return std::make_unique<InFlight>(this, what, pg_->allreduce(io, o));
      }
      c10d::ReduceOptions o;
      o.rootRank = root;
      o.timeout = timeout_;
      return std::make_unique<InFlight>(this, what, pg_->reduce(io, o));
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  std::unique_ptr<Pending> start_allgather(const at::Tensor& input, std::vector<at::Tensor> outputs) override {
    EDPO_ARG_CHECK(int(outputs.size()) == size(), "start_allgather: ", outputs.size(), " outputs for ", size(),
                   " ranks");
    std::vector<at::Tensor> in{input.contiguous()};
    std::vector<std::vector<at::Tensor>> out{std::move(outputs)};
    try {
      return std::make_unique<InFlight>(this, "all-gather", pg_->allgather(out, in));
    } catch (const std::exception& e) {
      throw failure("all-gather", e);
    }
  }

  void barrier() override {
    wait("barrier", [&] {
      c10d::BarrierOptions o;
      o.timeout = timeout_;
      return pg_->barrier(o);
    });
  }

 private:
  class InFlight final : public Pending {
   public:
    InFlight(const GroupImpl* group, const char* what, c10::intrusive_ptr<c10d::Work> work)
        : group_(group), what_(what), work_(std::move(work)) {}
    bool done() override { return work_->isCompleted(); }
    void wait() override {
      try {
        work_->wait();
      } catch (const std::exception& e) {
        throw group_->failure(what_, e);
      }
    }

   private:
    const GroupImpl* group_;
    const char* what_;
    c10::intrusive_ptr<c10d::Work> work_;
  };

  void check_root(int root, const char* what) const {
    EDPO_ARG_CHECK(root >= 0 && root < size(), what, ": root rank must be in [0, ", size(), "), got ", root);
  }

  // Every bucket's collective is started before the first is waited on, so they overlap.
  template <class Launch>
  void run_buckets(const char* what, const std::vector<at::Tensor>& tensors, int64_t bucket_bytes, bool average,
                   Launch launch) {
    EDPO_ARG_CHECK(bucket_bytes > 0, "bucketBytes: must be > 0, got ", bucket_bytes);
    auto buckets = buckets_of(tensors, bucket_bytes);
    std::vector<std::vector<at::Tensor>> flats(buckets.size());
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    try {
      for (size_t b = 0; b < buckets.size(); ++b) {
        flats[b] = {flatten(buckets[b])};
        works.push_back(launch(flats[b]));
      }
      for (auto& w : works) w->wait();
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
    for (size_t b = 0; b < buckets.size(); ++b) {
      if (average) flats[b][0].div_(size());
      unflatten(flats[b][0], buckets[b]);
    }
  }

  template <class Launch>
  void wait(const char* what, Launch launch) {
    try {
      launch()->wait();
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  std::runtime_error failure(const char* what, const std::exception& e) const {
    return std::runtime_error("rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": the " + what +
                              " failed, so another rank stopped or cannot be reached (" + first_line(e) + ")");
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<PG> pg_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  GroupOptions options_;
};

c10::intrusive_ptr<c10d::Store> make_store(const GroupOptions& o) {
  if (!o.store_path.empty()) return c10::make_intrusive<c10d::FileStore>(o.store_path, o.world_size);
  c10d::TCPStoreOptions t;
  t.port = static_cast<std::uint16_t>(o.port);
  t.isServer = o.rank == 0 && !o.tcp_client_only;
  t.numWorkers = o.world_size;
  t.waitWorkers = false;
  t.timeout = o.timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(o.host, t);
  } catch (const std::exception& e) {
    const std::string where = "MASTER_ADDR " + o.host + " MASTER_PORT " + std::to_string(o.port);
    if (t.isServer)
      throw edpo::ArgumentError("rank 0 cannot serve the rendezvous at " + where +
                                " (is the port in use? choose another MASTER_PORT): " + first_line(e));
    throw std::runtime_error("rank " + std::to_string(o.rank) + " cannot reach the rendezvous at " + where +
                             " within the timeout: " + first_line(e));
  }
}

}  // namespace

namespace {

std::shared_ptr<Group> connect(c10::intrusive_ptr<c10d::Store> store, const GroupOptions& o) {
  try {
    if (o.backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
      if (!o.gloo_interface.empty())
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(o.gloo_interface));
      else if (!o.gloo_hostname.empty())
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.gloo_hostname));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, opts);
      return std::make_shared<GroupImpl<c10d::ProcessGroupGloo>>(store, pg, o);
    }
#if defined(EDPO_WITH_CUDA) && defined(USE_C10D_NCCL)
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = o.timeout;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, opts);
    return std::make_shared<GroupImpl<c10d::ProcessGroupNCCL>>(store, pg, o);
#endif
  } catch (const edpo::ArgumentError&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(
        "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
        ": joining the process group failed (did every rank start, with the same WORLD_SIZE?): " + first_line(e));
  }
  throw std::logic_error("unreachable");
}

}  // namespace

bool nccl_available() {
#if defined(EDPO_WITH_CUDA) && defined(USE_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Group> create_group(const GroupOptions& o) {
  EDPO_ARG_CHECK(o.world_size >= 1, "WORLD_SIZE: must be >= 1, got ", o.world_size);
  EDPO_ARG_CHECK(o.rank >= 0 && o.rank < o.world_size, "RANK: must be in [0, WORLD_SIZE=", o.world_size, "), got ",
                 o.rank);
  EDPO_ARG_CHECK(o.backend == "gloo" || o.backend == "nccl", "--backend: expected gloo or nccl, got '", o.backend, "'");
  EDPO_ARG_CHECK(
      o.backend != "nccl" || nccl_available(),
      "--backend nccl: this build of edpo has no NCCL (a CPU build); use --backend gloo, or build with EDPO_CUDA=1");
  return connect(make_store(o), o);
}

}  // namespace edpo::dist
