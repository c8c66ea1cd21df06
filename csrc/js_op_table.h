// Every entry of the addon, each declared once: name, doc, how JS calls it, arguments (name, kind,
// doc, default, bound), results and the function that runs it. js_op_binding.cc turns every
// declaration into its JS function(s) (and the Tensor.op methods) with one strict argument reader,
// and exports the declarations (opDeclarations()), from which scripts/gen-op-types.js writes the
// TypeScript surface (lib/core/ops-generated.ts). Each area declares its entries beside their code
// (declare_*_ops below); op_table() lists them in a fixed order.
#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace edpo::models {
class CausalLM;
}
namespace edpo::dist {
class Group;
class GradReducer;
}  // namespace edpo::dist
namespace Napi {
class Env;
class Value;
}  // namespace Napi

namespace edpo_js {

using ModelPtr = std::shared_ptr<edpo::models::CausalLM>;
using GroupPtr = std::shared_ptr<edpo::dist::Group>;
using ReducerPtr = std::shared_ptr<edpo::dist::GradReducer>;

enum class ArgKind {
  Tensor,
  OptionalTensor,
  TensorList,          // an array of Tensors
  NullableTensorList,  // an array of Tensors and nulls (e.g. the master copies only some parameters have)
  TensorOrNumber,      // a Tensor or a number (the right operand of arithmetic)
  Number,
  OptionalNumber,
  Integer,
  OptionalInteger,
  Boolean,
  OptionalBoolean,
  IntegerList,   // an array of integers (any sign: dims, a reshape target)
  OptionalDims,  // an integer (named without its trailing s in errors) or an array of them; absent: all dims
  Shape,         // an array of integers >= 0
  String,
  OptionalString,
  StringList,
  DType,  // a dtype name ('float32', ...)
  OptionalDType,
  OptionalDevice,  // 'cpu', 'cuda' or 'cuda:N'
  HostArray,       // Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array: copied into a flat CPU tensor
  Bytes,           // a Uint8Array, copied
  Model,           // a model handle (createModel, modelClone)
  Group,           // a process group handle (distCreateGroup)
  Reducer,         // a gradient reducer handle (distReducerCreate)
  Object,          // an object of the declared `fields`, read strictly
  OptionalObject,
  ObjectList  // an array of such objects; field errors name `arg[].field`
};

struct ArgDecl {
  std::string name;
  ArgKind kind;
  std::string doc;
  double fallback = 0;  // the value of an absent optional number, integer or boolean (0: false)
  // Numbers and integers: the least value accepted (NaN: any); the reader rejects others by name.
  double min = NAN;
  std::vector<ArgDecl> fields = {};  // Object, OptionalObject and ObjectList: the fields
  std::string type_name = {};        // Object kinds: the TypeScript interface the generator writes
};

enum class ResultKind {
  Tensor,
  TensorList,
  Number,
  Boolean,
  String,
  StringList,
  Model,
  Group,
  Reducer,
  Uint8Array,
  Float64Array
};

struct ResultDecl {
  std::string name;
  bool optional;  // absent from the result object when the entry leaves it undefined
  std::string doc;
  ResultKind kind = ResultKind::Tensor;
};

// How JS calls an entry.
enum class Call {
  Object,      // name(args): one argument object
  Positional,  // name(a, b, ...): the declared arguments in order
  Method       // tensor.op(name, a, b, ...): like Positional, on the tensor `self` (OpArgs::self)
};
// Where it runs.
enum class Mode {
  SyncAndAsync,  // `name` on the JS thread and `nameAsync` (a Promise) on the thread pool
  Sync,          // on the JS thread only
  Async          // `name` returns a Promise, run on the thread pool (collectives wait on other ranks)
};
// What it returns.
enum class Returns {
  Fields,  // an object of the declared results (absent optional ones left out)
  Value    // the one declared result itself; no results: undefined
};

// One call's arguments, read and type-checked by the binding on the JS thread.
struct OpArgs {
  at::Tensor self;                                       // Call::Method: the tensor the op runs on
  std::map<std::string, at::Tensor> tensors;             // absent optional tensors are undefined
  std::map<std::string, std::vector<at::Tensor>> lists;  // null entries are undefined
  std::map<std::string, double> numbers;                 // absent optional numbers hold their fallback
  std::map<std::string, bool> flags;                     // booleans; absent optional ones hold their fallback
  std::map<std::string, std::vector<int64_t>> integer_lists;
  std::map<std::string, std::string> strings;  // absent optional strings are empty
  std::map<std::string, std::vector<std::string>> string_lists;
  std::map<std::string, at::ScalarType> dtypes;
  std::map<std::string, c10::Device> devices;
  std::map<std::string, std::vector<uint8_t>> bytes;
  std::map<std::string, ModelPtr> models;
  std::map<std::string, GroupPtr> groups;
  std::map<std::string, ReducerPtr> reducers;
  std::map<std::string, std::vector<std::shared_ptr<const OpArgs>>> objects;  // one entry for Object kinds
  std::set<std::string> given;                                                // the names the caller passed
  at::Tensor tensor(const std::string& name) const { return tensors.at(name); }
  bool flag(const std::string& name) const { return flags.at(name); }
  const std::vector<int64_t>& integer_list(const std::string& name) const { return integer_lists.at(name); }
  const std::string& string(const std::string& name) const { return strings.at(name); }
  const std::vector<std::string>& string_list(const std::string& name) const { return string_lists.at(name); }
  at::ScalarType dtype(const std::string& name) const { return dtypes.at(name); }
  const ModelPtr& model(const std::string& name) const { return models.at(name); }
  const GroupPtr& group(const std::string& name) const { return groups.at(name); }
  const ReducerPtr& reducer(const std::string& name) const { return reducers.at(name); }
  const std::vector<at::Tensor>& list(const std::string& name) const { return lists.at(name); }
  const std::vector<uint8_t>& byte_array(const std::string& name) const { return bytes.at(name); }
  double number(const std::string& name) const { return numbers.at(name); }
  int64_t integer(const std::string& name) const { return int64_t(numbers.at(name)); }
  const OpArgs& object(const std::string& name) const { return *objects.at(name).at(0); }
  const std::vector<std::shared_ptr<const OpArgs>>& object_list(const std::string& name) const {
    return objects.at(name);
  }
  bool has(const std::string& name) const { return given.count(name) > 0; }
  // An OptionalDims argument: the dims given, or all of `self`'s.
  std::vector<int64_t> dims(const std::string& name) const;
  // An OptionalDType / OptionalDevice argument, when given.
  std::optional<at::ScalarType> optional_dtype(const std::string& name) const;
  std::optional<c10::Device> optional_device(const std::string& name) const;
};

// One result. Default-constructed: absent (an optional result left out, or undefined).
struct OpResult {
  enum class Type {
    Absent,
    Tensor,
    TensorList,
    Number,
    Boolean,
    String,
    StringList,
    Model,
    Group,
    Reducer,
    Uint8Array,
    Float64Array
  };
  OpResult() = default;
  OpResult(at::Tensor t) : tensor(std::move(t)), type(tensor.defined() ? Type::Tensor : Type::Absent) {}  // NOLINT
  OpResult(std::vector<at::Tensor> l) : list(std::move(l)), type(Type::TensorList) {}                     // NOLINT
  OpResult(double n) : number(n), type(Type::Number) {}                                                   // NOLINT
  OpResult(bool b) : number(b ? 1 : 0), type(Type::Boolean) {}                                            // NOLINT
  OpResult(std::string s) : text(std::move(s)), type(Type::String) {}                                     // NOLINT
  OpResult(const char* s) : text(s), type(Type::String) {}                                                // NOLINT
  OpResult(std::vector<std::string> s) : texts(std::move(s)), type(Type::StringList) {}                   // NOLINT
  OpResult(ModelPtr m) : model(std::move(m)), type(Type::Model) {}                                        // NOLINT
  OpResult(GroupPtr g) : group(std::move(g)), type(Type::Group) {}                                        // NOLINT
  OpResult(ReducerPtr r) : reducer(std::move(r)), type(Type::Reducer) {}                                  // NOLINT
  OpResult(std::vector<uint8_t> b) : bytes(std::move(b)), type(Type::Uint8Array) {}                       // NOLINT
  OpResult(std::vector<double> d) : doubles(std::move(d)), type(Type::Float64Array) {}                    // NOLINT
  at::Tensor tensor;
  std::vector<at::Tensor> list;
  double number = 0;
  std::string text;
  std::vector<std::string> texts;
  ModelPtr model;
  GroupPtr group;
  ReducerPtr reducer;
  std::vector<uint8_t> bytes;
  std::vector<double> doubles;
  Type type = Type::Absent;
};

// Results in declared order.
using OpResults = std::vector<OpResult>;

struct OpDecl {
  std::string name;
  std::string doc;
  std::vector<ArgDecl> args;
  std::vector<ResultDecl> results;
  std::function<OpResults(const OpArgs&)> run;
  Call call = Call::Object;
  Mode mode = Mode::SyncAndAsync;
  Returns returns = Returns::Fields;
  std::string outputs_name = {};  // Returns::Fields outside Call::Object: the TypeScript interface of the result
};

struct InputErrorDecl {
  int bit;
  std::string message;
};

const std::vector<OpDecl>& op_table();
// Each area's entries, beside their code.
void declare_tensor_ops(std::vector<OpDecl>& ops);    // js_tensor_ops.cc: factories and Tensor.op methods
void declare_loss_ops(std::vector<OpDecl>& ops);      // js_op_table_loss.cc: the ε-DPO and sequence ops
void declare_kernel_ops(std::vector<OpDecl>& ops);    // js_op_table_kernels.cc: the decoder layer's fused kernels
void declare_optim_ops(std::vector<OpDecl>& ops);     // js_optim.cc
void declare_model_ops(std::vector<OpDecl>& ops);     // js_model.cc
void declare_io_ops(std::vector<OpDecl>& ops);        // js_io.cc
void declare_runtime_ops(std::vector<OpDecl>& ops);   // js_runtime.cc
void declare_memory_ops(std::vector<OpDecl>& ops);    // js_memory.cc
void declare_profiler_ops(std::vector<OpDecl>& ops);  // js_profiler.cc
void declare_dist_ops(std::vector<OpDecl>& ops);      // js_dist.cc: the process group and its collectives

// Readers of the handle kinds (TypeErrors naming `what`), each next to its kin.
ModelPtr arg_model(const Napi::Value& v, const char* what);      // js_model.cc
GroupPtr arg_group(const Napi::Value& v, const char* what);      // js_op_binding.cc (no c10d header needed)
ReducerPtr arg_reducer(const Napi::Value& v, const char* what);  // js_op_binding.cc
// The JS values of the handle results (Externals owning the pointer).
Napi::Value wrap_model(Napi::Env env, ModelPtr model);        // js_model.cc
Napi::Value wrap_group(Napi::Env env, GroupPtr group);        // js_op_binding.cc
Napi::Value wrap_reducer(Napi::Env env, ReducerPtr reducer);  // js_op_binding.cc
// The columns of the ε-DPO ops' per-pair `record` (ops/pair_loss.h PairColumn), in order.
std::vector<std::string> pair_record_columns();
// The bits of the device-side `inputError` flag and the message each stands for (ops/arg_error.h).
std::vector<InputErrorDecl> input_error_bits();

}  // namespace edpo_js
