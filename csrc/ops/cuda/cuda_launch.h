// CUDA builds only: a raw launcher's cudaError_t as a c10::Error naming the launcher (the glue in
// cuda_backend.cc and optimizer_cuda.cc).
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

namespace edpo {

inline void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

}  // namespace edpo
