// runtime(): what this addon runs on, for edpo.runtime() / `edpo doctor` and benchmarks; setThreads.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>
#include <ATen/Context.h>

#include "js_common.h"
#include "js_op_table.h"
#include "ops/host_sync.h"
#include "ops/cpu/cpu_isa.h"
#include "ops/backend.h"

#ifndef EDPO_BUILD_SYSTEM
#define EDPO_BUILD_SYSTEM "unknown"
#endif

namespace edpo_js {

void declare_runtime_ops(std::vector<OpDecl>& ops) {
  using K = ArgKind;
  using R = ResultKind;
  ops.push_back(
      {"runtime",
       "What this addon runs on.",
       {},
       {{"libtorchVersion", false, "The libtorch it was built against.", R::String},
        {"cudaBuild", false, "Built with the CUDA kernels.", R::Boolean},
        {"cudaAvailable", false, "A CUDA device is usable.", R::Boolean},
        {"cpuKernels", false,
         "Instruction set of the CPU kernels: 'avx512', 'avx2' or 'base' (cap it with EDPO_CPU_ISA=base|avx2).",
         R::String},
        {"optimizerKernels", false,
         "Instruction set the optimizer's last CPU update ran with ('none' before any): the same probe and cap.",
         R::String},
        {"threads", false, "libtorch's intra-op threads.", R::Number},
        {"buildSystem", false, "'node-gyp' or 'cmake-js'.", R::String},
        {"parallelInfo", false, "libtorch's account of its thread pools.", R::String},
        {"hostSyncs", false,
         "Device→host reads so far (Tensor.item/toArray, nonzero(), the clip's norm, ...): each one a sync on CUDA.",
         R::Number}},
       [](const OpArgs&) -> OpResults {
         const char* optimizer = edpo::cpu::last_optimizer_isa();
         return {TORCH_VERSION,
                 edpo::find_backend(c10::DeviceType::CUDA) != nullptr,
                 at::hasCUDA(),
                 edpo::cpu::isa_name(edpo::cpu::isa()),
                 optimizer != nullptr ? optimizer : "none",
                 double(at::get_num_threads()),
                 EDPO_BUILD_SYSTEM,
                 at::get_parallel_info(),
                 double(edpo::host_syncs())};
       },
       Call::Positional,
       Mode::Sync,
       Returns::Fields,
       "NativeRuntime"});
  ops.push_back({"setThreads",
                 "Sets libtorch's intra-op threads, on this thread and on every worker before it runs an op.",
                 {{"threads", K::Integer, "The thread count.", 0, 1}},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   set_configured_threads(int(a.integer("threads")));
                   apply_thread_setting();
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
}

}  // namespace edpo_js
