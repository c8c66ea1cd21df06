// The authors' bf16 step decision (spec §8; --criterion-precision bf16): their trainer keeps the
// logits in bf16 and runs the mixtures, log-softmax, label gathers, masked sums and log-ratios as
// eager bf16 PyTorch ops on a GPU, each computed in fp32 (CUDA's opmath) and rounded to bf16 once.
// These functions reproduce that rounding with ATen ops on any device, for the decision s_i only:
// the loss and its gradient keep the exact fp32/fp64 path. docs/epsilon-dpo.md has the formulas.
#pragma once
#include <ATen/ATen.h>

namespace edpo {

// Rows of the bf16 criterion: the label's log-prob under a, m+ = (1+ε)a − εb and m− = (1−ε)a + εb.
enum CriterionRow : int { kCriterionPolicy = 0, kCriterionPlus, kCriterionMinus, kNumCriterionRows };

// [kNumCriterionRows, n] float32, every value a bf16 number: per-token log-probs of `labels` [n]
// (clamped into [0, V); masked rows are zeroed by the sums) from logits [n,V] rounded to bf16.
at::Tensor bf16_criterion_rows(const at::Tensor& policy, const at::Tensor& reference, const at::Tensor& labels,
                               double epsilon);

// [kNumCriterionRows, sequences] float64 (bf16 values): Σ_t mask·row in fp32, rounded to bf16 once.
at::Tensor bf16_criterion_sums(const at::Tensor& rows, const at::Tensor& row_weight, int64_t sequences);

// bf16(fp32(chosen) − fp32(rejected)) as float64: the trainer's bf16 log-ratio.
at::Tensor bf16_log_ratio(const at::Tensor& chosen, const at::Tensor& rejected);

}  // namespace edpo
