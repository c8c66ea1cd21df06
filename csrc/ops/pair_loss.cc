#include "pair_loss.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "arg_error.h"
#include "bf16_criterion.h"

namespace edpo {

const char* const kPairColumnNames[kNumPairColumns] = {
    "chosenLogps",   "rejectedLogps", "refChosenLogps", "refRejectedLogps", "chosenRewards",
    "rejectedRewards", "step",        "beta",           "loss",             "chosenLogitSum",
    "rejectedLogitSum", "chosenTokens", "rejectedTokens", "inputError"};

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

EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& o, at::ScalarType loss_dtype) {
  const int64_t pairs = seq.policy.size(0) / 2;
  auto chosen = [&](const at::Tensor& t) { return t.narrow(0, 0, pairs); };
  auto rejected = [&](const at::Tensor& t) { return t.narrow(0, pairs, pairs); };

  // Step decision (spec §4): strict inequalities on detached float64 log-ratios, or on the
  // bf16-rounded ones of the authors' trainer (--criterion-precision bf16, spec §8).
  const at::Tensor policy_detached = seq.policy.detach();
  at::Tensor rho, rho_plus, rho_minus;
  if (o.bf16_criterion) {
    EDPO_ARG_CHECK(seq.criterion.defined() && seq.criterion.numel() > 0, "bf16Criterion: no bf16 sums were computed");
    auto ratio = [&](int k) { return bf16_log_ratio(chosen(seq.criterion[k]), rejected(seq.criterion[k])); };
    rho = ratio(kCriterionPolicy);
    rho_plus = ratio(kCriterionPlus);
    rho_minus = ratio(kCriterionMinus);
  } else {
    rho = chosen(policy_detached) - rejected(policy_detached);
    rho_plus = chosen(seq.plus) - rejected(seq.plus);
    rho_minus = chosen(seq.minus) - rejected(seq.minus);
  }
  const at::Tensor relax = (rho_plus > rho).logical_and(rho > rho_minus);
  const at::Tensor tighten = (rho_minus > rho).logical_and(rho > rho_plus);
  const at::Tensor steps = relax.to(at::kDouble) - tighten.to(at::kDouble);
  const at::Tensor betas = o.beta / (steps * o.epsilon + 1.0);

  // Loss (spec §5): gradient only through S of the policy.
  const at::Tensor rho_ref = chosen(seq.reference) - rejected(seq.reference);
  const at::Tensor margin = betas * ((chosen(seq.policy) - rejected(seq.policy)) - rho_ref);
  at::Tensor losses = -at::log_sigmoid(margin) * (1.0 - o.label_smoothing);
  if (o.label_smoothing > 0) losses = losses - at::log_sigmoid(-margin) * o.label_smoothing;

  std::vector<at::Tensor> columns(kNumPairColumns);
  columns[kChosenLogps] = chosen(policy_detached);
  columns[kRejectedLogps] = rejected(policy_detached);
  columns[kRefChosenLogps] = chosen(seq.reference);
  columns[kRefRejectedLogps] = rejected(seq.reference);
  columns[kChosenRewards] = betas * (chosen(policy_detached) - chosen(seq.reference));
  columns[kRejectedRewards] = betas * (rejected(policy_detached) - rejected(seq.reference));
  columns[kStep] = steps;
  columns[kBeta] = betas;
  columns[kLoss] = losses.detach();
  const at::Tensor token_mean_logits = seq.logit_sum / double(seq.vocab);
  columns[kChosenLogitSum] = chosen(token_mean_logits);
  columns[kRejectedLogitSum] = rejected(token_mean_logits);
  columns[kChosenTokens] = chosen(seq.token_count);
  columns[kRejectedTokens] = rejected(seq.token_count);
  columns[kInputError] = seq.input_error.to(at::kDouble).expand({pairs});
  for (auto& c : columns) c = c.to(at::kDouble);

  EpsilonDpoOutput out;
  out.loss = losses.mean().to(loss_dtype);
  out.record = at::stack(columns, 1);
  return out;
}

at::Tensor loss_grad_wrt_policy_sums(const SequenceLogps& seq, const EpsilonDpoOptions& options, int64_t total_pairs) {
  // Called inside an autograd Function's forward, where grad mode is off.
  const at::AutoGradMode grad_mode(true);
  SequenceLogps leaf = seq;
  leaf.policy = seq.policy.detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor mean = loss_from_sequences(leaf, options, at::kDouble).loss;
  const double pairs = double(seq.policy.size(0) / 2);
  return torch::autograd::grad({mean}, {leaf.policy})[0] * (pairs / double(total_pairs));
}

}  // namespace edpo
