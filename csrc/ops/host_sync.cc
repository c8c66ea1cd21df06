#include "host_sync.h"

#include <atomic>

namespace edpo {
namespace {
std::atomic<int64_t> counter{0};
}  // namespace

int64_t host_syncs() { return counter.load(); }
void count_host_sync() { counter.fetch_add(1); }

}  // namespace edpo
