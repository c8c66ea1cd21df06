#include "pair_loss.h"

#include <cmath>

namespace edpo {

void check_options(const EpsilonDpoOptions& o) {
  // β·(ρ − ρ_ref) must stay far inside float32 range; the paper's β are 0.01–0.5.
  TORCH_CHECK(std::isfinite(o.beta) && o.beta > 0 && o.beta <= kMaxBeta, "beta: must be a number in (0, ", kMaxBeta,
              "], got ", o.beta);
  TORCH_CHECK(std::isfinite(o.epsilon) && o.epsilon >= 0 && o.epsilon < 1, "epsilon: must be finite and in [0, 1), got ",
              o.epsilon);
  TORCH_CHECK(std::isfinite(o.label_smoothing) && o.label_smoothing >= 0 && o.label_smoothing <= 0.5,
              "labelSmoothing: must be in [0, 0.5], got ", o.label_smoothing);
}

EpsilonDpoOutput loss_from_sequences(const SequenceLogps& seq, const EpsilonDpoOptions& o, at::ScalarType out_dtype) {
  check_options(o);
  const int64_t pairs = seq.policy.size(0) / 2;
  auto chosen = [&](const at::Tensor& t) { return t.narrow(0, 0, pairs); };
  auto rejected = [&](const at::Tensor& t) { return t.narrow(0, pairs, pairs); };

  // Step decision (spec §4): strict inequalities on detached float64 log-ratios.
  const at::Tensor policy_detached = seq.policy.detach();
  const at::Tensor rho = chosen(policy_detached) - rejected(policy_detached);
  const at::Tensor rho_plus = chosen(seq.plus) - rejected(seq.plus);
  const at::Tensor rho_minus = chosen(seq.minus) - rejected(seq.minus);
  const at::Tensor relax = (rho_plus > rho).logical_and(rho > rho_minus);
  const at::Tensor tighten = (rho_minus > rho).logical_and(rho > rho_plus);
  const at::Tensor steps = relax.to(at::kLong) - tighten.to(at::kLong);
  const at::Tensor betas = o.beta / (steps.to(at::kDouble) * o.epsilon + 1.0);

  // Loss (spec §5): gradient only through S of the policy.
  const at::Tensor rho_ref = chosen(seq.reference) - rejected(seq.reference);
  const at::Tensor margin = betas * ((chosen(seq.policy) - rejected(seq.policy)) - rho_ref);
  at::Tensor losses = -at::log_sigmoid(margin) * (1.0 - o.label_smoothing);
  if (o.label_smoothing > 0) losses = losses - at::log_sigmoid(-margin) * o.label_smoothing;

  EpsilonDpoOutput out;
  out.loss = losses.mean().to(out_dtype);
  out.steps = steps;
  out.betas = betas.to(out_dtype);
  out.chosen_logps = chosen(policy_detached).to(out_dtype);
  out.rejected_logps = rejected(policy_detached).to(out_dtype);
  out.ref_chosen_logps = chosen(seq.reference).to(out_dtype);
  out.ref_rejected_logps = rejected(seq.reference).to(out_dtype);
  out.chosen_rewards = (betas * (chosen(policy_detached) - chosen(seq.reference))).to(out_dtype);
  out.rejected_rewards = (betas * (rejected(policy_detached) - rejected(seq.reference))).to(out_dtype);
  // Mean raw policy logit over completion tokens × vocabulary; 0 where a half has no tokens.
  auto mean_logit = [&](const at::Tensor& sums, const at::Tensor& counts) {
    const at::Tensor n = counts.sum() * double(seq.vocab);
    return at::where(n > 0, sums.sum() / n.clamp_min(1.0), at::zeros_like(n)).to(out_dtype);
  };
  out.mean_chosen_logits = mean_logit(chosen(seq.logit_sum), chosen(seq.token_count));
  out.mean_rejected_logits = mean_logit(rejected(seq.logit_sum), rejected(seq.token_count));
  return out;
}

}  // namespace edpo
