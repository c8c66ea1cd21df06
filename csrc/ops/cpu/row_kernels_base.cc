// Row kernels for the baseline x86-64 / any-CPU instruction set.
#define EDPO_CPU_ISA base
#define EDPO_CPU_VECTOR_BYTES 16
#include "row_kernels_impl.h"
