// EDPO_HOST_DEVICE: a function both the host compiler and nvcc build (the per-pair math, the AdamW
// element), so the CPU tests run the arithmetic the CUDA kernels run.
#pragma once

#if defined(__CUDACC__)
#define EDPO_HOST_DEVICE __host__ __device__
#else
#define EDPO_HOST_DEVICE
#endif
