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

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>

#include "row_stats.h"
#include "row_ops.h"

namespace edpo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd Functions cannot take undefined tensors: a missing bias travels as a [0] tensor.
bool has_bias(const at::Tensor& bias) { return bias.numel() > 0; }
at::Tensor bias_or_empty(const at::Tensor& bias, const at::Tensor& weight) {
  return bias.defined() ? bias : at::empty({0}, weight.options());
}

// Raw (uncapped) logits of a chunk: h·Wᵀ + b.
at::Tensor raw_logits(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias) {
  return has_bias(bias) ? at::addmm(bias, hidden, weight.t()) : at::mm(hidden, weight.t());
}

at::Tensor capped(const at::Tensor& z, double softcap) {
  return softcap > 0 ? (at::tanh(z / softcap) * softcap).contiguous() : z.contiguous();
}

// Grads of reduced-precision heads are summed over chunks in fp32, then rounded once.
at::ScalarType head_grad_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

struct ChunkedSequenceLogps : public torch::autograd::Function<ChunkedSequenceLogps> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy_hidden, const at::Tensor& policy_weight,
                               const at::Tensor& policy_bias, const at::Tensor& reference_hidden,
                               const at::Tensor& reference_weight, const at::Tensor& reference_bias,
                               const at::Tensor& labels, const at::Tensor& weight, double epsilon, double softcap,
                               int64_t chunk, int64_t sequences) {
    const int64_t rows = policy_hidden.size(0), vocab = policy_weight.size(0);
    const at::Tensor active = weight.nonzero().view({-1});
    const int64_t count = active.size(0);
    at::Tensor stats = at::zeros({kNumRowStats, rows}, weight.options());
    for (int64_t start = 0; start < count; start += chunk) {
      const at::Tensor ids = active.narrow(0, start, std::min(chunk, count - start));
      const at::Tensor policy = capped(raw_logits(policy_hidden.index_select(0, ids), policy_weight, policy_bias), softcap);
      const at::Tensor reference =
          capped(raw_logits(reference_hidden.index_select(0, ids), reference_weight, reference_bias), softcap);
      stats.index_copy_(1, ids,
                        forward_rows(policy, reference, labels.index_select(0, ids), weight.index_select(0, ids), epsilon));
    }
    const SequenceLogps s = sums_from_row_stats(stats, weight, sequences, vocab);
    ctx->save_for_backward({policy_hidden, policy_weight, policy_bias, labels, weight, active,
                            stats[kPolicyLse].index_select(0, active)});
    ctx->saved_data["softcap"] = softcap;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["sequences"] = sequences;
    ctx->mark_non_differentiable({s.reference, s.plus, s.minus, s.logit_sum, s.token_count});
    return {s.policy, s.reference, s.plus, s.minus, s.logit_sum, s.token_count};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &head = saved[1], &bias = saved[2], &labels = saved[3], &weight = saved[4],
                     &active = saved[5], &lse = saved[6];
    const double softcap = ctx->saved_data["softcap"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt(), sequences = ctx->saved_data["sequences"].toInt();
    variable_list out(12);
    if (!grads[0].defined()) return out;
    const bool want_hidden = ctx->needs_input_grad(0), want_head = ctx->needs_input_grad(1);
    const bool want_bias = has_bias(bias) && ctx->needs_input_grad(2);
    const at::Tensor row_grad = row_grads_from_sequences(grads[0], weight, sequences, weight.scalar_type())
                                    .index_select(0, active);
    at::Tensor d_hidden = want_hidden ? at::zeros_like(hidden) : at::Tensor();
    at::Tensor d_head = want_head ? at::zeros(head.sizes(), head.options().dtype(head_grad_dtype(head.scalar_type())))
                                  : at::Tensor();
    at::Tensor d_bias = want_bias ? at::zeros(bias.sizes(), bias.options().dtype(head_grad_dtype(bias.scalar_type())))
                                  : at::Tensor();
    const int64_t count = active.size(0);
    for (int64_t start = 0; start < count; start += chunk) {
      const int64_t n = std::min(chunk, count - start);
      const at::Tensor ids = active.narrow(0, start, n);
      const at::Tensor h = hidden.index_select(0, ids);
      const at::Tensor z = capped(raw_logits(h, head, bias), softcap);
      at::Tensor dz = backward_rows(z, labels.index_select(0, ids), lse.narrow(0, start, n), row_grad.narrow(0, start, n));
      if (softcap > 0) dz = dz * (1 - (z / softcap).square());  // d(c·tanh(x/c))/dx
      if (want_hidden) d_hidden.index_copy_(0, ids, at::mm(dz, head));
      if (want_head) {
        if (d_head.scalar_type() == head.scalar_type())
          d_head.addmm_(dz.t(), h);
        else
          d_head.add_(at::mm(dz.t(), h));
      }
      if (want_bias) d_bias.add_(dz.sum(0, false, d_bias.scalar_type()));
    }
    out[0] = d_hidden;
    out[1] = want_head ? d_head.to(head.scalar_type()) : at::Tensor();
    out[2] = want_bias ? d_bias.to(bias.scalar_type()) : at::Tensor();
    return out;
  }
};

// hidden [2B,T,H], weight [V,H], bias [V]?; `what` is "policy" or "reference".
void check_head(const LinearHead& head, const char* what) {
  const std::string name(what);
  TORCH_CHECK(head.hidden.defined() && head.weight.defined(), name, "Hidden/", name, "Head: missing tensor");
  TORCH_CHECK(head.hidden.dim() == 3, name, "Hidden: expected a 3-D [2B,T,H] tensor, got shape ", shape_str(head.hidden));
  TORCH_CHECK(head.hidden.is_floating_point(), name, "Hidden: expected a floating-point tensor, got ",
              head.hidden.scalar_type());
  TORCH_CHECK(head.weight.dim() == 2 && head.weight.size(1) == head.hidden.size(2), name,
              "Head: expected shape [V, ", head.hidden.size(2), "] (lm_head.weight), got ", shape_str(head.weight));
  TORCH_CHECK(head.weight.scalar_type() == head.hidden.scalar_type(), name, "Head: dtype ", head.weight.scalar_type(),
              " does not match ", name, "Hidden ", head.hidden.scalar_type());
  TORCH_CHECK(head.weight.device() == head.hidden.device(), name, "Head: device ", head.weight.device(),
              " does not match ", name, "Hidden ", head.hidden.device());
  if (head.bias.defined()) {
    TORCH_CHECK(head.bias.dim() == 1 && head.bias.size(0) == head.weight.size(0), name, "Bias: expected shape [",
                head.weight.size(0), "], got ", shape_str(head.bias));
    TORCH_CHECK(head.bias.scalar_type() == head.weight.scalar_type() && head.bias.device() == head.weight.device(), name,
                "Bias: dtype and device must match ", name, "Head");
  }
}

double largest_finite(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return 65504.0;
    case at::kBFloat16: return 3.3895313892515355e38;
    case at::kFloat: return double(std::numeric_limits<float>::max());
    default: return std::numeric_limits<double>::max();
  }
}

// libtorch's CPU kernels have no fp16 matmul ("addmm_impl_cpu_" not implemented for 'Half'), so fp16
// heads on the CPU run in fp32: the logits are then rounded once less, and autograd casts the
// gradients back to fp16.
LinearHead matmul_ready(const LinearHead& head) {
  if (!(head.hidden.scalar_type() == at::kHalf && head.hidden.device().is_cpu())) return head;
  return LinearHead{head.hidden.to(at::kFloat), head.weight.to(at::kFloat),
                    head.bias.defined() ? head.bias.to(at::kFloat) : at::Tensor()};
}

}  // namespace

SequenceLogps sequence_logps_from_hidden(const LinearHead& policy, const LinearHead& reference, const at::Tensor& labels,
                                         const at::Tensor& loss_mask, double epsilon, const ChunkedOptions& options) {
  check_head(policy, "policy");
  check_head(reference, "reference");
  const int64_t rows = policy.hidden.size(0), steps = policy.hidden.size(1), vocab = policy.weight.size(0);
  TORCH_CHECK(rows > 0 && rows % 2 == 0, "policyHidden: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ",
              rows);
  TORCH_CHECK(steps > 0, "policyHidden: T must be positive, got shape ", shape_str(policy.hidden));
  TORCH_CHECK(reference.hidden.size(0) == rows && reference.hidden.size(1) == steps, "referenceHidden: shape ",
              shape_str(reference.hidden), " does not match policyHidden ", shape_str(policy.hidden), " in [2B,T]");
  TORCH_CHECK(reference.weight.size(0) == vocab, "referenceHead: vocabulary ", reference.weight.size(0),
              " does not match policyHead ", vocab);
  TORCH_CHECK(reference.hidden.scalar_type() == policy.hidden.scalar_type(), "referenceHidden: dtype ",
              reference.hidden.scalar_type(), " does not match policyHidden ", policy.hidden.scalar_type());
  TORCH_CHECK(reference.hidden.device() == policy.hidden.device(), "referenceHidden: device ", reference.hidden.device(),
              " does not match policyHidden ", policy.hidden.device());
  check_labels_and_mask(labels, loss_mask, rows, steps, vocab, policy.hidden.device(), "policyHidden");
  TORCH_CHECK(std::isfinite(epsilon) && epsilon >= 0 && epsilon < 1, "epsilon: must be finite and in [0, 1), got ",
              epsilon);
  // c·tanh(z/c) runs in the hidden dtype: a cap beyond its largest finite value becomes inf·0 = NaN.
  const double max_cap = largest_finite(policy.hidden.scalar_type());
  TORCH_CHECK(std::isfinite(options.final_logit_softcap) && options.final_logit_softcap >= 0 &&
                  options.final_logit_softcap <= max_cap,
              "finalLogitSoftcap: must be 0 (off) or a number in (0, ", max_cap, "] (the largest finite ",
              policy.hidden.scalar_type(), "), got ", options.final_logit_softcap);
  TORCH_CHECK(options.chunk_tokens >= 0, "chunkTokens: must be >= 1, got ", options.chunk_tokens);
  // ≈ 32 Mi logits per chunk and model (128 MiB in fp32) unless the caller says otherwise.
  const int64_t chunk =
      options.chunk_tokens > 0 ? options.chunk_tokens : std::max<int64_t>(16, (int64_t(1) << 25) / vocab);

  const auto acc = accumulation_dtype(policy.hidden.scalar_type());
  const int64_t hidden_size = policy.hidden.size(2), reference_size = reference.hidden.size(2);
  const LinearHead p = matmul_ready(policy), r = matmul_ready(reference);
  const variable_list out = ChunkedSequenceLogps::apply(
      p.hidden.reshape({-1, hidden_size}), p.weight, bias_or_empty(p.bias, p.weight),
      r.hidden.detach().reshape({-1, reference_size}), r.weight.detach(),
      bias_or_empty(r.bias, r.weight).detach(), labels.reshape({-1}).contiguous(),
      loss_mask.reshape({-1}).to(acc).contiguous(), epsilon, options.final_logit_softcap, chunk, rows);
  return SequenceLogps{out[0], out[1], out[2], out[3], out[4], out[5], vocab};
}

EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options) {
  check_options(options.loss);
  const SequenceLogps seq =
      sequence_logps_from_hidden(policy, reference, labels, loss_mask, options.loss.epsilon, options);
  return loss_from_sequences(seq, options.loss, accumulation_dtype(policy.hidden.scalar_type()));
}

}  // namespace edpo
