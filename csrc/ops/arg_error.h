// Errors about what the caller passed (a shape, a dtype, β out of range): a distinct type, so the
// binding can surface them as EdpoInputError (code EDPO_INPUT) rather than an internal failure;
// and the bits of the device-side input-error flag, for the checks that would read the device.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/StringUtil.h>

#include <sstream>

#include <stdexcept>
#include <string>

namespace edpo {

class ArgumentError : public std::invalid_argument {
 public:
  explicit ArgumentError(const std::string& message) : std::invalid_argument(message) {}
};

// Bits of the device-side input-error flag (see check_labels_and_mask).
constexpr int kInputErrorMask = 1;        // lossMask holds NaN or ±inf
constexpr int kInputErrorLabels = 2;      // a label outside [0, V) where the mask is on
constexpr int kInputErrorActiveRows = 4;  // activeRows is not the list of the mask's non-zero rows
// The messages of those bits (the CPU's eager checks throw the same words).
constexpr const char* kInputErrorMaskMessage = "lossMask: contains a non-finite value";
constexpr const char* kInputErrorLabelsMessage = "labels: values at unmasked positions must lie in [0, V)";
constexpr const char* kInputErrorActiveRowsMessage =
    "activeRows: must list, in ascending order, exactly the flat row indices where lossMask is non-zero";

// A tensor's shape as messages print it: [2, 3].
inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

}  // namespace edpo

// Like TORCH_CHECK, for user-supplied arguments: the message names the argument as users spell it.
#define EDPO_ARG_CHECK(cond, ...)                                      \
  do {                                                                 \
    if (!(cond)) throw ::edpo::ArgumentError(::c10::str(__VA_ARGS__)); \
  } while (0)
