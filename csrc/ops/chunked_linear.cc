// The chunked lm_head (first half: checks, a chunk's logits, the gradient accumulators) and the
// chunked fused-linear ε-DPO op on it (second half).
//
// Chunked fused-linear ε-DPO: for each chunk of completion tokens, lm_head matmuls give both
// models' logits, the fused row pass reduces them to per-row statistics, and the chunk's logits
// are dropped. Prompt tokens (mask 0) never reach the matmul.
//
// The gradient is produced in the forward, from the logits already there (Liger's approach),
// instead of recomputing each chunk's policy logits in a backward pass. A row's logit gradient is
// dL/dS of its sequence times (onehot − softmax), and dL/dS needs the sums of the whole pair
// (S, S±, S_ref: the step decision, β_i and the margin), so chunks hold whole pairs
// (the chunk plan below): when a chunk's fused pass is done, the pairs that end in it have their dL/dS
// (pair_loss's dL/dS on their [2m] sums) and the chunk's ∂h rows, ∂W and
// ∂b follow at once. A pair longer than a chunk cannot wait in memory as logits; but ε-DPO's loss
// sees a pair only through ρ = S(chosen) − S(rejected), so dL/dS is +γ on its chosen rows and −γ
// on its rejected rows, one unknown scalar per pair. Its open chunks add their ±weight-scaled
// gradient to an accumulator of ∂W's shape (and ∂b's) and leave their ∂h rows unscaled; the chunk
// where the pair ends adds γ·accumulator to ∂W and scales those ∂h rows. Exact, no recompute.
// Where that accumulator would outweigh the chunks' logits (a wide head, a small chunk), the open
// chunks are recomputed instead once their pair ends (see epsilon_dpo_loss_from_hidden).
//
// Measured against the recompute-in-backward version it replaces (bench/RESULTS.md): the chunked
// path did 5 head matmuls per chunk where the materialised path does 4 (one extra policy matmul),
// and the extra pass read the chunk's logits again; now it does the same 4. The cost: ∂W (and the
// open pair's accumulator, when a pair outgrows a chunk) lives from the forward to the backward,
// which only scales it by the upstream gradient (1/accumulation steps, or anything else). Both are
// [V,H]: memory stays independent of N. Under evaluation (no gradient wanted) none of it is done.
// Overlapping the recompute was the other option; on a CPU the recompute is compute-bound on the
// same cores, so overlap cannot hide it, and on a GPU one stream is already full with the matmuls.
#include "chunked_linear.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "arg_error.h"
#include "autograd_function.h"
#include "backend.h"
#include "bf16_criterion.h"
#include "host_sync.h"
#include "math/row_stats.h"
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

int64_t default_chunk_rows(int64_t vocab, c10::DeviceType device) {
  EDPO_ARG_CHECK(vocab > 0, "vocab: must be >= 1, got ", vocab);
  if (device == c10::DeviceType::CPU) {
    // ≈ 32 Mi logits per chunk and model (128 MiB in fp32): a chunk's passes stay near the caches.
    return std::max<int64_t>(16, (int64_t(1) << 25) / vocab);
  }
  // A GPU's chunk costs launches and a pass over ∂W each, not cache misses: ≈ 256 Mi logits, in whole
  // 64-row tiles. On the H200 (N = 16384, V = 128256, H = 4096, bf16) the chunked op took 2.63× the
  // materialised op's time at 261 rows and 1.42× at 2048, for 4.6% more peak (bench/RESULTS.md).
  return std::max<int64_t>(64, ((int64_t(1) << 28) / vocab) / 64 * 64);
}

int64_t chunk_rows(int64_t chunk_tokens, int64_t vocab, c10::DeviceType device) {
  EDPO_ARG_CHECK(chunk_tokens >= 0, "chunkTokens: must be >= 1, got ", chunk_tokens);
  return chunk_tokens > 0 ? chunk_tokens : default_chunk_rows(vocab, device);
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

ChunkedCall prepare_chunked_call(const LinearHead& policy, const at::Tensor& labels, const at::Tensor& loss_mask,
                                 double softcap, int64_t chunk_tokens, const at::Tensor& active_rows_given) {
  ChunkedCall c;
  c.rows = policy.hidden.size(0);
  c.positions = policy.hidden.size(1);
  c.vocab = policy.weight.size(0);
  c.input_error =
      check_labels_and_mask(labels, loss_mask, c.rows, c.positions, c.vocab, policy.hidden.device(), "policyHidden");
  check_softcap(softcap, policy.hidden.scalar_type());
  c.chunk = chunk_rows(chunk_tokens, c.vocab, policy.hidden.device().type());
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

namespace {

// Which of the policy's head inputs want a gradient, decided before the Function's forward (where
// grad mode is off).
struct WantGrads {
  bool hidden = false, weight = false, bias = false;
  bool any() const { return hidden || weight || bias; }
};

// t·g in the accumulation dtype, then in `dtype` (a reduced-precision t is not multiplied in bf16).
at::Tensor scaled(const at::Tensor& t, const at::Tensor& g, at::ScalarType dtype) {
  const auto acc = accumulation_dtype(t.scalar_type());
  return (t.to(acc) * g.to(acc)).to(dtype);
}

struct ChunkedEpsilonDpoLoss : public torch::autograd::Function<ChunkedEpsilonDpoLoss> {
  static constexpr size_t kNumInputs = 13;

  static variable_list forward(AutogradContext* ctx, const at::Tensor& policy_hidden, const at::Tensor& policy_weight,
                               const at::Tensor& policy_bias, const at::Tensor& reference_hidden,
                               const at::Tensor& reference_weight, const at::Tensor& reference_bias,
                               const at::Tensor& labels, const at::Tensor& row_weight, const at::Tensor& input_error,
                               const PairChunkPlan& plan, const ChunkedOptions& options, int64_t positions,
                               WantGrads want) {
    const int64_t rows = policy_hidden.size(0), vocab = policy_weight.size(0);
    const int64_t sequences = rows / positions, pairs = sequences / 2;
    const double epsilon = options.loss.epsilon, softcap = options.final_logit_softcap;
    const bool bf16 = options.loss.bf16_criterion;
    const auto acc = row_weight.scalar_type();
    // The plan's index lists, copied once (non_blocking: pageable memory is staged, no device wait).
    auto on_device = [&](const at::Tensor& host) { return host.to(policy_hidden.device(), at::kLong, true); };
    const at::Tensor order = on_device(plan.order), order_seq = on_device(plan.order_sequence),
                     finished = on_device(plan.finished_sequences);

    at::Tensor stats = at::zeros({kNumRowStats, rows}, row_weight.options());
    // --criterion-precision bf16: the bf16-rounded per-token log-probs, per chunk like the stats.
    at::Tensor criterion_rows =
        bf16 ? at::zeros({kNumCriterionRows, rows}, row_weight.options().dtype(at::kFloat)) : at::Tensor();
    // Every sequence's sums, filled as its pair ends (pairs without completion tokens keep zeros).
    const auto f64 = row_weight.options().dtype(at::kDouble);
    SequenceLogps all{at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      at::zeros({sequences}, f64),
                      vocab,
                      input_error,
                      bf16 ? at::zeros({kNumCriterionRows, sequences}, f64) : at::Tensor()};

    // dL/dS per sequence as pairs end; ±1 (chosen/rejected) scales an open pair's rows meanwhile.
    at::Tensor seq_grad, seq_sign, grad_hidden, grad_weight, grad_bias, open_weight, open_bias;
    if (want.any()) {
      seq_grad = at::zeros({sequences}, row_weight.options());
      seq_sign = at::cat({at::ones({pairs}, row_weight.options()), at::full({pairs}, -1.0, row_weight.options())});
      if (want.hidden) grad_hidden = at::zeros_like(policy_hidden);
      if (want.weight) grad_weight = head_grad_accumulator(policy_weight);
      if (want.bias) grad_bias = head_grad_accumulator(policy_bias);
      if (want.weight && plan.any_open && !plan.recompute_open) open_weight = head_grad_accumulator(policy_weight);
      if (want.bias && plan.any_open && !plan.recompute_open) open_bias = head_grad_accumulator(policy_bias);
    }
    // A chunk's gradient from its policy logits and the rows' dL/d(label log-prob): ∂h rows, and ∂W
    // and ∂b into the accumulators (the open pair's when `open`).
    auto add_grads = [&](const at::Tensor& ids, const at::Tensor& h, const at::Tensor& policy,
                         const at::Tensor& chunk_labels, const at::Tensor& lse, const at::Tensor& row_grad, bool open) {
      at::Tensor dz = backward_rows(policy, chunk_labels, lse, row_grad);
      if (softcap > 0) dz = dz * (1 - (policy / softcap).square());  // d(c·tanh(x/c))/dx
      if (want.hidden) grad_hidden.index_copy_(0, ids, at::mm(dz, policy_weight));
      if (want.weight) add_weight_grad(open ? open_weight : grad_weight, dz, h);
      if (want.bias) (open ? open_bias : grad_bias).add_(dz.sum(0, false, grad_bias.scalar_type()));
    };

    for (const PairChunk& c : plan.chunks) {
      const int64_t n = c.end - c.begin;
      const at::Tensor ids = order.narrow(0, c.begin, n);
      const at::Tensor h = policy_hidden.index_select(0, ids);
      const at::Tensor chunk_labels = labels.index_select(0, ids), chunk_weight = row_weight.index_select(0, ids);
      at::Tensor policy = head_logits(h, policy_weight, policy_bias, softcap);
      at::Tensor chunk_stats;
      {  // the reference's logits are dropped before the gradient's are made
        const at::Tensor reference =
            head_logits(reference_hidden.index_select(0, ids), reference_weight, reference_bias, softcap);
        chunk_stats = forward_rows(policy, reference, chunk_labels, chunk_weight, epsilon);
        if (bf16) criterion_rows.index_copy_(1, ids, bf16_criterion_rows(policy, reference, chunk_labels, epsilon));
      }
      stats.index_copy_(1, ids, chunk_stats);
      if (c.finished_end > c.finished_begin) {
        const at::Tensor seqs = finished.narrow(0, c.finished_begin, c.finished_end - c.finished_begin);
        SequenceLogps s = sums_of(stats, criterion_rows, row_weight, seqs, positions, vocab);
        for (auto [to, from] : {std::pair<at::Tensor*, const at::Tensor*>{&all.policy, &s.policy},
                                {&all.reference, &s.reference},
                                {&all.plus, &s.plus},
                                {&all.minus, &s.minus},
                                {&all.logit_sum, &s.logit_sum},
                                {&all.token_count, &s.token_count}})
          to->index_copy_(0, seqs, *from);
        if (bf16) all.criterion.index_copy_(1, seqs, s.criterion);
        if (want.any()) {
          s.input_error = at::zeros({}, f64);
          seq_grad.index_copy_(0, seqs, pair_loss(s, options.loss, at::kDouble, pairs).grad_sums.to(acc));
        }
      }
      if (!want.any() || (c.open && plan.recompute_open)) continue;

      // dL/d(label log-prob) of each row: its sequence's dL/dS (±1 while its pair is open) × weight.
      const at::Tensor coefficient = (c.open ? seq_sign : seq_grad).index_select(0, order_seq.narrow(0, c.begin, n));
      add_grads(ids, h, policy, chunk_labels, chunk_stats[kPolicyLse], coefficient * chunk_weight, c.open);
      policy = at::Tensor();

      if (c.finishes_open_pair >= 0) {
        // The open pair's γ = dL/dS(chosen) is known now.
        const int64_t p = c.finishes_open_pair;
        const at::Tensor gamma = seq_grad.narrow(0, p, 1);
        if (plan.recompute_open) {
          // Its open chunks again: policy logits, then the gradient with the known coefficients.
          for (const auto& [b, e] : plan.open_ranges[p]) {
            const at::Tensor open_ids = order.narrow(0, b, e - b);
            const at::Tensor open_h = policy_hidden.index_select(0, open_ids);
            const at::Tensor row_grad =
                seq_grad.index_select(0, order_seq.narrow(0, b, e - b)) * row_weight.index_select(0, open_ids);
            add_grads(open_ids, open_h, head_logits(open_h, policy_weight, policy_bias, softcap),
                      labels.index_select(0, open_ids), stats[kPolicyLse].index_select(0, open_ids), row_grad, false);
          }
          continue;
        }
        // Its unit-scale gradients take it.
        if (want.weight) {
          grad_weight.addcmul_(open_weight, gamma.view({1, 1}).to(grad_weight.scalar_type()));
          open_weight.zero_();
        }
        if (want.bias) {
          grad_bias.addcmul_(open_bias, gamma.to(grad_bias.scalar_type()));
          open_bias.zero_();
        }
        if (want.hidden)
          for (const auto& [b, e] : plan.open_ranges[p]) {
            const at::Tensor open_ids = order.narrow(0, b, e - b);
            grad_hidden.index_copy_(
                0, open_ids,
                scaled(grad_hidden.index_select(0, open_ids), gamma.view({1, 1}), grad_hidden.scalar_type()));
          }
      }
    }

    const PairLoss out = pair_loss(all, options.loss, acc, pairs);
    ctx->save_for_backward({grad_hidden, grad_weight, grad_bias});
    ctx->saved_data["weight_dtype"] = int64_t(policy_weight.scalar_type());
    ctx->mark_non_differentiable({out.record});
    return {out.loss, out.record};
  }

  // The gradients were made in the forward for an upstream gradient of 1: scale them by the real one.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(kNumInputs);
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const auto weight_dtype = static_cast<at::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
    const at::Tensor& g = grads[0];
    if (saved[0].defined()) out[0] = scaled(saved[0], g, saved[0].scalar_type());
    if (saved[1].defined()) out[1] = scaled(saved[1], g, weight_dtype);
    if (saved[2].defined()) out[2] = scaled(saved[2], g, weight_dtype);
    return out;
  }
};

}  // namespace

EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options) {
  check_options(options.loss);
  check_head(policy, "policy");
  const int64_t rows = policy.hidden.size(0), positions = policy.hidden.size(1);
  EDPO_ARG_CHECK(rows > 0 && rows % 2 == 0,
                 "policyHidden: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ", rows);
  EDPO_ARG_CHECK(positions > 0, "policyHidden: T must be positive, got shape ", shape_str(policy.hidden));
  check_reference_head(policy, reference);
  const ChunkedCall c = prepare_chunked_call(policy, labels, loss_mask, options.final_logit_softcap,
                                             options.chunk_tokens, options.active_rows);
  at::Tensor active_host = c.active_host;
  if (!active_host.defined()) {
    count_host_sync();  // the chunk plan is made on the host
    active_host = c.active.cpu();
  }
  const LinearHead p = matmul_ready(policy), r = matmul_ready(reference);
  const at::Tensor bias = bias_or_empty(p.bias, p.weight);
  const bool grad_mode = at::GradMode::is_enabled();
  WantGrads want;
  want.hidden = grad_mode && p.hidden.requires_grad();
  want.weight = grad_mode && p.weight.requires_grad();
  want.bias = grad_mode && has_bias(bias) && bias.requires_grad();
  PairChunkPlan plan = plan_pair_chunks(active_host, rows / 2, positions, c.chunk);
  if (plan.any_open && want.weight) {
    // A pair longer than a chunk: its ∂W waits in an accumulator of ∂W's shape, worth `held` rows of
    // both models' logits. The default chunk shrinks by that much, so the working memory stays at
    // about two default chunks, when half a chunk is left; a caller's chunk keeps its size and takes
    // the accumulator when it is no larger than the chunk's logits. Otherwise (a wide head: a
    // 4096-wide fp32 accumulator outweighs 2^25/V rows) those chunks are recomputed once the pair
    // ends: no extra memory, one more policy matmul on their rows.
    const int64_t acc_bytes = int64_t(c10::elementSize(accumulation_dtype(p.weight.scalar_type())));
    const int64_t held =
        (p.weight.size(1) * acc_bytes + 2 * p.weight.element_size() - 1) / (2 * p.weight.element_size());
    const bool defaulted = options.chunk_tokens == 0;
    if (defaulted && c.chunk - held >= c.chunk / 2)
      plan = plan_pair_chunks(active_host, rows / 2, positions, c.chunk - held);
    else if (defaulted || held > c.chunk)
      plan.recompute_open = true;
  }
  const variable_list out = ChunkedEpsilonDpoLoss::apply(
      p.hidden.reshape({-1, p.hidden.size(2)}), p.weight, bias, r.hidden.detach().reshape({-1, r.hidden.size(2)}),
      r.weight.detach(), bias_or_empty(r.bias, r.weight).detach(), c.labels, c.row_weight, c.input_error, plan, options,
      positions, want);
  return EpsilonDpoOutput{out[0], out[1]};
}

}  // namespace edpo
