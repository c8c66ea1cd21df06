// The ε-DPO op on full logits: the autograd Function around the fused row pass, and the entry points.
#include "epsilon_dpo.h"

#include "arg_error.h"

#include "autograd_function.h"

#include "bf16_criterion.h"
#include "math/row_stats.h"
#include "backend.h"

namespace edpo {
namespace {

bool is_logits_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

}  // namespace

int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask, at::Tensor* input_error) {
  EDPO_ARG_CHECK(policy_logits.defined(), "policyLogits: missing tensor");
  EDPO_ARG_CHECK(reference_logits.defined(), "referenceLogits: missing tensor");
  EDPO_ARG_CHECK(labels.defined(), "labels: missing tensor");
  EDPO_ARG_CHECK(loss_mask.defined(), "lossMask: missing tensor");
  EDPO_ARG_CHECK(policy_logits.dim() == 3, "policyLogits: expected a 3-D [2B,T,V] tensor, got shape ",
                 shape_str(policy_logits));
  const int64_t rows = policy_logits.size(0), positions = policy_logits.size(1), vocab = policy_logits.size(2);
  EDPO_ARG_CHECK(rows > 0 && rows % 2 == 0,
                 "policyLogits: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ", rows);
  EDPO_ARG_CHECK(positions > 0 && vocab > 0, "policyLogits: T and V must be positive, got shape ",
                 shape_str(policy_logits));
  EDPO_ARG_CHECK(is_logits_dtype(policy_logits.scalar_type()),
                 "policyLogits: expected float32, float64, bfloat16 or float16, got ", policy_logits.scalar_type());
  EDPO_ARG_CHECK(reference_logits.sizes() == policy_logits.sizes(), "referenceLogits: shape ",
                 shape_str(reference_logits), " does not match policyLogits ", shape_str(policy_logits));
  EDPO_ARG_CHECK(reference_logits.scalar_type() == policy_logits.scalar_type(), "referenceLogits: dtype ",
                 reference_logits.scalar_type(), " does not match policyLogits ", policy_logits.scalar_type());
  EDPO_ARG_CHECK(reference_logits.device() == policy_logits.device(), "referenceLogits: device ",
                 reference_logits.device(), " does not match policyLogits ", policy_logits.device());
  *input_error =
      check_labels_and_mask(labels, loss_mask, rows, positions, vocab, policy_logits.device(), "policyLogits");
  return vocab;
}

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
