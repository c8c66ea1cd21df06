// The one CPU instruction-set probe: the widest set both the CPU and the OS support, capped by
// EDPO_CPU_ISA=base|avx2. Every CPU kernel that has per-ISA builds (the row kernels, the
// optimizer's update) dispatches on it, so a capped run caps all of them.
#pragma once

namespace edpo {
namespace cpu {

enum class Isa { kBase, kAvx2, kAvx512 };

// Probed once, on first use.
Isa isa();
// "base", "avx2" or "avx512".
const char* isa_name(Isa isa);

// The ISA that the optimizer's last CPU update ran with (nullptr before any): the test that the
// cap reaches every kernel reads it.
const char* last_optimizer_isa();
void note_optimizer_isa(Isa isa);

}  // namespace cpu
}  // namespace edpo
