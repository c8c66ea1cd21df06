#include "linear_head.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "arg_error.h"
#include "host_sync.h"
#include "op_checks.h"
#include "backend.h"
#include "pair_loss.h"

namespace edpo {
namespace {

double largest_finite(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return 65504.0;
    case at::kBFloat16:
      return 3.3895313892515355e38;
    case at::kFloat:
      return double(std::numeric_limits<float>::max());
    default:
      return std::numeric_limits<double>::max();
  }
}

// Vocabulary rows per block of a reduced-precision head's gradient product (see head_backward).
constexpr int64_t kGradVocabBlock = 16384;

// Grads of reduced-precision heads are summed over chunks in fp32, then rounded once.
at::ScalarType head_grad_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

void check_head(const LinearHead& head, const char* what) {
  const std::string name(what);
  EDPO_ARG_CHECK(head.hidden.defined() && head.weight.defined(), name, "Hidden/", name, "Head: missing tensor");
  EDPO_ARG_CHECK(head.hidden.dim() == 3, name, "Hidden: expected a 3-D [2B,T,H] tensor, got shape ",
                 shape_str(head.hidden));
  EDPO_ARG_CHECK(head.hidden.is_floating_point(), name, "Hidden: expected a floating-point tensor, got ",
                 head.hidden.scalar_type());
  EDPO_ARG_CHECK(head.weight.dim() == 2 && head.weight.size(1) == head.hidden.size(2), name,
                 "Head: expected shape [V, ", head.hidden.size(2), "] (lm_head.weight), got ", shape_str(head.weight));
  EDPO_ARG_CHECK(head.weight.scalar_type() == head.hidden.scalar_type(), name, "Head: dtype ",
                 head.weight.scalar_type(), " does not match ", name, "Hidden ", head.hidden.scalar_type());
  EDPO_ARG_CHECK(head.weight.device() == head.hidden.device(), name, "Head: device ", head.weight.device(),
                 " does not match ", name, "Hidden ", head.hidden.device());
  if (head.bias.defined()) {
    EDPO_ARG_CHECK(head.bias.dim() == 1 && head.bias.size(0) == head.weight.size(0), name, "Bias: expected shape [",
                   head.weight.size(0), "], got ", shape_str(head.bias));
    EDPO_ARG_CHECK(head.bias.scalar_type() == head.weight.scalar_type() && head.bias.device() == head.weight.device(),
                   name, "Bias: dtype and device must match ", name, "Head");
  }
}

void check_reference_head(const LinearHead& policy, const LinearHead& reference) {
  check_head(reference, "reference");
  EDPO_ARG_CHECK(reference.hidden.size(0) == policy.hidden.size(0) && reference.hidden.size(1) == policy.hidden.size(1),
                 "referenceHidden: shape ", shape_str(reference.hidden), " does not match policyHidden ",
                 shape_str(policy.hidden), " in its first two dimensions");
  EDPO_ARG_CHECK(reference.weight.size(0) == policy.weight.size(0), "referenceHead: vocabulary ",
                 reference.weight.size(0), " does not match policyHead ", policy.weight.size(0));
  EDPO_ARG_CHECK(reference.hidden.scalar_type() == policy.hidden.scalar_type(), "referenceHidden: dtype ",
                 reference.hidden.scalar_type(), " does not match policyHidden ", policy.hidden.scalar_type());
  EDPO_ARG_CHECK(reference.hidden.device() == policy.hidden.device(), "referenceHidden: device ",
                 reference.hidden.device(), " does not match policyHidden ", policy.hidden.device());
}

void check_softcap(double softcap, at::ScalarType hidden_dtype) {
  // c·tanh(z/c) runs in the hidden dtype: a cap beyond its largest finite value becomes inf·0 = NaN.
  const double max_cap = largest_finite(hidden_dtype);
  EDPO_ARG_CHECK(std::isfinite(softcap) && softcap >= 0 && softcap <= max_cap,
                 "finalLogitSoftcap: must be 0 (off) or a number in (0, ", max_cap, "] (the largest finite ",
                 hidden_dtype, "), got ", softcap);
}

int64_t chunk_rows(int64_t chunk_tokens, int64_t vocab) {
  EDPO_ARG_CHECK(chunk_tokens >= 0, "chunkTokens: must be >= 1, got ", chunk_tokens);
  // ≈ 32 Mi logits per chunk and model (128 MiB in fp32) unless the caller says otherwise.
  return chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(16, (int64_t(1) << 25) / vocab);
}

at::Tensor active_rows(const at::Tensor& given, const at::Tensor& row_weight, at::Tensor& input_error) {
  if (!given.defined()) {
    count_host_sync();  // nonzero() must learn the count on the host
    return row_weight.nonzero().view({-1});
  }
  EDPO_ARG_CHECK(given.dim() == 1 && given.scalar_type() == at::kLong, "activeRows: expected a 1-D int64 tensor, got ",
                 given.scalar_type(), " of shape ", shape_str(given));
  EDPO_ARG_CHECK(given.device() == row_weight.device() || given.device().is_cpu(), "activeRows: device ",
                 given.device(), " is neither the CPU nor the lossMask's ", row_weight.device());
  if (given.device() != row_weight.device()) {
    // A host-side list (the collator's) is copied once; non_blocking: pageable memory is staged
    // by the driver, so the copy neither waits for the device nor outlives `given`.
    return active_rows(given.to(row_weight.device(), at::kLong, /*non_blocking=*/true), row_weight, input_error);
  }
  const int64_t rows = row_weight.size(0), n = given.size(0);
  // Exactly the non-zero rows: strictly ascending, each one on, as many as there are.
  const at::Tensor ascending = n > 1 ? given.narrow(0, 1, n - 1).gt(given.narrow(0, 0, n - 1)).all()
                                     : at::ones({}, given.options().dtype(at::kBool));
  const at::Tensor in_range = given.ge(0).logical_and(given.lt(rows)).all();
  const at::Tensor on = row_weight.index_select(0, given.clamp(0, std::max<int64_t>(rows - 1, 0))).ne(0).all();
  const at::Tensor counted = row_weight.ne(0).sum().eq(n);
  const at::Tensor ok = ascending.logical_and(in_range).logical_and(on).logical_and(counted);
  if (row_weight.device().is_cpu()) {
    EDPO_ARG_CHECK(ok.item<bool>(), kInputErrorActiveRowsMessage);
  } else {
    input_error = input_error + ok.logical_not().to(at::kDouble) * double(kInputErrorActiveRows);
  }
  return given;
}

// libtorch's CPU kernels have no fp16 matmul ("addmm_impl_cpu_" not implemented for 'Half'), so fp16
// heads on the CPU run in fp32: the logits are then rounded once less, and autograd casts the
// gradients back to fp16.
LinearHead matmul_ready(const LinearHead& head) {
  if (!(head.hidden.scalar_type() == at::kHalf && head.hidden.device().is_cpu())) return head;
  return LinearHead{head.hidden.to(at::kFloat), head.weight.to(at::kFloat),
                    head.bias.defined() ? head.bias.to(at::kFloat) : at::Tensor()};
}

bool has_bias(const at::Tensor& bias) { return bias.numel() > 0; }

at::Tensor bias_or_empty(const at::Tensor& bias, const at::Tensor& weight) {
  return bias.defined() ? bias : at::empty({0}, weight.options());
}

at::Tensor head_logits(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias, double softcap) {
  const at::Tensor z = has_bias(bias) ? at::addmm(bias, hidden, weight.t()) : at::mm(hidden, weight.t());
  return softcap > 0 ? (at::tanh(z / softcap) * softcap).contiguous() : z.contiguous();
}

at::Tensor head_grad_accumulator(const at::Tensor& param) {
  return at::zeros(param.sizes(), param.options().dtype(head_grad_dtype(param.scalar_type())));
}

void add_weight_grad(at::Tensor& acc, const at::Tensor& dz, const at::Tensor& h) {
  if (acc.scalar_type() == dz.scalar_type()) {
    acc.addmm_(dz.t(), h);
    return;
  }
  // By vocabulary block: the product's temporary is [block, H], not a second [V, H] beside
  // the fp32 accumulator (272 MB for a bf16 151936×896 head).
  const int64_t vocab = acc.size(0);
  for (int64_t v0 = 0; v0 < vocab; v0 += kGradVocabBlock) {
    const int64_t nv = std::min(kGradVocabBlock, vocab - v0);
    acc.narrow(0, v0, nv).add_(at::mm(dz.narrow(1, v0, nv).t(), h));
  }
}

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

ChunkedCall prepare_chunked_call(const LinearHead& policy, const at::Tensor& labels, const at::Tensor& loss_mask,
                                 double softcap, int64_t chunk_tokens, const at::Tensor& active_rows_given) {
  ChunkedCall c;
  c.rows = policy.hidden.size(0);
  c.positions = policy.hidden.size(1);
  c.vocab = policy.weight.size(0);
  c.input_error =
      check_labels_and_mask(labels, loss_mask, c.rows, c.positions, c.vocab, policy.hidden.device(), "policyHidden");
  check_softcap(softcap, policy.hidden.scalar_type());
  c.chunk = chunk_rows(chunk_tokens, c.vocab);
  c.acc = accumulation_dtype(policy.hidden.scalar_type());
  c.row_weight = loss_mask.reshape({-1}).to(c.acc).contiguous();
  c.active = active_rows(active_rows_given, c.row_weight, c.input_error);
  if (c.active.is_cpu())
    c.active_host = c.active;
  else if (active_rows_given.defined() && active_rows_given.is_cpu())
    c.active_host = active_rows_given.contiguous();
  c.labels = labels.reshape({-1}).contiguous();
  return c;
}

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

}  // namespace edpo
