#include "op_checks.h"

#include <sstream>

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
                            const at::Tensor& labels, const at::Tensor& loss_mask) {
  TORCH_CHECK(policy_logits.defined(), "policyLogits: missing tensor");
  TORCH_CHECK(reference_logits.defined(), "referenceLogits: missing tensor");
  TORCH_CHECK(labels.defined(), "labels: missing tensor");
  TORCH_CHECK(loss_mask.defined(), "lossMask: missing tensor");
  TORCH_CHECK(policy_logits.dim() == 3, "policyLogits: expected a 3-D [2B,T,V] tensor, got shape ",
              shape_str(policy_logits));
  const int64_t rows = policy_logits.size(0), steps = policy_logits.size(1), vocab = policy_logits.size(2);
  TORCH_CHECK(rows > 0 && rows % 2 == 0, "policyLogits: the first dimension must be 2B > 0 (chosen rows, then rejected rows), got ",
              rows);
  TORCH_CHECK(steps > 0 && vocab > 0, "policyLogits: T and V must be positive, got shape ", shape_str(policy_logits));
  TORCH_CHECK(is_logits_dtype(policy_logits.scalar_type()),
              "policyLogits: expected float32, float64, bfloat16 or float16, got ", policy_logits.scalar_type());
  TORCH_CHECK(reference_logits.sizes() == policy_logits.sizes(), "referenceLogits: shape ", shape_str(reference_logits),
              " does not match policyLogits ", shape_str(policy_logits));
  TORCH_CHECK(reference_logits.scalar_type() == policy_logits.scalar_type(), "referenceLogits: dtype ",
              reference_logits.scalar_type(), " does not match policyLogits ", policy_logits.scalar_type());
  TORCH_CHECK(reference_logits.device() == policy_logits.device(), "referenceLogits: device ", reference_logits.device(),
              " does not match policyLogits ", policy_logits.device());
  check_labels_and_mask(labels, loss_mask, rows, steps, vocab, policy_logits.device(), "policyLogits");
  return vocab;
}

void check_labels_and_mask(const at::Tensor& labels, const at::Tensor& loss_mask, int64_t rows, int64_t steps,
                           int64_t vocab, const c10::Device& device, const char* source) {
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == rows && labels.size(1) == steps, "labels: expected shape [", rows,
              ", ", steps, "] to match ", source, ", got ", shape_str(labels));
  TORCH_CHECK(labels.scalar_type() == at::kLong, "labels: expected int64, got ", labels.scalar_type());
  TORCH_CHECK(loss_mask.dim() == 2 && loss_mask.size(0) == rows && loss_mask.size(1) == steps, "lossMask: expected shape [",
              rows, ", ", steps, "] to match ", source, ", got ", shape_str(loss_mask));
  TORCH_CHECK(is_mask_dtype(loss_mask.scalar_type()), "lossMask: expected a bool, integer or floating-point tensor, got ",
              loss_mask.scalar_type());
  TORCH_CHECK(labels.device() == device && loss_mask.device() == device, "labels/lossMask: must be on ", source,
              "' device ", device);
  if (loss_mask.is_floating_point()) {
    TORCH_CHECK(at::isfinite(loss_mask).all().item<bool>(), "lossMask: contains a non-finite value");
  }
  // Labels only matter where the mask is on; elsewhere any value (e.g. -100) is ignored.
  const at::Tensor active = labels.masked_select(loss_mask != 0);
  if (active.numel() > 0) {
    const int64_t lo = active.min().item<int64_t>(), hi = active.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < vocab, "labels: values at unmasked positions must lie in [0, ", vocab, "), found ",
                lo < 0 ? lo : hi);
  }
}

}  // namespace edpo
