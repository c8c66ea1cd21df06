// Module registration only; each Init* lives beside what it exports.
#include <cstdlib>

#include "js_common.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// glibc raises its mmap threshold after the first large free, so later tensor buffers land on
// the brk heap, where freed ones fragment and RSS grows ~1 MB per step of a synchronous training
// loop even when every tensor is disposed. A fixed threshold keeps tensor storage in mmap'd
// blocks that go back to the OS as soon as dispose() (or backward) frees them. Setting
// MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES yourself leaves glibc as you configured it.
void fix_mmap_threshold() {
#if defined(__GLIBC__)
  static const bool done = [] {
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr && std::getenv("GLIBC_TUNABLES") == nullptr)
      mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    return true;
  }();
  (void)done;
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Debian's libtorch starts with one intra-op thread; use the machine (OMP_NUM_THREADS overrides).
  edpo_js::apply_thread_setting();
  fix_mmap_threshold();
  edpo_js::TensorWrap::Init(env, exports);
  edpo_js::InitTensorFactories(env, exports);
  edpo_js::InitOps(env, exports);
  edpo_js::InitIo(env, exports);
  edpo_js::InitRuntime(env, exports);
  edpo_js::InitOptim(env, exports);
  edpo_js::InitModel(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(edpo, Init)
