// Where the bytes are: a counting wrapper around libtorch's CPU allocator (live and peak tensor
// bytes, whichever thread allocates), glibc's view of its heaps (what freed tensors leave behind),
// and the de-duplicated storage bytes of a list of tensors (aliases such as a tied lm_head count
// once). lib/memory.ts turns these into the memory report.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <mutex>
#include <unordered_set>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "js_common.h"

namespace edpo_js {
namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

// Each block carries its size in a header in front of the data, so the data pointer stays the
// context (raw_allocate / raw_deleter keep working) and no table or lock is needed on free.
// 64 bytes keeps the data at the allocator's 64-byte alignment.
constexpr size_t kHeader = 64;

void count(int64_t delta) {
  const int64_t now = live_bytes.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = peak_bytes.load(std::memory_order_relaxed);
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void counted_free(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kHeader;
  const size_t n = *reinterpret_cast<size_t*>(base);
  count(-int64_t(n));
  c10::free_cpu(base);
}

c10::DataPtr counted_alloc(size_t n) {
  char* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
  *reinterpret_cast<size_t*>(base) = n;
  count(int64_t(n));
  void* data = base + kHeader;
  return {data, data, &counted_free, c10::Device(c10::DeviceType::CPU)};
}

// c10::Allocator::allocate is const in libtorch 1.13 and non-const in 2.x: both are defined, neither
// marked `override`, so each libtorch finds the one it declares.
struct CountingCpuAllocator final : public c10::Allocator {
  c10::DataPtr allocate(size_t n) const { return counted_alloc(n); }  // NOLINT(modernize-use-override)
  c10::DataPtr allocate(size_t n) { return counted_alloc(n); }        // NOLINT(modernize-use-override)
  c10::DeleterFnPtr raw_deleter() const override { return &counted_free; }
  // libtorch 2.x declares this pure virtual; 1.13 does not have it (so no `override`).
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
};

// Above the default allocator's priority (0): every CPU tensor made after the addon loads.
void install_counting_allocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    static CountingCpuAllocator allocator;
    c10::SetCPUAllocator(&allocator, 1);
  });
}

// memoryStats() → {tensorBytes, peakTensorBytes, heapBytes, heapFreeBytes, mmapBytes}: the CPU
// tensor bytes live now and at the peak since resetPeakMemory(); glibc's heaps (all arenas), the
// free bytes they hold (retained, still counted in RSS unless trimmed) and its mmap'd blocks.
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("tensorBytes", Napi::Number::New(env, double(live_bytes.load())));
    r.Set("peakTensorBytes", Napi::Number::New(env, double(peak_bytes.load())));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const struct mallinfo2 m = mallinfo2();
    r.Set("heapBytes", Napi::Number::New(env, double(m.arena)));
    r.Set("heapFreeBytes", Napi::Number::New(env, double(m.fordblks)));
    r.Set("mmapBytes", Napi::Number::New(env, double(m.hblkhd)));
#endif
    return r;
  });
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  peak_bytes.store(live_bytes.load());
  return info.Env().Undefined();
}

// storageBytes(tensors) → the bytes of their distinct storages (shared storage counted once).
Napi::Value StorageBytes(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    std::unordered_set<const void*> seen;
    double total = 0;
    for (const auto& t : arg_tensor_list(info[0], "tensors", false)) {
      const c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
      if (seen.insert(s).second) total += double(s->nbytes());
    }
    return Napi::Number::New(info.Env(), total);
  });
}

// trimHeap() gives the free pages glibc's heaps hold back to the OS (malloc_trim).
Napi::Value TrimHeap(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  return info.Env().Undefined();
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  install_counting_allocator();
  export_functions(env, exports, {
                                      {"memoryStats", MemoryStats},
                                      {"resetPeakMemory", ResetPeakMemory},
                                      {"storageBytes", StorageBytes},
                                      {"trimHeap", TrimHeap},
                                  });
}

}  // namespace edpo_js
