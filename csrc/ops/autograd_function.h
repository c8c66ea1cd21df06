// The autograd vocabulary of the ops' custom Functions (the fused row pass and the two chunked
// ops), in the edpo namespace.
#pragma once
#include <torch/csrc/autograd/custom_function.h>

namespace edpo {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
}  // namespace edpo
