// The native ops, each declared once: name, doc, arguments (name, kind, doc, default), results and
// the function that runs it. js_op_binding.cc turns every declaration into `name` and `nameAsync`
// on the addon and exports the declarations (opDeclarations()), from which
// scripts/gen-op-types.js writes the TypeScript types (lib/ops-generated.ts).
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace edpo::models {
class CausalLM;
}
namespace Napi {
class Value;
}

namespace edpo_js {

using ModelPtr = std::shared_ptr<edpo::models::CausalLM>;

// One tensor's bytes in a file (readTensors).
struct ReadEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  int64_t offset;  // absolute file offset
  int64_t nbytes;
};

enum class ArgKind {
  Tensor,
  OptionalTensor,
  TensorList,          // an array of Tensors
  NullableTensorList,  // an array of Tensors and nulls (e.g. the master copies only some parameters have)
  Number,
  OptionalNumber,
  Integer,
  OptionalInteger,
  Boolean,
  OptionalBoolean,
  IntegerList,    // an array of integers
  String,
  Model,          // a model handle (createModel, modelClone)
  ReadEntryList   // an array of {name, dtype, shape, offset, nbytes}: tensors' bytes in a file
};

struct ArgDecl {
  std::string name;
  ArgKind kind;
  std::string doc;
  double fallback = 0;  // the value of an absent optional number, integer or boolean (0: false)
};

struct ResultDecl {
  std::string name;
  bool optional;  // absent from the result object when the op leaves it undefined
  std::string doc;
  bool list = false;  // an array of Tensors
};

// One call's arguments, read and type-checked by the binding on the JS thread.
struct OpArgs {
  std::map<std::string, at::Tensor> tensors;  // absent optional tensors are undefined
  std::map<std::string, std::vector<at::Tensor>> lists;  // null entries are undefined
  std::map<std::string, double> numbers;      // absent optional numbers hold their fallback
  std::map<std::string, bool> flags;         // booleans; absent optional ones hold their fallback
  std::map<std::string, std::vector<int64_t>> integer_lists;
  std::map<std::string, std::string> strings;
  std::map<std::string, ModelPtr> models;
  std::map<std::string, std::vector<ReadEntry>> read_entries;
  std::set<std::string> given;                // the names the caller passed
  at::Tensor tensor(const std::string& name) const { return tensors.at(name); }
  bool flag(const std::string& name) const { return flags.at(name); }
  const std::vector<int64_t>& integer_list(const std::string& name) const { return integer_lists.at(name); }
  const std::string& string(const std::string& name) const { return strings.at(name); }
  const ModelPtr& model(const std::string& name) const { return models.at(name); }
  const std::vector<ReadEntry>& entries(const std::string& name) const { return read_entries.at(name); }
  const std::vector<at::Tensor>& list(const std::string& name) const { return lists.at(name); }
  double number(const std::string& name) const { return numbers.at(name); }
  bool has(const std::string& name) const { return given.count(name) > 0; }
};

// One result: a Tensor (undefined: an absent optional result) or, for a `list` result, Tensors.
struct OpResult {
  OpResult(at::Tensor t) : tensor(std::move(t)) {}  // NOLINT(google-explicit-constructor)
  OpResult(std::vector<at::Tensor> l) : list(std::move(l)), is_list(true) {}  // NOLINT(google-explicit-constructor)
  at::Tensor tensor;
  std::vector<at::Tensor> list;
  bool is_list = false;
};

// Results in declared order.
using OpResults = std::vector<OpResult>;

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
// Readers of the model and readEntryList kinds (TypeErrors naming `what`), each next to its kin.
ModelPtr arg_model(const Napi::Value& v, const char* what);                              // js_model.cc
std::vector<ReadEntry> arg_read_entries(const Napi::Value& v, const std::string& what);  // js_io.cc
// Reads the entries' bytes from the file at `path` into new CPU tensors (js_io.cc).
std::vector<at::Tensor> read_tensors(const std::string& path, const std::vector<ReadEntry>& entries);
// The columns of the ε-DPO ops' per-pair `record` (ops/pair_loss.h PairColumn), in order.
std::vector<std::string> pair_record_columns();
// The bits of the device-side `inputError` flag and the message each stands for (ops/op_checks.h).
std::vector<InputErrorDecl> input_error_bits();

}  // namespace edpo_js
