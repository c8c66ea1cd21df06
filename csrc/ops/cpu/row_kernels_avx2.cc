// Row kernels built for AVX2 + FMA (8 fp32 lanes); chosen at run time when the CPU has them.
// The standard headers come first so that only our own code is compiled for the wider target.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "row_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define EDPO_CPU_ISA avx2
#define EDPO_CPU_VECTOR_BYTES 32
#include "row_kernels_impl.h"
#pragma GCC pop_options
#else
#define EDPO_CPU_ISA avx2
#include "row_kernels_alias.h"
#endif
