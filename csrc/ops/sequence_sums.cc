#include "sequence_sums.h"

#include "backend.h"
#include "math/row_stats.h"

namespace edpo {

SequenceLogps sums_from_row_stats(const at::Tensor& stats, const at::Tensor& row_weight, int64_t sequences,
                                  int64_t vocab) {
  const Backend* backend = find_backend(stats.device().type());
  if (backend != nullptr && backend->sequence_sums != nullptr) {
    const std::vector<at::Tensor> sums = backend->sequence_sums(stats, row_weight, sequences);
    return SequenceLogps{sums[kSumPolicy], sums[kSumReference], sums[kSumPlus], sums[kSumMinus],
                         sums[kSumLogits], sums[kSumTokens],    vocab};
  }
  const int64_t positions = row_weight.size(0) / sequences;
  // Masked sums in float64 whatever the row precision (spec §8).
  const at::Tensor w = row_weight.to(at::kDouble).view({sequences, positions});
  auto seq_sum = [&](int k) { return (stats[k].to(at::kDouble).view({sequences, positions}) * w).sum(1); };
  return SequenceLogps{seq_sum(kPolicyLogp), seq_sum(kReferenceLogp), seq_sum(kPlusLogp),
                       seq_sum(kMinusLogp),  seq_sum(kLogitSum),     w.sum(1),
                       vocab};
}

at::Tensor row_grads_from_sequences(const at::Tensor& grad_sequences, const at::Tensor& row_weight, int64_t sequences,
                                    at::ScalarType dtype) {
  const Backend* backend = find_backend(row_weight.device().type());
  if (backend != nullptr && backend->row_grads != nullptr && dtype == at::kFloat)
    return backend->row_grads(grad_sequences, row_weight, sequences);
  const int64_t positions = row_weight.size(0) / sequences;
  return (grad_sequences.to(at::kDouble).view({sequences, 1}) * row_weight.to(at::kDouble).view({sequences, positions}))
      .reshape({-1})
      .to(dtype)
      .contiguous();
}

}  // namespace edpo
