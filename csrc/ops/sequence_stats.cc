#include "sequence_stats.h"

#include "autograd_function.h"

#include <algorithm>

#include "arg_error.h"
#include "backend.h"
#include "pair_loss.h"

namespace edpo {
namespace {

// Gradients through the head for rows `active` of `hidden` [N,H] (in chunks of `chunk`), given each
// active row's policy LSE and its dL/d(log-prob of the label): dz = g·(onehot − softmax) recomputed
// per chunk. Undefined where not wanted; reduced-precision head grads are summed in fp32.
struct HeadGrads {
  at::Tensor hidden, weight, bias;
};
HeadGrads head_backward(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias,
                        const at::Tensor& labels, const at::Tensor& active, const at::Tensor& lse,
                        const at::Tensor& row_grad, double softcap, int64_t chunk, bool want_hidden, bool want_weight,
                        bool want_bias) {
  want_bias = want_bias && has_bias(bias);
  HeadGrads out;
  if (want_hidden) out.hidden = at::zeros_like(hidden);
  if (want_weight) out.weight = head_grad_accumulator(weight);
  if (want_bias) out.bias = head_grad_accumulator(bias);
  const int64_t count = active.size(0);
  for (int64_t start = 0; start < count; start += chunk) {
    const int64_t n = std::min(chunk, count - start);
    const at::Tensor ids = active.narrow(0, start, n);
    const at::Tensor h = hidden.index_select(0, ids);
    const at::Tensor z = head_logits(h, weight, bias, softcap);
    at::Tensor dz =
        backward_rows(z, labels.index_select(0, ids), lse.narrow(0, start, n), row_grad.narrow(0, start, n));
    if (softcap > 0) dz = dz * (1 - (z / softcap).square());  // d(c·tanh(x/c))/dx
    if (want_hidden) out.hidden.index_copy_(0, ids, at::mm(dz, weight));
    if (want_weight) add_weight_grad(out.weight, dz, h);
    if (want_bias) out.bias.add_(dz.sum(0, false, out.bias.scalar_type()));
  }
  if (want_weight) out.weight = out.weight.to(weight.scalar_type());
  if (want_bias) out.bias = out.bias.to(bias.scalar_type());
  return out;
}

// The autograd side both chunked Functions share: what forward saves (the policy's flat hidden
// states and head, flat labels and row weights, the active rows and their LSE) and the backward
// that turns dL/dS per sequence (grads[0]) into gradients for inputs 0..2 (hidden, weight, bias).
void save_for_head_backward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& labels, const at::Tensor& row_weight,
                            const at::Tensor& active, const at::Tensor& active_lse, double softcap, int64_t chunk,
                            int64_t sequences) {
  ctx->save_for_backward({hidden, weight, bias, labels, row_weight, active, active_lse});
  ctx->saved_data["softcap"] = softcap;
  ctx->saved_data["chunk"] = chunk;
  ctx->saved_data["sequences"] = sequences;
}

torch::autograd::variable_list head_backward_from_sequences(torch::autograd::AutogradContext* ctx,
                                                            const torch::autograd::variable_list& grads,
                                                            size_t num_inputs) {
  torch::autograd::variable_list out(num_inputs);
  if (!grads[0].defined()) return out;
  const auto saved = ctx->get_saved_variables();
  const at::Tensor &hidden = saved[0], &weight = saved[1], &bias = saved[2], &labels = saved[3], &row_weight = saved[4],
                   &active = saved[5], &lse = saved[6];
  const int64_t sequences = ctx->saved_data["sequences"].toInt();
  const at::Tensor row_grad =
      row_grads_from_sequences(grads[0], row_weight, sequences, row_weight.scalar_type()).index_select(0, active);
  const HeadGrads g = head_backward(hidden, weight, bias, labels, active, lse, row_grad,
                                    ctx->saved_data["softcap"].toDouble(), ctx->saved_data["chunk"].toInt(),
                                    ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2));
  out[0] = g.hidden;
  out[1] = g.weight;
  out[2] = g.bias;
  return out;
}

// Per-row statistics of one chunk, in the accumulation dtype: [k, n] with the rows below.
enum TokenStat : int { kLogp = 0, kCorrect, kLse, kRefLogp, kKl, kNumTokenStats };

// Log-probs of the labels and argmax hits of one chunk; with reference logits, also the reference
// log-probs and the exact KL Σ_v π_v·(log π_v − log π_ref,v). Rows of `z` are widened to `acc` first.
at::Tensor chunk_stats(const at::Tensor& z, const at::Tensor& zr, const at::Tensor& labels, at::ScalarType acc) {
  const at::Tensor a = z.to(acc);
  const at::Tensor y = labels.unsqueeze(1);
  const at::Tensor lse = at::logsumexp(a, 1);
  at::Tensor out = at::zeros({kNumTokenStats, a.size(0)}, a.options());
  out[kLogp] = a.gather(1, y).squeeze(1) - lse;
  out[kCorrect] = a.argmax(1).eq(labels).to(acc);
  out[kLse] = lse;
  if (zr.defined()) {
    const at::Tensor b = zr.to(acc);
    const at::Tensor log_p = a - lse.unsqueeze(1);
    const at::Tensor log_q = b - at::logsumexp(b, 1, true);
    out[kRefLogp] = log_q.gather(1, y).squeeze(1);
    out[kKl] = (log_p.exp() * (log_p - log_q)).sum(1);
  }
  return out;
}

struct ChunkedSequenceStats : public torch::autograd::Function<ChunkedSequenceStats> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& ref_hidden, const at::Tensor& ref_weight,
                               const at::Tensor& ref_bias, const at::Tensor& labels, const at::Tensor& mask,
                               const at::Tensor& active, double softcap, int64_t chunk, int64_t sequences) {
    const bool with_reference = ref_hidden.numel() > 0;
    const int64_t count = active.size(0);
    at::Tensor stats = at::zeros({kNumTokenStats, hidden.size(0)}, mask.options());
    for (int64_t start = 0; start < count; start += chunk) {
      const at::Tensor ids = active.narrow(0, start, std::min(chunk, count - start));
      const at::Tensor z = head_logits(hidden.index_select(0, ids), weight, bias, softcap);
      const at::Tensor zr =
          with_reference ? head_logits(ref_hidden.index_select(0, ids), ref_weight, ref_bias, softcap) : at::Tensor();
      stats.index_copy_(1, ids, chunk_stats(z, zr, labels.index_select(0, ids), mask.scalar_type()));
    }
    // Masked sums per sequence in float64, as for the ε-DPO sums (spec §8).
    const int64_t positions = mask.size(0) / sequences;
    const at::Tensor w = mask.to(at::kDouble).view({sequences, positions});
    auto seq_sum = [&](int k) { return (stats[k].to(at::kDouble).view({sequences, positions}) * w).sum(1); };
    const at::Tensor none = at::zeros({0}, w.options());
    variable_list out{seq_sum(kLogp), seq_sum(kCorrect), w.sum(1), with_reference ? seq_sum(kRefLogp) : none,
                      with_reference ? seq_sum(kKl) : none};
    save_for_head_backward(ctx, hidden, weight, bias, labels, mask, active, stats[kLse].index_select(0, active),
                           softcap, chunk, sequences);
    ctx->mark_non_differentiable({out[1], out[2], out[3], out[4]});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return head_backward_from_sequences(ctx, grads, 12);
  }
};

}  // namespace

SequenceStats sequence_stats_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                         const at::Tensor& labels, const at::Tensor& loss_mask,
                                         const SequenceStatsOptions& options) {
  check_head(policy, "policy");
  const bool with_reference = reference.hidden.defined() || reference.weight.defined();
  const int64_t rows = policy.hidden.size(0), positions = policy.hidden.size(1);
  EDPO_ARG_CHECK(rows > 0 && positions > 0, "policyHidden: R and T must be positive, got shape ",
                 shape_str(policy.hidden));
  if (with_reference) {
    check_reference_head(policy, reference);
  }
  const ChunkedCall c = prepare_chunked_call(policy, labels, loss_mask, options.final_logit_softcap,
                                             options.chunk_tokens, options.active_rows);
  const LinearHead p = matmul_ready(policy);
  const LinearHead r = with_reference ? matmul_ready(reference) : LinearHead{};
  const at::Tensor none = at::empty({0});
  const variable_list out = ChunkedSequenceStats::apply(
      p.hidden.reshape({-1, p.hidden.size(2)}), p.weight, bias_or_empty(p.bias, p.weight),
      with_reference ? r.hidden.detach().reshape({-1, r.hidden.size(2)}) : none,
      with_reference ? r.weight.detach() : none, with_reference ? bias_or_empty(r.bias, r.weight).detach() : none,
      c.labels, c.row_weight, c.active, options.final_logit_softcap, c.chunk, rows);
  SequenceStats s{out[0], out[1], out[2], at::Tensor(), at::Tensor(), c.input_error};
  if (with_reference) {
    s.ref_logps = out[3];
    s.kl = out[4];
  }
  return s;
}

}  // namespace edpo
