// On CPUs without the instruction set of slot EDPO_CPU_ISA (non-x86 builds), that slot reuses the
// baseline kernels, so the dispatcher's table is complete on every architecture.
#include "row_kernels.h"

#ifndef EDPO_CPU_ISA
#error "define EDPO_CPU_ISA before including row_kernels_alias.h"
#endif

namespace edpo {
namespace cpu {
namespace EDPO_CPU_ISA {
template <typename T, typename Acc>
RowKernels<T, Acc> kernels() {
  return base::kernels<T, Acc>();
}
EDPO_INSTANTIATE_ROW_KERNELS
}  // namespace EDPO_CPU_ISA
}  // namespace cpu
}  // namespace edpo
