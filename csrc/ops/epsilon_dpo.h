// The ε-DPO op on full logits (spec §2–§5). Pure C++/ATen: no N-API, so C++ harnesses (bench/gpu)
// link it directly. The per-token work is one fused pass per row (backend.h: cpu/row_kernels_impl.h
// on CPU, csrc/ops/cuda/epsilon_dpo_kernels.cu on GPU); pair_loss.h does the rest.
#pragma once
#include <ATen/ATen.h>

#include "pair_loss.h"

namespace edpo {

// Fused per-row pass + masked sums. Logits [2B,T,V] (fp32/bf16/fp16/fp64, same dtype and device),
// labels [2B,T] int64 (in [0,V) wherever the mask is non-zero), loss_mask [2B,T] bool/int/float.
SequenceLogps sequence_logps(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                             const at::Tensor& labels, const at::Tensor& loss_mask, double epsilon);

// Checks every argument and throws ArgumentError naming it. Returns V; the flag of check_labels_and_mask goes to
// `input_error`.
int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask, at::Tensor* input_error);

// Everything at once: ops.epsilonDpoLoss.
EpsilonDpoOutput epsilon_dpo_loss(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                                  const at::Tensor& labels, const at::Tensor& loss_mask,
                                  const EpsilonDpoOptions& options);

}  // namespace edpo
