#include "pair_loss.h"

#include "autograd_function.h"

#include <cmath>

#include "arg_error.h"
#include "bf16_criterion.h"
#include "backend.h"
#include "math/row_stats.h"

namespace edpo {

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

}  // namespace edpo
