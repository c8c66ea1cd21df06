// Every device→host read goes through here and is counted (runtime().hostSyncs), on the CPU too:
// on CUDA each one stalls the host until the device catches up, so the count is what a training
// step would wait for. CPU-only eager checks (which never run on a GPU) do not come here.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace edpo {

// How many counted reads happened so far in this process.
int64_t host_syncs();
// Counts one read that the caller does itself (a copy of a whole tensor, a nonzero()).
void count_host_sync();

// One scalar read to the host, counted.
template <typename T>
T read_scalar(const at::Tensor& t) {
  count_host_sync();
  return t.item<T>();
}

}  // namespace edpo
