// Tensor argument checks of the ops, run once per call; each throws c10::Error naming the argument
// as users spell it from TypeScript.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace edpo {

// Checks every argument and throws c10::Error naming it. Returns V.
int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask);
// Labels [rows,T] int64 in [0,V) where the mask is on; mask [rows,T] bool/int/float, finite; both on `device`.
// `source` names the tensor whose shape they must match in messages.
void check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t steps,
                           int64_t vocab, const c10::Device& device, const char* source);
std::string shape_str(const at::Tensor& t);

}  // namespace edpo
