// From per-row statistics to the pairs and back (spec §3–§5): the per-sequence sums of the
// row_stats.h block, the per-pair half of ε-DPO over them (step decisions, per-pair β_i, the loss
// and the reward metrics: pair_math.h's formula over every pair, on the device's backend), and
// dL/dS per sequence back to per-row gradient weights; the checks of the labels and mask, and the
// chunk plan of whole pairs. Shared by the op on logits, the chunked op and sequence_stats.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "math/pair_math.h"

namespace edpo {

// Per-sequence masked sums over the 2B stacked rows (spec §3). All [2B] float64.
// `policy` carries the autograd graph back to the policy logits; the rest carry none.
struct SequenceLogps {
  at::Tensor policy;       // S
  at::Tensor reference;    // S_ref
  at::Tensor plus;         // S+
  at::Tensor minus;        // S-
  at::Tensor logit_sum;    // Σ_t mask·Σ_j a_j  (mean-logit metric)
  at::Tensor token_count;  // Σ_t mask
  int64_t vocab = 0;       // V, for the mean-logit metric
  at::Tensor input_error;  // float64 scalar: check_labels_and_mask's flag (0 when the inputs are valid)
  // --criterion-precision bf16 only: [kNumCriterionRows, 2B] float64 bf16-rounded sums of the policy,
  // plus and minus rows (bf16_criterion.h), from which the step decision is taken. Else empty.
  at::Tensor criterion;
};

// Per-sequence sums from a [kNumRowStats, N] row-stats tensor and the [N] row weights (the mask).
SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences,
                                  int64_t vocab);
// dL/d(row log-prob) for each of the N rows from dL/dS per sequence: g_seq · mask, in `dtype`.
at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences,
                                    at::ScalarType dtype);

// Upper bound on β: larger values only turn σ(β·z) into a step function, and overflow the float32 loss.
constexpr double kMaxBeta = 1e6;

struct EpsilonDpoOptions {
  double beta = 0.1;
  double epsilon = 0.01;
  double label_smoothing = 0.0;
  // The step decision in the authors' eager bf16 numerics (bf16_criterion.h) instead of fp32/fp64.
  bool bf16_criterion = false;
};

// Column names as the TypeScript API spells them, in PairColumn order.
extern const char* const kPairColumnNames[kNumPairColumns];

struct EpsilonDpoOutput {
  at::Tensor loss;    // scalar mean of L_i, differentiable w.r.t. the policy
  at::Tensor record;  // [B, kNumPairColumns] float64, no gradient
};

// β, ε and ℓ in range; ArgumentError naming the first that is not.
void check_options(const EpsilonDpoOptions& options);
void check_epsilon(double epsilon);

// What the pair math gives for the pairs of a SequenceLogps (chosen sequences, then rejected).
struct PairLoss {
  at::Tensor loss;       // scalar mean of L_i over these pairs, in the requested dtype; no graph
  at::Tensor record;     // [B, kNumPairColumns] float64
  at::Tensor grad_sums;  // [2B] float64: dL/dS, L the mean loss over `total_pairs` pairs
};

// Steps, per-pair β, the loss, the record and dL/dS from per-sequence sums (spec §4–§5), with no
// autograd graph. `total_pairs` (≥ the pairs of `seq`) is what the gradient's mean divides by.
PairLoss pair_loss(const SequenceLogps& seq, const EpsilonDpoOptions& options, at::ScalarType loss_dtype,
                   int64_t total_pairs);

// The same as a differentiable loss: gradient through seq.policy (S of the policy) only. `loss_dtype`
// is the loss's dtype (float32, or float64 for float64 logits); the record is always float64.
EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType loss_dtype);

// Labels [rows,T] int64 in [0,V) where the mask is on; mask [rows,T] bool/int/float, finite; both on `device`.
// `source` names the tensor whose shape they must match in messages. Throws ArgumentError for what
// it can see without reading the device. Returns a float64 scalar flag on `device`: 0 on the CPU
// (which checks the values eagerly), the kInputError* bits elsewhere (checked where results are read).
at::Tensor check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t positions,
                                 int64_t vocab, const c10::Device& device, const char* source);

// The chunk plan of the ε-DPO op on hidden states (chunked_linear.cc): its completion tokens in
// pair-major order (pair i's chosen rows, then its rejected rows, then pair i+1's), cut into chunks of at most
// `chunk` rows that end on a pair boundary wherever a pair fits. Once a chunk's rows are through
// the fused pass, every pair that ends in it has its sums, hence its coefficient dL/dS, so the
// chunk's gradient is produced while its logits are still there. A pair longer than a chunk spans
// "open" chunks that hold only its rows; their gradient waits, in unit scale, for the pair's end.
// Built on the host from the active rows (no device read when they are host-side already).
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
  at::Tensor order;           // [n] int64 (host): the active flat rows, pair-major
  at::Tensor order_sequence;  // [n] int64 (host): the sequence (0..2B-1) of each row of `order`
  at::Tensor
      finished_sequences;  // int64 (host): per chunk, its finished pairs' chosen sequences, then their rejected ones
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

// The sums (spec §3) of the sequences `seqs` (chosen ones first) from the rows' statistics.
SequenceLogps sums_of(const at::Tensor& stats, const at::Tensor& criterion_rows, const at::Tensor& row_weight,
                      const at::Tensor& seqs, int64_t positions, int64_t vocab);

}  // namespace edpo
