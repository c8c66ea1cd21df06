// Chunked fused-linear ε-DPO: for each chunk of completion tokens, lm_head matmuls give both
// models' logits, the fused row pass reduces them to per-row statistics, and the chunk's logits
// are dropped. Prompt tokens (mask 0) never reach the matmul.
//
// Gradients are recomputed in the backward pass rather than produced during the forward: the
// gradient of a token row is dL/dS of its sequence times (onehot − softmax), and dL/dS depends on
// every chunk of the pair (through S, S± and the step decision), so a forward-time gradient
// would need a second sweep anyway. Recomputing in the backward costs one extra policy matmul per
// chunk (the reference is never recomputed), keeps the op an ordinary autograd node (any upstream
// gradient, e.g. 1/accumulation_steps, and no work at all under evaluation), and holds only the
// per-row LSE between the passes: O(chunk·V + N) memory.
#include "chunked_linear.h"

#include "autograd_function.h"

#include <cmath>

#include "arg_error.h"
#include "bf16_criterion.h"
#include "op_checks.h"
#include "row_stats.h"
#include "row_ops.h"

namespace edpo {
namespace {

struct ChunkedSequenceLogps : public torch::autograd::Function<ChunkedSequenceLogps> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy_hidden, const at::Tensor& policy_weight,
                               const at::Tensor& policy_bias, const at::Tensor& reference_hidden,
                               const at::Tensor& reference_weight, const at::Tensor& reference_bias,
                               const at::Tensor& labels, const at::Tensor& row_weight, const at::Tensor& active,
                               double epsilon, double softcap, int64_t chunk, int64_t sequences, bool bf16_criterion) {
    const int64_t rows = policy_hidden.size(0), vocab = policy_weight.size(0);
    const int64_t count = active.size(0);
    at::Tensor stats = at::zeros({kNumRowStats, rows}, row_weight.options());
    // --criterion-precision bf16: the bf16-rounded per-token log-probs, per chunk like the stats.
    at::Tensor criterion_rows = bf16_criterion ? at::zeros({kNumCriterionRows, rows}, row_weight.options().dtype(at::kFloat))
                                               : at::Tensor();
    for (int64_t start = 0; start < count; start += chunk) {
      const at::Tensor ids = active.narrow(0, start, std::min(chunk, count - start));
      const at::Tensor policy = head_logits(policy_hidden.index_select(0, ids), policy_weight, policy_bias, softcap);
      const at::Tensor reference = head_logits(reference_hidden.index_select(0, ids), reference_weight, reference_bias, softcap);
      stats.index_copy_(1, ids,
                        forward_rows(policy, reference, labels.index_select(0, ids), row_weight.index_select(0, ids), epsilon));
      if (bf16_criterion)
        criterion_rows.index_copy_(1, ids, bf16_criterion_rows(policy, reference, labels.index_select(0, ids), epsilon));
    }
    const SequenceLogps s = sums_from_row_stats(stats, row_weight, sequences, vocab);
    const at::Tensor criterion = bf16_criterion ? bf16_criterion_sums(criterion_rows, row_weight, sequences)
                                                : at::empty({0}, row_weight.options().dtype(at::kDouble));
    save_for_head_backward(ctx, policy_hidden, policy_weight, policy_bias, labels, row_weight, active,
                           stats[kPolicyLse].index_select(0, active), softcap, chunk, sequences);
    ctx->mark_non_differentiable({s.reference, s.plus, s.minus, s.logit_sum, s.token_count, criterion});
    return {s.policy, s.reference, s.plus, s.minus, s.logit_sum, s.token_count, criterion};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return head_backward_from_sequences(ctx, grads, 14);
  }
};

// The sums, once the options are checked.
SequenceLogps sequence_logps_from_hidden(const LinearHead& policy, const LinearHead& reference, const at::Tensor& labels,
                                         const at::Tensor& loss_mask, const ChunkedOptions& options) {
  check_head(policy, "policy");
  const int64_t rows = policy.hidden.size(0), positions = policy.hidden.size(1), vocab = policy.weight.size(0);
  EDPO_ARG_CHECK(rows > 0 && rows % 2 == 0,
                 "policyHidden: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ", rows);
  EDPO_ARG_CHECK(positions > 0, "policyHidden: T must be positive, got shape ", shape_str(policy.hidden));
  check_reference_head(policy, reference);
  const ChunkedCall c =
      prepare_chunked_call(policy, labels, loss_mask, options.final_logit_softcap, options.chunk_tokens, options.active_rows);
  const LinearHead p = matmul_ready(policy), r = matmul_ready(reference);
  const variable_list out = ChunkedSequenceLogps::apply(
      p.hidden.reshape({-1, p.hidden.size(2)}), p.weight, bias_or_empty(p.bias, p.weight),
      r.hidden.detach().reshape({-1, r.hidden.size(2)}), r.weight.detach(), bias_or_empty(r.bias, r.weight).detach(),
      c.labels, c.row_weight, c.active, options.loss.epsilon, options.final_logit_softcap, c.chunk, rows,
      options.loss.bf16_criterion);
  return SequenceLogps{out[0], out[1], out[2], out[3], out[4], out[5], vocab, c.input_error, out[6]};
}

}  // namespace

EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options) {
  check_options(options.loss);
  const SequenceLogps seq = sequence_logps_from_hidden(policy, reference, labels, loss_mask, options);
  return loss_from_sequences(seq, options.loss, accumulation_dtype(policy.hidden.scalar_type()));
}

}  // namespace edpo
