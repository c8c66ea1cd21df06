// ε-DPO op: argument checks, the autograd Function around the fused row pass, and the per-pair
// math of spec §3–§5. Names in error messages are the ones users pass from TypeScript.
#include "epsilon_dpo.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <sstream>

#include "cpu/row_kernels.h"
#include "row_ops.h"

namespace edpo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_logits_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}
// Any real dtype: the mask becomes the accumulation dtype's per-token weight (bf16/fp16 weights are
// exact in float32, and so are integers up to 2^24).
bool is_mask_dtype(at::ScalarType t) {
  return t == at::kBool || at::isIntegralType(t, /*includeBool=*/false) || t == at::kHalf || t == at::kBFloat16 ||
         t == at::kFloat || t == at::kDouble;
}

// Autograd node: per-sequence sums from [N,V] logits. Only S (output 0) is differentiable; the
// backward turns dL/dS into per-row weights and writes g·(onehot − softmax) in one pass, from the
// saved per-row LSE, so no [N,V] intermediate is kept between forward and backward.
struct SequenceLogpsFunction : public torch::autograd::Function<SequenceLogpsFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy, const at::Tensor& reference,
                               const at::Tensor& labels, const at::Tensor& weight, double epsilon,
                               int64_t sequences) {
    const at::Tensor stats = forward_rows(policy, reference, labels, weight, epsilon);
    const SequenceLogps s = sums_from_row_stats(stats, weight, sequences, policy.size(1));
    ctx->save_for_backward({policy, labels, weight, stats[cpu::kPolicyLse].contiguous()});
    ctx->saved_data["sequences"] = sequences;
    ctx->mark_non_differentiable({s.reference, s.plus, s.minus, s.logit_sum, s.token_count});
    return {s.policy, s.reference, s.plus, s.minus, s.logit_sum, s.token_count};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &policy = saved[0], &labels = saved[1], &weight = saved[2], &lse = saved[3];
    const int64_t sequences = ctx->saved_data["sequences"].toInt();
    at::Tensor grad_policy;
    if (grads[0].defined()) {
      const at::Tensor row_grad = row_grads_from_sequences(grads[0], weight, sequences, lse.scalar_type());
      grad_policy = backward_rows(policy, labels, lse, row_grad);
    }
    return {grad_policy, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& weight, int64_t sequences,
                                  int64_t vocab) {
  const int64_t steps = weight.size(0) / sequences;
  // Masked sums in float64 whatever the row precision (spec §8).
  const at::Tensor w = weight.to(at::kDouble).view({sequences, steps});
  auto seq_sum = [&](int k) { return (stats[k].to(at::kDouble).view({sequences, steps}) * w).sum(1); };
  return SequenceLogps{seq_sum(cpu::kPolicyLogp), seq_sum(cpu::kReferenceLogp), seq_sum(cpu::kPlusLogp),
                       seq_sum(cpu::kMinusLogp),  seq_sum(cpu::kLogitSum),     w.sum(1),
                       vocab};
}

at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& weight, int64_t sequences,
                                    at::ScalarType dtype) {
  const int64_t steps = weight.size(0) / sequences;
  return (grad_sequences.to(at::kDouble).view({sequences, 1}) * weight.to(at::kDouble).view({sequences, steps}))
      .reshape({-1})
      .to(dtype)
      .contiguous();
}

int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask) {
  TORCH_CHECK(policy_logits.defined(), "policyLogits: missing tensor");
  TORCH_CHECK(reference_logits.defined(), "referenceLogits: missing tensor");
  TORCH_CHECK(labels.defined(), "labels: missing tensor");
  TORCH_CHECK(loss_mask.defined(), "lossMask: missing tensor");
  TORCH_CHECK(policy_logits.dim() == 3, "policyLogits: expected a 3-D [2B,T,V] tensor, got shape ",
              shape_str(policy_logits));
  const int64_t rows = policy_logits.size(0), steps = policy_logits.size(1), vocab = policy_logits.size(2);
  TORCH_CHECK(rows > 0 && rows % 2 == 0, "policyLogits: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ",
              rows);
  TORCH_CHECK(steps > 0 && vocab > 0, "policyLogits: T and V must be positive, got shape ", shape_str(policy_logits));
  TORCH_CHECK(is_logits_dtype(policy_logits.scalar_type()),
              "policyLogits: expected float32, float64, bfloat16 or float16, got ", policy_logits.scalar_type());
  TORCH_CHECK(reference_logits.sizes() == policy_logits.sizes(), "referenceLogits: shape ", shape_str(reference_logits),
              " does not match policyLogits ", shape_str(policy_logits));
  TORCH_CHECK(reference_logits.scalar_type() == policy_logits.scalar_type(), "referenceLogits: dtype ",
              reference_logits.scalar_type(), " does not match policyLogits ", policy_logits.scalar_type());
  TORCH_CHECK(reference_logits.device() == policy_logits.device(), "referenceLogits: device ", reference_logits.device(),
              " does not match policyLogits ", policy_logits.device());
  check_labels_and_mask(labels, loss_mask, rows, steps, vocab, policy_logits.device(), "policyLogits");
  return vocab;
}

void check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t steps,
                           int64_t vocab, const c10::Device& device, const char* source) {
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == rows && labels.size(1) == steps, "labels: expected shape [", rows,
              ", ", steps, "] to match ", source, ", got ", shape_str(labels));
  TORCH_CHECK(labels.scalar_type() == at::kLong, "labels: expected int64, got ", labels.scalar_type());
  TORCH_CHECK(loss_mask.dim() == 2 && loss_mask.size(0) == rows && loss_mask.size(1) == steps, "lossMask: expected shape [",
              rows, ", ", steps, "] to match ", source, ", got ", shape_str(loss_mask));
  TORCH_CHECK(is_mask_dtype(loss_mask.scalar_type()), "lossMask: expected a bool, integer or floating-point tensor, got ",
              loss_mask.scalar_type());
  TORCH_CHECK(labels.device() == device && loss_mask.device() == device, "labels/lossMask: must be on ", source,
              "' device ", device);
  if (loss_mask.is_floating_point()) {
    TORCH_CHECK(at::isfinite(loss_mask).all().item<bool>(), "lossMask: contains a non-finite value");
  }
  // Labels only matter where the mask is on; elsewhere any value (e.g. -100) is ignored.
  const at::Tensor active = labels.masked_select(loss_mask != 0);
  if (active.numel() > 0) {
    const int64_t lo = active.min().item<int64_t>(), hi = active.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < vocab, "labels: values at unmasked positions must lie in [0, ", vocab, "), found ",
                lo < 0 ? lo : hi);
  }
}

void check_options(const EpsilonDpoOptions& o) {
  // β·(ρ − ρ_ref) must stay far inside float32 range; the paper's β are 0.01–0.5.
  TORCH_CHECK(std::isfinite(o.beta) && o.beta > 0 && o.beta <= kMaxBeta, "beta: must be a number in (0, ", kMaxBeta,
              "], got ", o.beta);
  TORCH_CHECK(std::isfinite(o.epsilon) && o.epsilon >= 0 && o.epsilon < 1, "epsilon: must be finite and in [0, 1), got ",
              o.epsilon);
  TORCH_CHECK(std::isfinite(o.label_smoothing) && o.label_smoothing >= 0 && o.label_smoothing <= 0.5,
              "labelSmoothing: must be in [0, 0.5], got ", o.label_smoothing);
}

SequenceLogps sequence_logps(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                             const at::Tensor& labels, const at::Tensor& loss_mask, double epsilon) {
  const int64_t vocab = check_logits_inputs(policy_logits, reference_logits, labels, loss_mask);
  TORCH_CHECK(std::isfinite(epsilon) && epsilon >= 0 && epsilon < 1, "epsilon: must be finite and in [0, 1), got ",
              epsilon);
  const int64_t sequences = policy_logits.size(0);
  const auto acc = accumulation_dtype(policy_logits.scalar_type());
  const at::Tensor policy = policy_logits.reshape({-1, vocab}).contiguous();
  const at::Tensor reference = reference_logits.detach().reshape({-1, vocab}).contiguous();
  const at::Tensor flat_labels = labels.reshape({-1}).contiguous();
  const at::Tensor weight = loss_mask.reshape({-1}).to(acc).contiguous();
  const variable_list out = SequenceLogpsFunction::apply(policy, reference, flat_labels, weight, epsilon, sequences);
  return SequenceLogps{out[0], out[1], out[2], out[3], out[4], out[5], vocab};
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

EpsilonDpoOutput epsilon_dpo_loss(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                                  const at::Tensor& labels, const at::Tensor& loss_mask,
                                  const EpsilonDpoOptions& options) {
  check_options(options);
  const SequenceLogps seq = sequence_logps(policy_logits, reference_logits, labels, loss_mask, options.epsilon);
  return loss_from_sequences(seq, options, accumulation_dtype(policy_logits.scalar_type()));
}

}  // namespace edpo
