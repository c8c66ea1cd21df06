// A process group on PyTorch's c10d: the rendezvous store (TCPStore, or FileStore for the
// built-in launcher, which then listens on no socket at all), ProcessGroupGloo (CPU) or
// ProcessGroupNCCL (CUDA builds), and the few collectives data-parallel training needs, each
// over flattened buckets so a model's hundreds of gradients travel in a few large messages.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace edpo::dist {

struct GroupOptions {
  std::string backend;  // "gloo" or "nccl"
  int rank = 0;
  int world_size = 1;
  // Rendezvous: a FileStore at store_path when it is set, else a TCPStore at host:port (rank 0
  // serves it unless tcp_client_only: torchrun's agent already does).
  std::string store_path;
  std::string host;
  int port = 0;
  bool tcp_client_only = false;
  // Where Gloo's own sockets bind: an interface name (GLOO_SOCKET_IFNAME) or an address/hostname.
  std::string gloo_interface;
  std::string gloo_hostname;
  std::chrono::milliseconds timeout{300000};
};

// A collective in flight (Group::start_sum): done() polls, wait() blocks (bounded by the group's
// timeout) and throws the group's message naming this rank.
class Pending {
 public:
  virtual ~Pending() = default;
  virtual bool done() = 0;
  virtual void wait() = 0;
};

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // In place over every tensor: sum (or max), flattened into buckets of about bucket_bytes that
  // are all in flight together; with `average` the sum is divided by the world size.
  virtual void allreduce(const std::vector<at::Tensor>& tensors, bool max, bool average, int64_t bucket_bytes) = 0;
  // Sums every tensor onto rank `root` only (the reduce-scatter of ZeRO-2 when each rank owns whole
  // tensors); other ranks' tensors are left unspecified. Bucketed like allreduce.
  virtual void reduce(const std::vector<at::Tensor>& tensors, int root, bool average, int64_t bucket_bytes) = 0;
  // Copies rank `root`'s tensors into every rank's, bucketed (ZeRO's all-gather of updated shards).
  virtual void broadcast(const std::vector<at::Tensor>& tensors, int root, int64_t bucket_bytes) = 0;
  // [world, ...shape]: every rank's `tensor` (same shape and dtype on all ranks).
  virtual at::Tensor allgather(const at::Tensor& tensor) = 0;
  virtual void barrier() = 0;
  // Starts summing the contiguous `flat` over ranks in place, onto every rank (root < 0: an
  // all-reduce) or onto rank `root` only (a reduce), and returns at once (GradReducer's buckets).
  virtual std::unique_ptr<Pending> start_sum(const at::Tensor& flat, int root) = 0;
  // Starts gathering every rank's `input` into outputs[r] (one per rank, input's shape and dtype),
  // and returns at once (ZeRO-3's prefetched gathers).
  virtual std::unique_ptr<Pending> start_allgather(const at::Tensor& input, std::vector<at::Tensor> outputs) = 0;
  // A second group of the same ranks over the same rendezvous (keys under `prefix`), whose
  // collectives are ordered independently of this one's (every rank must call it, in one order).
  virtual std::shared_ptr<Group> sibling(const std::string& prefix) = 0;
};

// Rendezvous and connect (blocks until every rank has joined or the timeout passes).
std::shared_ptr<Group> create_group(const GroupOptions& options);

// Whether this build has the NCCL backend.
bool nccl_available();

}  // namespace edpo::dist
