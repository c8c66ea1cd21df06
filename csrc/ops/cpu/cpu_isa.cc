#include "cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

namespace edpo {
namespace cpu {
namespace {

// cpu_supports checks the OS's XSAVE state as well as the CPU's flags. An unknown cap is refused
// by the TypeScript loader (lib/core/native.ts) before any kernel runs.
Isa detect() {
  Isa best = Isa::kBase;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    best = Isa::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    best = Isa::kAvx2;
#endif
  const char* cap = std::getenv("EDPO_CPU_ISA");
  if (cap != nullptr && std::string(cap) == "base") return Isa::kBase;
  if (cap != nullptr && std::string(cap) == "avx2" && best == Isa::kAvx512) return Isa::kAvx2;
  return best;
}

std::atomic<int> last_optimizer{-1};

}  // namespace

Isa isa() {
  static const Isa probed = detect();
  return probed;
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "base";
  }
}

const char* last_optimizer_isa() {
  const int i = last_optimizer.load();
  return i < 0 ? nullptr : isa_name(Isa(i));
}

void note_optimizer_isa(Isa i) { last_optimizer.store(int(i)); }

}  // namespace cpu
}  // namespace edpo
