// The native ops, each declared once: name, doc, arguments (name, kind, doc, default), results and
// the function that runs it. js_op_binding.cc turns every declaration into `name` and `nameAsync`
// on the addon and exports the declarations (opDeclarations()), from which
// scripts/gen-op-types.js writes the TypeScript types (lib/ops-generated.ts).
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace edpo_js {

enum class ArgKind {
  Tensor,
  OptionalTensor,
  TensorList,          // an array of Tensors
  NullableTensorList,  // an array of Tensors and nulls (e.g. the master copies only some parameters have)
  Number,
  OptionalNumber,
  Integer,
  OptionalInteger
};

struct ArgDecl {
  std::string name;
  ArgKind kind;
  std::string doc;
  double fallback = 0;  // the value of an absent optional number or integer
};

struct ResultDecl {
  std::string name;
  bool optional;  // absent from the result object when the op leaves it undefined
  std::string doc;
};

// One call's arguments, read and type-checked by the binding on the JS thread.
struct OpArgs {
  std::map<std::string, at::Tensor> tensors;  // absent optional tensors are undefined
  std::map<std::string, std::vector<at::Tensor>> lists;  // null entries are undefined
  std::map<std::string, double> numbers;      // absent optional numbers hold their fallback
  std::set<std::string> given;                // the names the caller passed
  at::Tensor tensor(const std::string& name) const { return tensors.at(name); }
  const std::vector<at::Tensor>& list(const std::string& name) const { return lists.at(name); }
  double number(const std::string& name) const { return numbers.at(name); }
  bool has(const std::string& name) const { return given.count(name) > 0; }
};

// Results in declared order; an undefined tensor is an absent optional result.
using OpResults = std::vector<at::Tensor>;

struct OpDecl {
  std::string name;
  std::string doc;
  std::vector<ArgDecl> args;
  std::vector<ResultDecl> results;
  std::function<OpResults(const OpArgs&)> run;
};

struct InputErrorDecl {
  int bit;
  std::string message;
};

const std::vector<OpDecl>& op_table();
// The columns of the ε-DPO ops' per-pair `record` (ops/pair_loss.h PairColumn), in order.
std::vector<std::string> pair_record_columns();
// The bits of the device-side `inputError` flag and the message each stands for (ops/op_checks.h).
std::vector<InputErrorDecl> input_error_bits();

}  // namespace edpo_js
