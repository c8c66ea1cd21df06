// The chunk plan of the chunked ε-DPO op (chunked_linear.cc): its completion tokens in pair-major
// order (pair i's chosen rows, then its rejected rows, then pair i+1's), cut into chunks of at most
// `chunk` rows that end on a pair boundary wherever a pair fits. Once a chunk's rows are through
// the fused pass, every pair that ends in it has its sums, hence its coefficient dL/dS, so the
// chunk's gradient is produced while its logits are still there. A pair longer than a chunk spans
// "open" chunks that hold only its rows; their gradient waits, in unit scale, for the pair's end.
// Built on the host from the active rows (no device read when they are host-side already).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace edpo {

struct PairChunk {
  int64_t begin = 0, end = 0;  // rows [begin, end) of PairChunkPlan::order
  // Pairs whose last row lies in this chunk: [finished_begin, finished_end) of finished_sequences.
  int64_t finished_begin = 0, finished_end = 0;
  // All rows belong to a pair that continues past this chunk (the open pair).
  bool open = false;
  // The pair this chunk finishes after it spanned earlier open chunks, else -1.
  int64_t finishes_open_pair = -1;
};

struct PairChunkPlan {
  at::Tensor order;               // [n] int64 (host): the active flat rows, pair-major
  at::Tensor order_sequence;      // [n] int64 (host): the sequence (0..2B-1) of each row of `order`
  at::Tensor finished_sequences;  // int64 (host): per chunk, its finished pairs' chosen sequences, then their rejected ones
  std::vector<PairChunk> chunks;
  // For each pair that spans open chunks: the [begin, end) row ranges of those chunks, keyed by pair.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> open_ranges;
  bool any_open = false;
  // How the chunked op treats open chunks: false, their gradient goes to unit-scale accumulators;
  // true, it is recomputed (policy logits again) once the pair ends. Chosen by the op.
  bool recompute_open = false;
};

// `active_host`: ascending flat row ids (row = sequence·positions + t) on the CPU, of 2·pairs sequences.
PairChunkPlan plan_pair_chunks(const at::Tensor& active_host, int64_t pairs, int64_t positions, int64_t chunk);

}  // namespace edpo
