#include "op_checks.h"

#include <sstream>

#include "arg_error.h"

namespace edpo {
namespace {

bool is_logits_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}
// Any real dtype: the mask becomes the accumulation dtype's per-token weight (bf16/fp16 weights are
// exact in float32, and so are integers up to 2^24).
bool is_mask_dtype(at::ScalarType t) {
  return t == at::kBool || at::isIntegralType(t, /*includeBool=*/false) || t == at::kHalf || t == at::kBFloat16 ||
         t == at::kFloat || t == at::kDouble;
}

}  // namespace

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

int64_t check_logits_inputs(const at::Tensor& policy_logits, const at::Tensor& reference_logits,
                            const at::Tensor& labels, const at::Tensor& loss_mask, at::Tensor* input_error) {
  EDPO_ARG_CHECK(policy_logits.defined(), "policyLogits: missing tensor");
  EDPO_ARG_CHECK(reference_logits.defined(), "referenceLogits: missing tensor");
  EDPO_ARG_CHECK(labels.defined(), "labels: missing tensor");
  EDPO_ARG_CHECK(loss_mask.defined(), "lossMask: missing tensor");
  EDPO_ARG_CHECK(policy_logits.dim() == 3, "policyLogits: expected a 3-D [2B,T,V] tensor, got shape ",
                 shape_str(policy_logits));
  const int64_t rows = policy_logits.size(0), positions = policy_logits.size(1), vocab = policy_logits.size(2);
  EDPO_ARG_CHECK(rows > 0 && rows % 2 == 0,
                 "policyLogits: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ", rows);
  EDPO_ARG_CHECK(positions > 0 && vocab > 0, "policyLogits: T and V must be positive, got shape ",
                 shape_str(policy_logits));
  EDPO_ARG_CHECK(is_logits_dtype(policy_logits.scalar_type()),
                 "policyLogits: expected float32, float64, bfloat16 or float16, got ", policy_logits.scalar_type());
  EDPO_ARG_CHECK(reference_logits.sizes() == policy_logits.sizes(), "referenceLogits: shape ",
                 shape_str(reference_logits), " does not match policyLogits ", shape_str(policy_logits));
  EDPO_ARG_CHECK(reference_logits.scalar_type() == policy_logits.scalar_type(), "referenceLogits: dtype ",
                 reference_logits.scalar_type(), " does not match policyLogits ", policy_logits.scalar_type());
  EDPO_ARG_CHECK(reference_logits.device() == policy_logits.device(), "referenceLogits: device ",
                 reference_logits.device(), " does not match policyLogits ", policy_logits.device());
  *input_error =
      check_labels_and_mask(labels, loss_mask, rows, positions, vocab, policy_logits.device(), "policyLogits");
  return vocab;
}

at::Tensor check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t positions,
                                 int64_t vocab, const c10::Device& device, const char* source) {
  EDPO_ARG_CHECK(labels.dim() == 2 && labels.size(0) == rows && labels.size(1) == positions, "labels: expected shape [",
                 rows, ", ", positions, "] to match ", source, ", got ", shape_str(labels));
  EDPO_ARG_CHECK(labels.scalar_type() == at::kLong, "labels: expected int64, got ", labels.scalar_type());
  EDPO_ARG_CHECK(loss_mask.dim() == 2 && loss_mask.size(0) == rows && loss_mask.size(1) == positions,
                 "lossMask: expected shape [", rows, ", ", positions, "] to match ", source, ", got ",
                 shape_str(loss_mask));
  EDPO_ARG_CHECK(is_mask_dtype(loss_mask.scalar_type()),
                 "lossMask: expected a bool, integer or floating-point tensor, got ", loss_mask.scalar_type());
  EDPO_ARG_CHECK(labels.device() == device && loss_mask.device() == device, "labels/lossMask: must be on ", source,
                 "' device ", device);
  // Labels only matter where the mask is on; elsewhere any value (e.g. -100) is ignored.
  const at::Tensor on = loss_mask != 0;
  const at::Tensor out_of_range = on.logical_and(labels.lt(0).logical_or(labels.ge(vocab)));
  if (device.is_cpu()) {
    // Reading a CPU tensor costs no device sync: check now, with the offending value in the message.
    if (loss_mask.is_floating_point())
      EDPO_ARG_CHECK(at::isfinite(loss_mask).all().item<bool>(), kInputErrorMaskMessage);
    if (out_of_range.any().item<bool>()) {
      const at::Tensor active = labels.masked_select(on);
      const int64_t lo = active.min().item<int64_t>(), hi = active.max().item<int64_t>();
      EDPO_ARG_CHECK(false, "labels: values at unmasked positions must lie in [0, ", vocab, "), found ",
                     lo < 0 ? lo : hi);
    }
    return at::zeros({}, at::TensorOptions().dtype(at::kDouble));
  }
  // Elsewhere the checks stay on the device: a flag (kInputErrorMask | kInputErrorLabels) that the
  // caller reads with its results and turns into the same messages (input_error_message).
  at::Tensor flag = out_of_range.any().to(at::kDouble) * double(kInputErrorLabels);
  if (loss_mask.is_floating_point())
    flag = flag + at::isfinite(loss_mask).all().logical_not().to(at::kDouble) * double(kInputErrorMask);
  return flag;
}

}  // namespace edpo
