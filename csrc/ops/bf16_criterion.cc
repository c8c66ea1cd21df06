#include "bf16_criterion.h"

namespace edpo {
namespace {

at::Tensor to_bf16(const at::Tensor& x) { return x.to(at::kBFloat16); }
at::Tensor to_f32(const at::Tensor& x) { return x.to(at::kFloat); }
// One eager bf16 op with a Python-float scalar: CUDA keeps the scalar in fp32 (it is NOT rounded to
// bf16 first, unlike PyTorch 1.13's CPU kernels), computes in fp32 and rounds the result.
at::Tensor scaled(const at::Tensor& x16, double s) { return to_bf16(to_f32(x16) * static_cast<float>(s)); }
// log_softmax on bf16 input: max, Σexp and x − max − log Σ in fp32, output rounded to bf16; then
// the label's entry (a gather moves values, it does not round).
at::Tensor label_logp(const at::Tensor& logits16, const at::Tensor& labels) {
  return to_bf16(at::log_softmax(to_f32(logits16), -1).gather(1, labels.unsqueeze(1)).squeeze(1));
}

}  // namespace

at::Tensor bf16_criterion_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                               double epsilon) {
  const at::Tensor a = to_bf16(policy), b = to_bf16(reference.detach());
  const at::Tensor y = labels.clamp(0, policy.size(1) - 1);
  // p_epsilon_logits = ((1 + ε) * logits) − (ε * ref_logits); n_epsilon = ((1 − ε) * logits) + (ε * ref_logits)
  const at::Tensor eps_b = scaled(b, epsilon);
  const at::Tensor plus = to_bf16(to_f32(scaled(a, 1 + epsilon)) - to_f32(eps_b));
  const at::Tensor minus = to_bf16(to_f32(scaled(a, 1 - epsilon)) + to_f32(eps_b));
  return at::stack({label_logp(a, y), label_logp(plus, y), label_logp(minus, y)}).to(at::kFloat);
}

at::Tensor bf16_criterion_sums(const at::Tensor& rows, const at::Tensor& row_weight, int64_t sequences) {
  const int64_t positions = row_weight.size(0) / sequences;
  // per_token_logps[~loss_mask] = 0, then .sum(-1): fp32 accumulation, one rounding to bf16.
  const at::Tensor w = to_f32(row_weight).view({1, sequences, positions});
  const at::Tensor sums = (to_f32(rows).view({kNumCriterionRows, sequences, positions}) * w).sum(2);
  return to_bf16(sums).to(at::kDouble);
}

at::Tensor bf16_log_ratio(const at::Tensor& chosen, const at::Tensor& rejected) {
  return to_bf16(to_f32(chosen) - to_f32(rejected)).to(at::kDouble);
}

}  // namespace edpo
