// Where the bytes are: the addon's CPU allocator, which counts live and peak tensor bytes
// (whichever thread allocates) and keeps freed large blocks in a bounded cache for reuse (Linux),
// glibc's view of its heaps (what freed small tensors leave behind),
// and the de-duplicated storage bytes of a list of tensors (aliases such as a tied lm_head count
// once). lib/memory.ts turns these into the memory report.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_set>
#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "js_common.h"
#include "js_op_table.h"
#include "ops/backend.h"

namespace edpo_js {
namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};
// The peak of live tensor bytes over the process's life (resetPeakMemory leaves it): the bound of
// the block cache below.
std::atomic<int64_t> high_water{0};

// Each block carries a header in front of the data: the data pointer stays the context
// (raw_allocate / raw_deleter keep working) and free needs no table to learn the size or the path
// the block came from. 64 bytes keeps the data at the allocator's 64-byte alignment.
constexpr size_t kHeader = 64;
enum class Path : uint32_t { kHeap = 0x68656170, kMapped = 0x6d617070 };
struct Header {
  size_t bytes;    // what the tensor asked for (the counted bytes)
  Path path;       // c10::alloc_cpu (glibc) or mmap (the cached large blocks)
  size_t length;   // kMapped: the mapping's length (page-rounded, header included)
  uint64_t freed;  // kMapped, while cached: when it was freed (the eviction order)
};
static_assert(sizeof(Header) <= kHeader, "the header fits in front of the data");

void count(int64_t delta) {
  const int64_t now = live_bytes.fetch_add(delta, std::memory_order_relaxed) + delta;
  for (std::atomic<int64_t>* mark : {&peak_bytes, &high_water}) {
    int64_t peak = mark->load(std::memory_order_relaxed);
    while (now > peak && !mark->compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
}

#if defined(__linux__)
#define EDPO_BLOCK_CACHE 1
// Large blocks (activations, logits, gradients) bypass glibc: each is its own mapping, and a freed
// one waits in a cache keyed by its length for the next request of that length. A training loop
// repeats its shapes step after step, so after the first step its large tensors come from the
// cache without page faults or the kernel's zeroing; and unlike glibc's heaps, which keep what a
// step freed wherever it lies, the cache is bounded: mapped-but-free bytes + live tensor bytes never
// exceed the process's peak of live tensor bytes by more than 1/16, so the tensors' share of RSS
// follows that peak (what `edpo plan` predicts). Small blocks stay with glibc, whose bins are fast for them.
// 256 KiB, by measurement on the 33M llama's step (bench/RESULTS.md, the tensor block cache): 64 KiB
// gives the same faults, time and RSS with 4× the mappings; from 1 MiB up the blocks left to glibc
// hold RSS above the plan again (+24% at 1 MiB, +117% at 4 MiB).
constexpr size_t kLargeBlock = 256 * 1024;
constexpr size_t kHugePage = 2 * 1024 * 1024;

size_t page_size() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}

class BlockCache {
 public:
  // A block of `length` bytes: a cached one of that length, else a new mapping while the bound
  // allows it, else one resized from the cached block nearest in length (mremap keeps its pages:
  // no faults for what it already had). Returns nullptr when the kernel refuses (the caller
  // throws c10's out-of-memory error).
  Header* take(size_t n, size_t length) {
    std::lock_guard<std::mutex> lock(mu_);
    slack_ += int64_t(length - n);
    // The most recently freed block of that length: its pages are the likeliest still in cache.
    auto after = by_length_.upper_bound({length, UINT64_MAX});
    if (after != by_length_.begin() && std::prev(after)->first.first == length) {
      hits_++;
      return remove(std::prev(after));
    }
    misses_++;
    // The bound: what tensors hold (live bytes + the pages their mappings round up to + cached)
    // + length ≤ max(high water × 17/16, live + length). A new mapping while that holds, so the
    // cache fills up to every length a step asks for; past it, the cached block nearest in length
    // is resized, and the oldest others are released until the bound holds. The 1/16 above the
    // peak: a step's lengths peak at different times, so their per-length peaks add up to more
    // than the peak of their sum; with no headroom every step re-made ~70–160 blocks from other
    // lengths and faulted their new pages (bf16 33M step 3–17% slower than glibc's heap); 1/16
    // leaves 14 (fp32) and 80 (bf16) misses of ~500 and ~1000 requests (bench/RESULTS.md, the
    // allocator's block cache). Oldest first, not largest first: a
    // forward asks again, in order, for what the last backward freed, so a block that sat unasked
    // through a whole phase is the least likely to be asked for; releasing the largest would drop
    // the logits-sized blocks that every step needs.
    const int64_t live = live_bytes.load(std::memory_order_relaxed);
    const int64_t high = high_water.load(std::memory_order_relaxed);
    const int64_t limit = std::max(high + high / 16, live + int64_t(length));
    int64_t resident = live + slack_ - int64_t(length - n) + cached_ + int64_t(length);
    Header* reuse = resident <= limit ? nullptr : nearest(length);
    if (reuse != nullptr) resident -= int64_t(reuse->length);  // taken from the cache and resized
    while (resident > limit && !by_age_.empty()) {
      auto oldest = by_age_.begin();
      Header* h = oldest->second;
      if (h == reuse) {
        if (by_age_.size() == 1) break;
        h = std::next(oldest)->second;
      }
      resident -= int64_t(h->length);
      remove(by_length_.find({h->length, h->freed}));
      unmap(h);
    }
    if (reuse != nullptr) {
      remove(by_length_.find({reuse->length, reuse->freed}));
      void* moved = mremap(reuse, reuse->length, length, MREMAP_MAYMOVE);
      if (moved != MAP_FAILED) {
        resized_++;
        if (length >= kHugePage) madvise(moved, length, MADV_HUGEPAGE);  // grown past 2 MiB
        Header* h = static_cast<Header*>(moved);
        h->length = length;
        return h;
      }
      unmap(reuse);
    }
    void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      slack_ -= int64_t(length - n);  // nothing was allocated
      return nullptr;
    }
    // Transparent huge pages where the kernel leaves them to madvise: one fault maps 2 MiB rather
    // than 4 KiB (the 33M llama's step: ~45% fewer page faults, ~2% faster; RSS unchanged).
    if (length >= kHugePage) madvise(p, length, MADV_HUGEPAGE);
    Header* h = static_cast<Header*>(p);
    h->length = length;
    return h;
  }

  void give(Header* h) {
    std::lock_guard<std::mutex> lock(mu_);
    slack_ -= int64_t(h->length - h->bytes);
    h->freed = ++clock_;
    by_length_.emplace(std::make_pair(h->length, h->freed), h);
    by_age_.emplace(h->freed, h);
    cached_ += int64_t(h->length);
  }

  struct Stats {
    int64_t cached;
    uint64_t hits, misses, resized;
  };
  Stats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {cached_, hits_, misses_, resized_};
  }

 private:
  using ByLength = std::map<std::pair<size_t, uint64_t>, Header*>;

  Header* remove(ByLength::iterator it) {
    Header* h = it->second;
    by_age_.erase(h->freed);
    by_length_.erase(it);
    cached_ -= int64_t(h->length);
    return h;
  }

  // The cached block whose length is nearest `length` (the fewest pages to fault in or give back).
  Header* nearest(size_t length) {
    auto above = by_length_.lower_bound({length, 0});
    Header* best = above != by_length_.end() ? above->second : nullptr;
    if (above != by_length_.begin()) {
      Header* below = std::prev(above)->second;
      if (best == nullptr || length - below->length < best->length - length) best = below;
    }
    return best;
  }

  static void unmap(Header* h) { munmap(h, h->length); }

  std::mutex mu_;
  ByLength by_length_;                  // (length, when freed) → block
  std::map<uint64_t, Header*> by_age_;  // when freed → block: the eviction order
  int64_t cached_ = 0;                  // bytes mapped by cached blocks
  int64_t slack_ = 0;                   // bytes live mapped blocks hold beyond what their tensors asked for
  uint64_t clock_ = 0, hits_ = 0, misses_ = 0, resized_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: tensors may be freed at exit
  return *cache;
}
#endif

void counted_free(void* data) {
  if (data == nullptr) return;
  Header* h = reinterpret_cast<Header*>(static_cast<char*>(data) - kHeader);
  count(-int64_t(h->bytes));
#if defined(EDPO_BLOCK_CACHE)
  if (h->path == Path::kMapped) return block_cache().give(h);
#endif
  c10::free_cpu(h);
}

c10::DataPtr counted_alloc(size_t n) {
  Header* h = nullptr;
#if defined(EDPO_BLOCK_CACHE)
  if (n >= kLargeBlock) {
    const size_t page = page_size();
    const size_t length = (n + kHeader + page - 1) / page * page;
    h = block_cache().take(n, length);
    // c10's own message for a failed CPU allocation, so callers see the usual out-of-memory error.
    TORCH_CHECK(h != nullptr, "DefaultCPUAllocator: can't allocate memory: you tried to allocate ", n, " bytes.");
    h->path = Path::kMapped;
  }
#endif
  if (h == nullptr) {
    h = static_cast<Header*>(c10::alloc_cpu(n + kHeader));
    h->path = Path::kHeap;
  }
  h->bytes = n;
  count(int64_t(n));
  void* data = reinterpret_cast<char*>(h) + kHeader;
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

// Below this many free bytes in glibc's heaps, trimHeap() leaves them: malloc_trim walks every
// free chunk and madvises its pages (0.1-0.9 ms per step of the tiny test llama with 2.5-13 MB
// free, up to 9% of its step, measured with --profile-steps), while mallinfo2 only sums the bins
// (~0.01 ms). What stays is bounded by this, not growing from step to step.
constexpr size_t kTrimFreeBytes = size_t(8) << 20;

// Gives the free pages glibc's heaps hold back to the OS (malloc_trim) once they add up to
// kTrimFreeBytes.
void trim_heap() {
#if defined(__GLIBC__)
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
  if (mallinfo2().fordblks < kTrimFreeBytes) return;
#endif
  malloc_trim(0);
#endif
}

// The bytes of the tensors' distinct storages (shared storage counted once).
double storage_bytes(const std::vector<at::Tensor>& tensors) {
  std::unordered_set<const void*> seen;
  double total = 0;
  for (const auto& t : tensors) {
    const c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
    if (seen.insert(s).second) total += double(s->nbytes());
  }
  return total;
}

// The CPU tensor bytes live now and at the peak since resetPeakMemory(); the block cache (bytes
// mapped by freed large blocks, and how requests were served); glibc's heaps (all arenas), the
// free bytes they hold (retained, still counted in RSS unless trimmed) and its mmap'd blocks (the
// large tensor blocks are not among them: the cache maps those). Absent fields: not on this build.
OpResults memory_stats() {
  OpResults r(9);
  r[0] = double(live_bytes.load());
  r[1] = double(peak_bytes.load());
#if defined(EDPO_BLOCK_CACHE)
  const BlockCache::Stats c = block_cache().stats();
  r[2] = double(c.cached);
  r[3] = double(c.hits);
  r[4] = double(c.misses);
  r[5] = double(c.resized);
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  r[6] = double(m.arena);
  r[7] = double(m.fordblks);
  r[8] = double(m.hblkhd);
#endif
  return r;
}

// One device's tensor bytes (live, peak) and what its allocator holds: the counting allocator
// above for the CPU (holding its block cache besides the live bytes), the device's own allocator
// elsewhere (CUDA's caching allocator, through the backend table), so that a GPU step's memory can be
// measured as the CPU's is.
OpResults device_memory(const c10::Device& device) {
  OpResults r(4);
  if (device.is_cpu()) {
    r[0] = double(live_bytes.load());
    r[1] = double(peak_bytes.load());
#if defined(EDPO_BLOCK_CACHE)
    r[2] = double(live_bytes.load()) + double(block_cache().stats().cached);
#endif
    return r;
  }
  const edpo::Backend& b = edpo::backend_for(device, "device");
  TORCH_CHECK(b.memory != nullptr, "device: the ", b.name, " backend keeps no allocator counts");
  const edpo::DeviceMemory m = b.memory(device.has_index() ? device.index() : c10::DeviceIndex(-1));
  r[0] = m.tensors;
  r[1] = m.peak_tensors;
  r[2] = m.reserved;
  r[3] = m.peak_reserved;
  return r;
}

void reset_device_peak(const c10::Device& device) {
  if (device.is_cpu()) {
    peak_bytes.store(live_bytes.load());
    return;
  }
  const edpo::Backend& b = edpo::backend_for(device, "device");
  TORCH_CHECK(b.reset_memory_peak != nullptr, "device: the ", b.name, " backend keeps no allocator counts");
  b.reset_memory_peak(device.has_index() ? device.index() : c10::DeviceIndex(-1));
}

}  // namespace

void InitMemory(Napi::Env, Napi::Object) { install_counting_allocator(); }

void declare_memory_ops(std::vector<OpDecl>& ops) {
  using R = ResultKind;
  const auto number = [](const char* name, bool optional, const char* doc) {
    return ResultDecl{name, optional, doc, R::Number};
  };
  ops.push_back(
      {"memoryStats",
       "CPU tensor bytes (counted by the addon's allocator) and glibc's heaps; the heap fields are absent without "
       "glibc ≥ 2.33.",
       {},
       {number("tensorBytes", false, "CPU tensor bytes live now."),
        number("peakTensorBytes", false, "Their peak since resetPeakMemory()."),
        number("cachedBytes", true,
               "Linux: bytes of freed large tensor blocks the addon's allocator keeps mapped for reuse (bounded by "
               "the peak of live tensor bytes)."),
        number("cacheHits", true,
               "Linux: large-block requests served by a cached block of the same length (cacheMisses: those that "
               "were not: resized from the nearest cached block, or newly mapped)."),
        number("cacheMisses", true, "Linux: large-block requests no cached block of the same length served."),
        number("cacheResized", true,
               "Linux: misses served by resizing the cached block nearest in length (mremap keeps its pages)."),
        number("heapBytes", true, "glibc: the bytes of its heaps (all arenas)."),
        number("heapFreeBytes", true, "glibc: the free bytes its heaps hold (still counted in RSS unless trimmed)."),
        number("mmapBytes", true, "glibc: its mmap'd blocks.")},
       [](const OpArgs&) { return memory_stats(); },
       Call::Positional,
       Mode::Sync,
       Returns::Fields,
       "NativeMemoryStats"});
  ops.push_back({"resetPeakMemory",
                 "Starts a new peak of live CPU tensor bytes (memoryStats().peakTensorBytes) from the bytes live now.",
                 {},
                 {},
                 [](const OpArgs&) -> OpResults {
                   peak_bytes.store(live_bytes.load());
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  const ArgDecl device{"device", ArgKind::OptionalDevice,
                       "'cpu' (default), 'cuda' or 'cuda:N' (cuda: the current device)."};
  ops.push_back(
      {"deviceMemory",
       "One device's tensor bytes as its allocator counts them: the addon's counting allocator on the CPU "
       "(memoryStats), CUDA's caching allocator on a GPU.",
       {device},
       {number("tensorBytes", false, "Bytes of the device's tensors live now."),
        number("peakTensorBytes", false, "Their peak since resetDeviceMemoryPeak (on the CPU: resetPeakMemory)."),
        number("reservedBytes", true, "Bytes the allocator holds: live tensors and its cache (CPU: Linux only)."),
        number("peakReservedBytes", true, "GPU: their peak since resetDeviceMemoryPeak.")},
       [](const OpArgs& a) -> OpResults {
         return device_memory(a.optional_device("device").value_or(c10::Device(c10::DeviceType::CPU)));
       },
       Call::Positional,
       Mode::Sync,
       Returns::Fields,
       "NativeDeviceMemory"});
  ops.push_back(
      {"resetDeviceMemoryPeak",
       "Starts a new peak of the device's tensor bytes (deviceMemory().peakTensorBytes) from the bytes live now.",
       {device},
       {},
       [](const OpArgs& a) -> OpResults {
         reset_device_peak(a.optional_device("device").value_or(c10::Device(c10::DeviceType::CPU)));
         return {};
       },
       Call::Positional,
       Mode::Sync,
       Returns::Value});
  ops.push_back({"storageBytes",
                 "The bytes of the tensors' distinct storages (aliases such as a tied lm_head count once).",
                 {{"tensors", ArgKind::TensorList, "The tensors."}},
                 {number("bytes", false, "Their storages' bytes.")},
                 [](const OpArgs& a) -> OpResults { return {storage_bytes(a.list("tensors"))}; },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back({"trimHeap",
                 "Gives the free pages glibc's heaps hold back to the OS once they add up to 8 MiB.",
                 {},
                 {},
                 [](const OpArgs&) -> OpResults {
                   trim_heap();
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
}

}  // namespace edpo_js
