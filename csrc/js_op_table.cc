// The table of every addon entry (js_op_table.h), in a fixed order: each area declares its own
// entries beside their code; the binding (js_op_binding.cc) and the generated TypeScript read
// this list.
#include "js_op_table.h"

#include "ops/arg_error.h"
#include "ops/pair_loss.h"

namespace edpo_js {

const std::vector<OpDecl>& op_table() {
  static const std::vector<OpDecl> table = [] {
    std::vector<OpDecl> ops;
    declare_tensor_ops(ops);
    declare_loss_ops(ops);
    declare_optim_ops(ops);
    declare_model_ops(ops);
    declare_kernel_ops(ops);
    declare_io_ops(ops);
    declare_runtime_ops(ops);
    declare_memory_ops(ops);
    declare_profiler_ops(ops);
    declare_dist_ops(ops);
    return ops;
  }();
  return table;
}

std::vector<std::string> pair_record_columns() {
  return std::vector<std::string>(edpo::kPairColumnNames, edpo::kPairColumnNames + edpo::kNumPairColumns);
}

std::vector<InputErrorDecl> input_error_bits() {
  return {{edpo::kInputErrorMask, edpo::kInputErrorMaskMessage},
          {edpo::kInputErrorLabels, edpo::kInputErrorLabelsMessage},
          {edpo::kInputErrorActiveRows, edpo::kInputErrorActiveRowsMessage}};
}

}  // namespace edpo_js
