// Tensor argument checks of the ops, run once per call; each throws ArgumentError naming the argument
// as users spell it from TypeScript.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace edpo {

// Checks every argument and throws ArgumentError naming it. Returns V; the flag of check_labels_and_mask goes to
// `input_error`.
int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask, at::Tensor* input_error);
// Bits of the device-side input-error flag (see check_labels_and_mask).
constexpr int kInputErrorMask = 1;        // lossMask holds NaN or ±inf
constexpr int kInputErrorLabels = 2;      // a label outside [0, V) where the mask is on
constexpr int kInputErrorActiveRows = 4;  // activeRows is not the list of the mask's non-zero rows
// The messages of those bits (the CPU's eager checks throw the same words).
constexpr const char* kInputErrorMaskMessage = "lossMask: contains a non-finite value";
constexpr const char* kInputErrorLabelsMessage = "labels: values at unmasked positions must lie in [0, V)";
constexpr const char* kInputErrorActiveRowsMessage =
    "activeRows: must list, in ascending order, exactly the flat row indices where lossMask is non-zero";

// Labels [rows,T] int64 in [0,V) where the mask is on; mask [rows,T] bool/int/float, finite; both on `device`.
// `source` names the tensor whose shape they must match in messages. Throws ArgumentError for what
// it can see without reading the device. Returns a float64 scalar flag on `device`: 0 on the CPU
// (which checks the values eagerly), the kInputError* bits elsewhere (checked where results are read).
at::Tensor check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t positions,
                                 int64_t vocab, const c10::Device& device, const char* source);
std::string shape_str(const at::Tensor& t);

}  // namespace edpo
