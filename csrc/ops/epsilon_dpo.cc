// The ε-DPO op on full logits: the autograd Function around the fused row pass, and the entry points.
#include "epsilon_dpo.h"

#include "autograd_function.h"

#include "bf16_criterion.h"
#include "math/row_stats.h"
#include "backend.h"

namespace edpo {
namespace {

// Autograd node: per-sequence sums from [N,V] logits. Only S (output 0) is differentiable; the
// backward turns dL/dS into per-row weights and writes g·(onehot − softmax) in one pass, from the
// saved per-row LSE, so no [N,V] intermediate is kept between forward and backward.
struct SequenceLogpsFunction : public torch::autograd::Function<SequenceLogpsFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy, const at::Tensor& reference,
                               const at::Tensor& labels, const at::Tensor& row_weight, double epsilon,
                               int64_t sequences, bool bf16_criterion) {
    const at::Tensor stats = forward_rows(policy, reference, labels, row_weight, epsilon);
    const SequenceLogps s = sums_from_row_stats(stats, row_weight, sequences, policy.size(1));
    const at::Tensor criterion =
        bf16_criterion
            ? bf16_criterion_sums(bf16_criterion_rows(policy, reference, labels, epsilon), row_weight, sequences)
            : at::empty({0}, stats.options().dtype(at::kDouble));
    ctx->save_for_backward({policy, labels, row_weight, stats[kPolicyLse].contiguous()});
    ctx->saved_data["sequences"] = sequences;
    ctx->mark_non_differentiable({s.reference, s.plus, s.minus, s.logit_sum, s.token_count, criterion});
    return {s.policy, s.reference, s.plus, s.minus, s.logit_sum, s.token_count, criterion};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &policy = saved[0], &labels = saved[1], &row_weight = saved[2], &lse = saved[3];
    const int64_t sequences = ctx->saved_data["sequences"].toInt();
    at::Tensor grad_policy;
    if (grads[0].defined()) {
      const at::Tensor row_grad = row_grads_from_sequences(grads[0], row_weight, sequences, lse.scalar_type());
      grad_policy = backward_rows(policy, labels, lse, row_grad);
    }
    return {grad_policy, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The sums, once the options are checked (by sequence_logps or epsilon_dpo_loss, not both).
SequenceLogps checked_sequence_logps(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                                     const at::Tensor& labels, const at::Tensor& loss_mask, double epsilon,
                                     bool bf16_criterion = false) {
  at::Tensor input_error;
  const int64_t vocab = check_logits_inputs(policy_logits, reference_logits, labels, loss_mask, &input_error);
  const int64_t sequences = policy_logits.size(0);
  const auto acc = accumulation_dtype(policy_logits.scalar_type());
  const at::Tensor policy = policy_logits.reshape({-1, vocab}).contiguous();
  const at::Tensor reference = reference_logits.detach().reshape({-1, vocab}).contiguous();
  const at::Tensor flat_labels = labels.reshape({-1}).contiguous();
  const at::Tensor row_weight = loss_mask.reshape({-1}).to(acc).contiguous();
  const variable_list out =
      SequenceLogpsFunction::apply(policy, reference, flat_labels, row_weight, epsilon, sequences, bf16_criterion);
  return SequenceLogps{out[0], out[1], out[2], out[3], out[4], out[5], vocab, input_error, out[6]};
}

}  // namespace

SequenceLogps sequence_logps(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                             const at::Tensor& labels, const at::Tensor& loss_mask, double epsilon) {
  check_epsilon(epsilon);
  return checked_sequence_logps(policy_logits, reference_logits, labels, loss_mask, epsilon);
}

EpsilonDpoOutput epsilon_dpo_loss(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                                  const at::Tensor& labels, const at::Tensor& loss_mask,
                                  const EpsilonDpoOptions& options) {
  check_options(options);
  const SequenceLogps seq = checked_sequence_logps(policy_logits, reference_logits, labels, loss_mask, options.epsilon,
                                                   options.bf16_criterion);
  return loss_from_sequences(seq, options, accumulation_dtype(policy_logits.scalar_type()));
}

}  // namespace edpo
