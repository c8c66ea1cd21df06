// Chunked fused-linear ε-DPO: for each chunk of completion tokens, lm_head matmuls give both
// models' logits, the fused row pass reduces them to per-row statistics, and the chunk's logits
// are dropped. Prompt tokens (mask 0) never reach the matmul.
//
// The gradient is produced in the forward, from the logits already there (Liger's approach),
// instead of recomputing each chunk's policy logits in a backward pass. A row's logit gradient is
// dL/dS of its sequence times (onehot − softmax), and dL/dS needs the sums of the whole pair
// (S, S±, S_ref: the step decision, β_i and the margin), so chunks hold whole pairs
// (the chunk plan below): when a chunk's fused pass is done, the pairs that end in it have their dL/dS
// (pair_loss's dL/dS on their [2m] sums) and the chunk's ∂h rows, ∂W and
// ∂b follow at once. A pair longer than a chunk cannot wait in memory as logits; but ε-DPO's loss
// sees a pair only through ρ = S(chosen) − S(rejected), so dL/dS is +γ on its chosen rows and −γ
// on its rejected rows, one unknown scalar per pair. Its open chunks add their ±weight-scaled
// gradient to an accumulator of ∂W's shape (and ∂b's) and leave their ∂h rows unscaled; the chunk
// where the pair ends adds γ·accumulator to ∂W and scales those ∂h rows. Exact, no recompute.
// Where that accumulator would outweigh the chunks' logits (a wide head, a small chunk), the open
// chunks are recomputed instead once their pair ends (see epsilon_dpo_loss_from_hidden).
//
// Measured against the recompute-in-backward version it replaces (bench/RESULTS.md): the chunked
// path did 5 head matmuls per chunk where the materialised path does 4 (one extra policy matmul),
// and the extra pass read the chunk's logits again; now it does the same 4. The cost: ∂W (and the
// open pair's accumulator, when a pair outgrows a chunk) lives from the forward to the backward,
// which only scales it by the upstream gradient (1/accumulation steps, or anything else). Both are
// [V,H]: memory stays independent of N. Under evaluation (no gradient wanted) none of it is done.
// Overlapping the recompute was the other option; on a CPU the recompute is compute-bound on the
// same cores, so overlap cannot hide it, and on a GPU one stream is already full with the matmuls.
#include "chunked_linear.h"

#include "autograd_function.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "arg_error.h"
#include "bf16_criterion.h"
#include "host_sync.h"
#include "op_checks.h"
#include "math/row_stats.h"
#include "backend.h"

namespace edpo {
namespace {

// The chunk plan: the op's completion tokens in pair-major
// order (pair i's chosen rows, then its rejected rows, then pair i+1's), cut into chunks of at most
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

// Which of the policy's head inputs want a gradient, decided before the Function's forward (where
// grad mode is off).
struct WantGrads {
  bool hidden = false, weight = false, bias = false;
  bool any() const { return hidden || weight || bias; }
};

// The sums (spec §3) of the sequences `seqs` (chosen ones first) from the rows' statistics.
SequenceLogps sums_of(const at::Tensor& stats, const at::Tensor& criterion_rows, const at::Tensor& row_weight,
                      const at::Tensor& seqs, int64_t positions, int64_t vocab) {
  const int64_t sequences = row_weight.size(0) / positions, count = seqs.size(0);
  const at::Tensor w = row_weight.view({sequences, positions}).index_select(0, seqs).reshape({-1});
  auto rows_of = [&](const at::Tensor& t) {
    return t.view({t.size(0), sequences, positions}).index_select(1, seqs).reshape({t.size(0), count * positions});
  };
  SequenceLogps s = sums_from_row_stats(rows_of(stats), w, count, vocab);
  if (criterion_rows.defined()) s.criterion = bf16_criterion_sums(rows_of(criterion_rows), w, count);
  return s;
}

// t·g in the accumulation dtype, then in `dtype` (a reduced-precision t is not multiplied in bf16).
at::Tensor scaled(const at::Tensor& t, const at::Tensor& g, at::ScalarType dtype) {
  const auto acc = accumulation_dtype(t.scalar_type());
  return (t.to(acc) * g.to(acc)).to(dtype);
}

struct ChunkedEpsilonDpoLoss : public torch::autograd::Function<ChunkedEpsilonDpoLoss> {
  static constexpr size_t kNumInputs = 13;

  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy_hidden, const at::Tensor& policy_weight,
                               const at::Tensor& policy_bias, const at::Tensor& reference_hidden,
                               const at::Tensor& reference_weight, const at::Tensor& reference_bias,
                               const at::Tensor& labels, const at::Tensor& row_weight, const at::Tensor& input_error,
                               const PairChunkPlan& plan, const ChunkedOptions& options, int64_t positions,
                               WantGrads want) {
    const int64_t rows = policy_hidden.size(0), vocab = policy_weight.size(0);
    const int64_t sequences = rows / positions, pairs = sequences / 2;
    const double epsilon = options.loss.epsilon, softcap = options.final_logit_softcap;
    const bool bf16 = options.loss.bf16_criterion;
    const auto acc = row_weight.scalar_type();
    // The plan's index lists, copied once (non_blocking: pageable memory is staged, no device wait).
    auto on_device = [&](const at::Tensor& host) { return host.to(policy_hidden.device(), at::kLong, true); };
    const at::Tensor order = on_device(plan.order), order_seq = on_device(plan.order_sequence),
                     finished = on_device(plan.finished_sequences);

    at::Tensor stats = at::zeros({kNumRowStats, rows}, row_weight.options());
    // --criterion-precision bf16: the bf16-rounded per-token log-probs, per chunk like the stats.
    at::Tensor criterion_rows =
        bf16 ? at::zeros({kNumCriterionRows, rows}, row_weight.options().dtype(at::kFloat)) : at::Tensor();
    // Every sequence's sums, filled as its pair ends (pairs without completion tokens keep zeros).
    const auto f64 = row_weight.options().dtype(at::kDouble);
    SequenceLogps all{at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      vocab,
                      input_error,
                      bf16 ? at::zeros({kNumCriterionRows, sequences}, f64) : at::Tensor()};

    // dL/dS per sequence as pairs end; ±1 (chosen/rejected) scales an open pair's rows meanwhile.
    at::Tensor seq_grad, seq_sign, grad_hidden, grad_weight, grad_bias, open_weight, open_bias;
    if (want.any()) {
      seq_grad = at::zeros({sequences}, row_weight.options());
      seq_sign = at::cat({at::ones({pairs}, row_weight.options()), at::full({pairs}, -1.0, row_weight.options())});
      if (want.hidden) grad_hidden = at::zeros_like(policy_hidden);
      if (want.weight) grad_weight = head_grad_accumulator(policy_weight);
      if (want.bias) grad_bias = head_grad_accumulator(policy_bias);
      if (want.weight && plan.any_open && !plan.recompute_open) open_weight = head_grad_accumulator(policy_weight);
      if (want.bias && plan.any_open && !plan.recompute_open) open_bias = head_grad_accumulator(policy_bias);
    }
    // A chunk's gradient from its policy logits and the rows' dL/d(label log-prob): ∂h rows, and ∂W
    // and ∂b into the accumulators (the open pair's when `open`).
    auto add_grads = [&](const at::Tensor& ids, const at::Tensor& h, const at::Tensor& policy,
                         const at::Tensor& chunk_labels, const at::Tensor& lse, const at::Tensor& row_grad, bool open) {
      at::Tensor dz = backward_rows(policy, chunk_labels, lse, row_grad);
      if (softcap > 0) dz = dz * (1 - (policy / softcap).square());  // d(c·tanh(x/c))/dx
      if (want.hidden) grad_hidden.index_copy_(0, ids, at::mm(dz, policy_weight));
      if (want.weight) add_weight_grad(open ? open_weight : grad_weight, dz, h);
      if (want.bias) (open ? open_bias : grad_bias).add_(dz.sum(0, false, grad_bias.scalar_type()));
    };

    for (const PairChunk& c : plan.chunks) {
      const int64_t n = c.end - c.begin;
      const at::Tensor ids = order.narrow(0, c.begin, n);
      const at::Tensor h = policy_hidden.index_select(0, ids);
      const at::Tensor chunk_labels = labels.index_select(0, ids), chunk_weight = row_weight.index_select(0, ids);
      at::Tensor policy = head_logits(h, policy_weight, policy_bias, softcap);
      at::Tensor chunk_stats;
      {  // the reference's logits are dropped before the gradient's are made
        const at::Tensor reference =
            head_logits(reference_hidden.index_select(0, ids), reference_weight, reference_bias, softcap);
        chunk_stats = forward_rows(policy, reference, chunk_labels, chunk_weight, epsilon);
        if (bf16) criterion_rows.index_copy_(1, ids, bf16_criterion_rows(policy, reference, chunk_labels, epsilon));
      }
      stats.index_copy_(1, ids, chunk_stats);
      if (c.finished_end > c.finished_begin) {
        const at::Tensor seqs = finished.narrow(0, c.finished_begin, c.finished_end - c.finished_begin);
        SequenceLogps s = sums_of(stats, criterion_rows, row_weight, seqs, positions, vocab);
        for (auto [to, from] : {std::pair<at::Tensor*, const at::Tensor*>{&all.policy, &s.policy},
                                {&all.reference, &s.reference},
                                {&all.plus, &s.plus},
                                {&all.minus, &s.minus},
                                {&all.logit_sum, &s.logit_sum},
                                {&all.token_count, &s.token_count}})
          to->index_copy_(0, seqs, *from);
        if (bf16) all.criterion.index_copy_(1, seqs, s.criterion);
        if (want.any()) {
          s.input_error = at::zeros({}, f64);
          seq_grad.index_copy_(0, seqs, pair_loss(s, options.loss, at::kDouble, pairs).grad_sums.to(acc));
        }
      }
      if (!want.any() || (c.open && plan.recompute_open)) continue;

      // dL/d(label log-prob) of each row: its sequence's dL/dS (±1 while its pair is open) × weight.
      const at::Tensor coefficient = (c.open ? seq_sign : seq_grad).index_select(0, order_seq.narrow(0, c.begin, n));
      add_grads(ids, h, policy, chunk_labels, chunk_stats[kPolicyLse], coefficient * chunk_weight, c.open);
      policy = at::Tensor();

      if (c.finishes_open_pair >= 0) {
        // The open pair's γ = dL/dS(chosen) is known now.
        const int64_t p = c.finishes_open_pair;
        const at::Tensor gamma = seq_grad.narrow(0, p, 1);
        if (plan.recompute_open) {
          // Its open chunks again: policy logits, then the gradient with the known coefficients.
          for (const auto& [b, e] : plan.open_ranges[p]) {
            const at::Tensor open_ids = order.narrow(0, b, e - b);
            const at::Tensor open_h = policy_hidden.index_select(0, open_ids);
            const at::Tensor row_grad =
                seq_grad.index_select(0, order_seq.narrow(0, b, e - b)) * row_weight.index_select(0, open_ids);
            add_grads(open_ids, open_h, head_logits(open_h, policy_weight, policy_bias, softcap),
                      labels.index_select(0, open_ids), stats[kPolicyLse].index_select(0, open_ids), row_grad, false);
          }
          continue;
        }
        // Its unit-scale gradients take it.
        if (want.weight) {
          grad_weight.addcmul_(open_weight, gamma.view({1, 1}).to(grad_weight.scalar_type()));
          open_weight.zero_();
        }
        if (want.bias) {
          grad_bias.addcmul_(open_bias, gamma.to(grad_bias.scalar_type()));
          open_bias.zero_();
        }
        if (want.hidden)
          for (const auto& [b, e] : plan.open_ranges[p]) {
            const at::Tensor open_ids = order.narrow(0, b, e - b);
            grad_hidden.index_copy_(
                0, open_ids,
                scaled(grad_hidden.index_select(0, open_ids), gamma.view({1, 1}), grad_hidden.scalar_type()));
          }
      }
    }

    const PairLoss out = pair_loss(all, options.loss, acc, pairs);
    ctx->save_for_backward({grad_hidden, grad_weight, grad_bias});
    ctx->saved_data["weight_dtype"] = int64_t(policy_weight.scalar_type());
    ctx->mark_non_differentiable({out.record});
    return {out.loss, out.record};
  }

  // The gradients were made in the forward for an upstream gradient of 1: scale them by the real one.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(kNumInputs);
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const auto weight_dtype = static_cast<at::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
    const at::Tensor& g = grads[0];
    if (saved[0].defined()) out[0] = scaled(saved[0], g, saved[0].scalar_type());
    if (saved[1].defined()) out[1] = scaled(saved[1], g, weight_dtype);
    if (saved[2].defined()) out[2] = scaled(saved[2], g, weight_dtype);
    return out;
  }
};

}  // namespace

EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options) {
  check_options(options.loss);
  check_head(policy, "policy");
  const int64_t rows = policy.hidden.size(0), positions = policy.hidden.size(1);
  EDPO_ARG_CHECK(rows > 0 && rows % 2 == 0,
                 "policyHidden: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ", rows);
  EDPO_ARG_CHECK(positions > 0, "policyHidden: T must be positive, got shape ", shape_str(policy.hidden));
  check_reference_head(policy, reference);
  const ChunkedCall c = prepare_chunked_call(policy, labels, loss_mask, options.final_logit_softcap,
                                             options.chunk_tokens, options.active_rows);
  at::Tensor active_host = c.active_host;
  if (!active_host.defined()) {
    count_host_sync();  // the chunk plan is made on the host
    active_host = c.active.cpu();
  }
  const LinearHead p = matmul_ready(policy), r = matmul_ready(reference);
  const at::Tensor bias = bias_or_empty(p.bias, p.weight);
  const bool grad_mode = at::GradMode::is_enabled();
  WantGrads want;
  want.hidden = grad_mode && p.hidden.requires_grad();
  want.weight = grad_mode && p.weight.requires_grad();
  want.bias = grad_mode && has_bias(bias) && bias.requires_grad();
  PairChunkPlan plan = plan_pair_chunks(active_host, rows / 2, positions, c.chunk);
  if (plan.any_open && want.weight) {
    // A pair longer than a chunk: its ∂W waits in an accumulator of ∂W's shape, worth `held` rows of
    // both models' logits. The default chunk shrinks by that much, so the working memory stays at
    // about two default chunks, when half a chunk is left; a caller's chunk keeps its size and takes
    // the accumulator when it is no larger than the chunk's logits. Otherwise (a wide head: a
    // 4096-wide fp32 accumulator outweighs 2^25/V rows) those chunks are recomputed once the pair
    // ends: no extra memory, one more policy matmul on their rows.
    const int64_t acc_bytes = int64_t(c10::elementSize(accumulation_dtype(p.weight.scalar_type())));
    const int64_t held =
        (p.weight.size(1) * acc_bytes + 2 * p.weight.element_size() - 1) / (2 * p.weight.element_size());
    const bool defaulted = options.chunk_tokens == 0;
    if (defaulted && c.chunk - held >= c.chunk / 2)
      plan = plan_pair_chunks(active_host, rows / 2, positions, c.chunk - held);
    else if (defaulted || held > c.chunk)
      plan.recompute_open = true;
  }
  const variable_list out = ChunkedEpsilonDpoLoss::apply(
      p.hidden.reshape({-1, p.hidden.size(2)}), p.weight, bias, r.hidden.detach().reshape({-1, r.hidden.size(2)}),
      r.weight.detach(), bias_or_empty(r.bias, r.weight).detach(), c.labels, c.row_weight, c.input_error, plan, options,
      positions, want);
  return EpsilonDpoOutput{out[0], out[1]};
}

}  // namespace edpo
