// What a step's gradient reduction did on this rank: GradReducer's buckets (ZeRO-0/1/2) or
// LayerShards' unit reduce-scatters (ZeRO-3), one struct so the trainer reads both alike.
#pragma once
#include <cstdint>

namespace edpo::dist {

struct ReducerStats {
  // Collectives: buckets, or (ZeRO-3) the units' reduce-scatters of the step.
  int64_t buckets = 0;
  // Started during the backward, and how many had started when the backward's last gradient
  // arrived: > 0 means a collective ran while autograd still worked.
  int64_t started_in_backward = 0;
  int64_t started_before_last_hook = 0;
  // Bytes of this rank's gradients and buckets at their peak over the step's reduction.
  int64_t peak_gradient_bytes = 0;
  // Bytes of the collectives started and not yet waited for, at their peak.
  int64_t peak_in_flight_bytes = 0;
};

}  // namespace edpo::dist
