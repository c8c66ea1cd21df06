// The lm_head in chunks, and the ε-DPO loss on it. The head part (hidden states and a [V,H] weight,
// turned into one chunk of logits at a time; the checks and set-up of a chunked call; the
// gradient accumulators) is shared with the per-sequence log-prob op (sequence_stats.h). The op
// computes the ε-DPO loss from hidden states chunk by chunk, so that neither model's [N,V] logits
// ever exist in memory at once (spec §10). Same outputs as epsilon_dpo_loss.
#pragma once
#include <ATen/ATen.h>

#include "epsilon_dpo.h"

namespace edpo {

struct LinearHead {
  at::Tensor hidden;  // [R,T,H]
  at::Tensor weight;  // [V,H]  (lm_head.weight, HF layout)
  at::Tensor bias;    // [V] or undefined
};

// hidden [R,T,H] floating, weight [V,H] and bias [V] of the same dtype and device; `what` is the
// argument prefix users see ("policy" → policyHidden/policyHead/policyBias).
void check_head(const LinearHead& head, const char* what);
// A reference head for `policy` (already checked): its own check, then the same rows, positions,
// vocabulary, dtype and device.
void check_reference_head(const LinearHead& policy, const LinearHead& reference);
// 0 (off) or within the hidden dtype's finite range: c·tanh(z/c) runs in that dtype.
void check_softcap(double softcap, at::ScalarType hidden_dtype);
// Completion tokens per chunk when the caller gives none, for a vocabulary on a device type: about
// 2^25 logits per chunk and model on the CPU, 2^28 on a GPU (see chunked_linear.cc).
int64_t default_chunk_rows(int64_t vocab, c10::DeviceType device);
// Completion tokens per chunk: the caller's, or the device's default.
int64_t chunk_rows(int64_t chunk_tokens, int64_t vocab, c10::DeviceType device);
// The flat row indices [n] int64 where `row_weight` [N] (the flattened mask) is non-zero, which the
// chunked ops run through the head. `given` (the caller's activeRows, who knows the mask on the
// host) costs no device read: it is checked eagerly on the CPU and through `input_error`'s
// kInputErrorActiveRows bit elsewhere. Without it, nonzero() reads the count (one counted sync).
at::Tensor active_rows(const at::Tensor& given, const at::Tensor& row_weight, at::Tensor& input_error);

// The same head, ready for the matmul on its device (fp16 on the CPU runs in fp32).
LinearHead matmul_ready(const LinearHead& head);
// Autograd Functions cannot take undefined tensors: a missing bias travels as a [0] tensor.
at::Tensor bias_or_empty(const at::Tensor& bias, const at::Tensor& weight);
bool has_bias(const at::Tensor& bias);

// Logits of `hidden` rows [n,H]: h·Wᵀ + b, soft-capped when softcap > 0. Contiguous.
at::Tensor head_logits(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias, double softcap);

// A zero accumulator for a head parameter's gradient: fp32 for reduced-precision heads, fp64 for fp64.
at::Tensor head_grad_accumulator(const at::Tensor& param);
// acc [V,H] += dzᵀ·h for a chunk's logit gradients dz [n,V] and hidden states h [n,H].
void add_weight_grad(at::Tensor& acc, const at::Tensor& dz, const at::Tensor& h);

// What both chunked ops do before their autograd Function, once per call: labels and mask checked
// against the policy's [R,T] (a device-side error flag where a check would read the device), the
// soft-cap checked, the chunk size, the flat row weights in the accumulation dtype, and the rows
// with a non-zero weight (the caller's `active_rows`, checked, or found on the device). The caller's
// list may live on the CPU for tensors on a device: it is copied there once.
struct ChunkedCall {
  int64_t rows = 0, positions = 0, vocab = 0, chunk = 0;
  at::ScalarType acc = at::kFloat;
  at::Tensor input_error, row_weight, active, labels;
  at::Tensor active_host;  // the active rows on the CPU when that costs no device read, else undefined
};
ChunkedCall prepare_chunked_call(const LinearHead& policy, const at::Tensor& labels, const at::Tensor& loss_mask,
                                 double softcap, int64_t chunk_tokens, const at::Tensor& active_rows_given);

struct ChunkedOptions {
  EpsilonDpoOptions loss;
  double final_logit_softcap = 0;  // > 0: logits = c·tanh(z/c) (Gemma-2)
  int64_t chunk_tokens = 0;        // 0: pick from V and the device (default_chunk_rows)
  at::Tensor active_rows;          // optional: see active_rows above
};

// Per-sequence sums (spec §3); S is differentiable w.r.t. policy.hidden, policy.weight and policy.bias.
EpsilonDpoOutput epsilon_dpo_loss_from_hidden(const LinearHead& policy, const LinearHead& reference,
                                              const at::Tensor& labels, const at::Tensor& loss_mask,
                                              const ChunkedOptions& options);

}  // namespace edpo
