#include "pair_loss.h"

#include <algorithm>

#include "autograd_function.h"

#include <cmath>

#include "arg_error.h"
#include "bf16_criterion.h"
#include "backend.h"
#include "math/row_stats.h"

namespace edpo {
namespace {

// Any real dtype: the mask becomes the accumulation dtype's per-token weight (bf16/fp16 weights are
// exact in float32, and so are integers up to 2^24).
bool is_mask_dtype(at::ScalarType t) {
  return t == at::kBool || at::isIntegralType(t, /*includeBool=*/false) || t == at::kHalf || t == at::kBFloat16 ||
         t == at::kFloat || t == at::kDouble;
}

}  // namespace

at::Tensor check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t positions,
                                 int64_t vocab, const c10::Device& device, const char* source) {
  EDPO_ARG_CHECK(labels.dim() == 2 && labels.size(0) == rows && labels.size(1) == positions, "labels: expected shape [",
                 rows, ", ", positions, "] to match ", source, ", got ", shape_str(labels));
  EDPO_ARG_CHECK(labels.scalar_type() == at::kLong, "labels: expected int64, got ", labels.scalar_type());
  EDPO_ARG_CHECK(loss_mask.dim() == 2 && loss_mask.size(0) == rows && loss_mask.size(1) == positions,
                 "lossMask: expected shape [", rows, ", ", positions, "] to match ", source, ", got ",
                 shape_str(loss_mask));
  EDPO_ARG_CHECK(is_mask_dtype(loss_mask.scalar_type()),
                 "lossMask: expected a bool, integer or floating-point tensor, got ", loss_mask.scalar_type());
  EDPO_ARG_CHECK(labels.device() == device && loss_mask.device() == device, "labels/lossMask: must be on ", source,
                 "' device ", device);
  // Labels only matter where the mask is on; elsewhere any value (e.g. -100) is ignored.
  const at::Tensor on = loss_mask != 0;
  const at::Tensor out_of_range = on.logical_and(labels.lt(0).logical_or(labels.ge(vocab)));
  if (device.is_cpu()) {
    // Reading a CPU tensor costs no device sync: check now, with the offending value in the message.
    if (loss_mask.is_floating_point())
      EDPO_ARG_CHECK(at::isfinite(loss_mask).all().item<bool>(), kInputErrorMaskMessage);
    if (out_of_range.any().item<bool>()) {
      const at::Tensor active = labels.masked_select(on);
      const int64_t lo = active.min().item<int64_t>(), hi = active.max().item<int64_t>();
      EDPO_ARG_CHECK(false, "labels: values at unmasked positions must lie in [0, ", vocab, "), found ",
                     lo < 0 ? lo : hi);
    }
    return at::zeros({}, at::TensorOptions().dtype(at::kDouble));
  }
  // Elsewhere the checks stay on the device: a flag (kInputErrorMask | kInputErrorLabels) that the
  // caller reads with its results and turns into the same messages (input_error_message).
  at::Tensor flag = out_of_range.any().to(at::kDouble) * double(kInputErrorLabels);
  if (loss_mask.is_floating_point())
    flag = flag + at::isfinite(loss_mask).all().logical_not().to(at::kDouble) * double(kInputErrorMask);
  return flag;
}

SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences,
                                  int64_t vocab) {
  const Backend* backend = find_backend(stats.device().type());
  if (backend != nullptr && backend->sequence_sums != nullptr) {
    const std::vector<at::Tensor> sums = backend->sequence_sums(stats, row_weight, sequences);
    return SequenceLogps{sums[kSumPolicy], sums[kSumReference], sums[kSumPlus], sums[kSumMinus],
                         sums[kSumLogits], sums[kSumTokens],    vocab};
  }
  const int64_t positions = row_weight.size(0) / sequences;
  // Masked sums in float64 whatever the row precision (spec §8).
  const at::Tensor w = row_weight.to(at::kDouble).view({sequences, positions});
  auto seq_sum = [&](int k) { return (stats[k].to(at::kDouble).view({sequences, positions}) * w).sum(1); };
  return SequenceLogps{seq_sum(kPolicyLogp),
                       seq_sum(kReferenceLogp),
                       seq_sum(kPlusLogp),
                       seq_sum(kMinusLogp),
                       seq_sum(kLogitSum),
                       w.sum(1),
                       vocab};
}

at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences,
                                    at::ScalarType dtype) {
  const Backend* backend = find_backend(row_weight.device().type());
  if (backend != nullptr && backend->row_grads != nullptr && dtype == at::kFloat)
    return backend->row_grads(grad_sequences, row_weight, sequences);
  const int64_t positions = row_weight.size(0) / sequences;
  return (grad_sequences.to(at::kDouble).view({sequences, 1}) * row_weight.to(at::kDouble).view({sequences, positions}))
      .reshape({-1})
      .to(dtype)
      .contiguous();
}

const char* const kPairColumnNames[kNumPairColumns] = {
    "chosenLogps",    "rejectedLogps", "refChosenLogps", "refRejectedLogps", "chosenRewards",    "rejectedRewards",
    "step",           "beta",          "loss",           "chosenLogitSum",   "rejectedLogitSum", "chosenTokens",
    "rejectedTokens", "inputError"};

void check_options(const EpsilonDpoOptions& o) {
  // β·(ρ − ρ_ref) must stay far inside float32 range; the paper's β are 0.01–0.5.
  EDPO_ARG_CHECK(std::isfinite(o.beta) && o.beta > 0 && o.beta <= kMaxBeta, "beta: must be a number in (0, ", kMaxBeta,
                 "], got ", o.beta);
  check_epsilon(o.epsilon);
  EDPO_ARG_CHECK(std::isfinite(o.label_smoothing) && o.label_smoothing >= 0 && o.label_smoothing <= 0.5,
                 "labelSmoothing: must be in [0, 0.5], got ", o.label_smoothing);
}

void check_epsilon(double epsilon) {
  EDPO_ARG_CHECK(std::isfinite(epsilon) && epsilon >= 0 && epsilon < 1, "epsilon: must be finite and in [0, 1), got ",
                 epsilon);
}

namespace {

// [B] float64 steps s_i from the bf16-rounded sums (--criterion-precision bf16, spec §8).
at::Tensor bf16_steps(const SequenceLogps& seq, int64_t pairs) {
  EDPO_ARG_CHECK(seq.criterion.defined() && seq.criterion.numel() > 0, "bf16Criterion: no bf16 sums were computed");
  auto ratio = [&](int k) {
    return bf16_log_ratio(seq.criterion[k].narrow(0, 0, pairs), seq.criterion[k].narrow(0, pairs, pairs));
  };
  const at::Tensor rho = ratio(kCriterionPolicy), rho_plus = ratio(kCriterionPlus), rho_minus = ratio(kCriterionMinus);
  const at::Tensor relax = (rho_plus > rho).logical_and(rho > rho_minus);
  const at::Tensor tighten = (rho_minus > rho).logical_and(rho > rho_plus);
  return (relax.to(at::kDouble) - tighten.to(at::kDouble)).contiguous();
}

// The differentiable loss of loss_from_sequences: dL/dS is made with the loss, in the forward.
struct PairLossFunction : public torch::autograd::Function<PairLossFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy_sums, const SequenceLogps& seq,
                               const EpsilonDpoOptions& options, int64_t loss_dtype) {
    (void)policy_sums;  // seq.policy: the same values, given as a tensor argument for autograd
    const PairLoss out = pair_loss(seq, options, static_cast<at::ScalarType>(loss_dtype), seq.policy.size(0) / 2);
    ctx->save_for_backward({out.grad_sums});
    ctx->mark_non_differentiable({out.record});
    return {out.loss, out.record};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor grad_sums = ctx->get_saved_variables()[0];
    at::Tensor grad_policy;
    if (grads[0].defined()) grad_policy = grad_sums * grads[0].to(at::kDouble);
    return {grad_policy, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

PairLoss pair_loss(const SequenceLogps& seq, const EpsilonDpoOptions& o, at::ScalarType loss_dtype,
                   int64_t total_pairs) {
  const int64_t sequences = seq.policy.size(0), pairs = sequences / 2;
  auto f64 = [](const at::Tensor& t) { return t.detach().to(at::kDouble).contiguous(); };
  const at::Tensor policy = f64(seq.policy), reference = f64(seq.reference), plus = f64(seq.plus),
                   minus = f64(seq.minus), logit_sum = f64(seq.logit_sum), token_count = f64(seq.token_count);
  const at::Tensor input_error =
      seq.input_error.defined() ? f64(seq.input_error.reshape({})) : at::zeros({}, policy.options());
  const at::Tensor steps = o.bf16_criterion ? bf16_steps(seq, pairs) : at::Tensor();
  const PairSums sums{policy.data_ptr<double>(),
                      reference.data_ptr<double>(),
                      plus.data_ptr<double>(),
                      minus.data_ptr<double>(),
                      logit_sum.data_ptr<double>(),
                      token_count.data_ptr<double>(),
                      steps.defined() ? steps.data_ptr<double>() : nullptr,
                      input_error.data_ptr<double>()};
  const PairConstants constants{o.beta, o.epsilon, o.label_smoothing, double(seq.vocab), double(total_pairs)};
  PairLoss out;
  out.record = at::empty({pairs, kNumPairColumns}, policy.options());
  out.grad_sums = at::empty({sequences}, policy.options());
  out.loss = backend_for(policy.device(), "pair_loss")
                 .pair_loss(sums, pairs, constants, out.record, out.grad_sums)
                 .to(loss_dtype);
  return out;
}

EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& options,
                                     at::ScalarType loss_dtype) {
  const variable_list out = PairLossFunction::apply(seq.policy, seq, options, int64_t(loss_dtype));
  return EpsilonDpoOutput{out[0], out[1]};
}

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

}  // namespace edpo
