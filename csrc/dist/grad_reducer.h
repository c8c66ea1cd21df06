// Gradients reduced during the backward, in buckets, as DDP's Reducer and DeepSpeed's ZeRO-2 do:
// a post-hook on each parameter's AccumulateGrad node marks its gradient ready; a bucket whose
// gradients are all ready is flattened and its collective started at once, while autograd goes
// on with the layers below. Buckets are consecutive parameters in reverse registration order
// (the order the backward produces them), about bucket_bytes each, one dtype, device and owner.
//   - No owners (ZeRO-0/1): every bucket is all-reduced; finish() averages it and gives each
//     parameter its gradient back, as a view of the bucket.
//   - Owners (ZeRO-2): each bucket is reduced onto the rank that owns its parameters. A rank's
//     non-owned gradients are freed when their bucket starts, and the bucket itself once its reduce
//     has completed (at most kNonOwnedInFlight of them wait at a time), so a rank holds its own 2Ψ/N
//     of gradients plus the buckets in flight.
// Buckets start strictly in order (bucket b only after b-1), so every rank issues the same
// collectives in the same order even when its backward reaches the parameters in another order, or
// does not reach some of them (an unused parameter, a rank with no rows in the micro-batch):
// finish() starts what the hooks did not, with zeros for missing gradients.
// Gradient accumulation: only an armed backward reduces (arm() before the last micro-batch's
// backward); the others accumulate locally, like DDP's no_sync.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "process_group.h"
#include "reducer_stats.h"

namespace edpo::dist {

class GradReducer {
 public:
  // `owners`: empty (all-reduce), or each parameter's owner rank (reduce onto it).
  GradReducer(std::shared_ptr<Group> group, std::vector<at::Tensor> params, int64_t bucket_bytes,
              std::vector<int> owners);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // The next backward reduces (the last micro-batch of an optimizer step).
  void arm();
  // After that backward: starts the buckets it did not, waits for every one, and leaves each
  // parameter this rank owns its averaged gradient (the others' undefined).
  ReducerStats finish();
  // Parameter indices per bucket, in launch order.
  std::vector<std::vector<int64_t>> bucket_indices() const;
  // Unhooks the parameters' accumulators and drops every tensor the reducer holds (the parameters,
  // the buckets) now: a disposed trainer's memory goes without waiting for the collector. Any later
  // arm/finish is an error; a second release does nothing.
  void release();

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace edpo::dist
