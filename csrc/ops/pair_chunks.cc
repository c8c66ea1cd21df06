#include "pair_chunks.h"

#include <algorithm>

namespace edpo {

PairChunkPlan plan_pair_chunks(const at::Tensor& active_host, int64_t pairs, int64_t positions, int64_t chunk) {
  const at::Tensor active = active_host.contiguous();
  const int64_t n = active.size(0), sequences = 2 * pairs;
  const int64_t* ids = active.data_ptr<int64_t>();

  // The ascending ids hold each sequence's rows contiguously: where each one starts.
  std::vector<int64_t> seq_start(sequences + 1, 0);
  for (int64_t k = 0; k < n; ++k) ++seq_start[ids[k] / positions + 1];
  for (int64_t s = 0; s < sequences; ++s) seq_start[s + 1] += seq_start[s];

  PairChunkPlan plan;
  plan.order = at::empty({n}, at::kLong);
  plan.order_sequence = at::empty({n}, at::kLong);
  int64_t* order = plan.order.data_ptr<int64_t>();
  int64_t* order_seq = plan.order_sequence.data_ptr<int64_t>();
  std::vector<int64_t> pair_begin(pairs), pair_end(pairs);
  int64_t pos = 0;
  for (int64_t i = 0; i < pairs; ++i) {
    pair_begin[i] = pos;
    for (const int64_t s : {i, pairs + i})
      for (int64_t k = seq_start[s]; k < seq_start[s + 1]; ++k) {
        order[pos] = ids[k];
        order_seq[pos++] = s;
      }
    pair_end[i] = pos;
  }

  std::vector<int64_t> finished;
  plan.open_ranges.resize(pairs);
  int64_t next_pair = 0;
  for (int64_t begin = 0; begin < n;) {
    PairChunk c;
    c.begin = begin;
    c.end = std::min(begin + chunk, n);
    if (c.end < n) {
      // The pair holding the first row past the chunk (empty pairs end where they begin: skipped).
      const int64_t q = std::upper_bound(pair_end.begin(), pair_end.end(), c.end) - pair_end.begin();
      if (pair_begin[q] < c.end) {
        if (pair_begin[q] > begin) {
          c.end = pair_begin[q];  // q starts the next chunk
        } else {
          c.open = true;  // q is longer than what is left of a chunk: this chunk is all q's
          plan.open_ranges[q].emplace_back(c.begin, c.end);
          plan.any_open = true;
        }
      }
    }
    c.finished_begin = int64_t(finished.size());
    std::vector<int64_t> done;
    for (; next_pair < pairs && pair_end[next_pair] <= c.end; ++next_pair)
      if (pair_end[next_pair] > pair_begin[next_pair]) done.push_back(next_pair);
    for (const int64_t i : done) finished.push_back(i);
    for (const int64_t i : done) finished.push_back(pairs + i);
    c.finished_end = int64_t(finished.size());
    if (!done.empty() && !plan.open_ranges[done.front()].empty()) c.finishes_open_pair = done.front();
    plan.chunks.push_back(c);
    begin = c.end;
  }
  plan.finished_sequences = at::tensor(finished, at::kLong);
  return plan;
}

}  // namespace edpo
