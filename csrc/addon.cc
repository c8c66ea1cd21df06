// Module registration only; each Init* lives beside what it exports.
#include "js_common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Debian's libtorch starts with one intra-op thread; use the machine (OMP_NUM_THREADS overrides).
  edpo_js::apply_thread_setting();
  // First: the counting CPU allocator must see the tensors the other Init* make.
  edpo_js::InitMemory(env, exports);
  edpo_js::TensorWrap::Init(env, exports);
  edpo_js::InitOps(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(edpo, Init)
