// The one binding of every declared entry (js_op_table.h). Per its Call it reads one argument
// object (unknown keys are errors), the arguments in order, or, for Tensor.op methods, the
// arguments after the op's name; per its Mode it runs on the JS thread, on the thread pool, or
// both (`name` and `nameAsync`). The reader is strict: unknown keys or fields, missing or
// mistyped arguments, values below a declared bound and dead tensors are EDPO_INPUT errors naming
// the argument. opDeclarations() exports the table itself.
#include <cstring>
#include <memory>
#include <unordered_map>

#include <ATen/record_function.h>

#include "js_common.h"
#include "js_op_table.h"
#include "ops/arg_error.h"

namespace edpo_js {

std::vector<int64_t> OpArgs::dims(const std::string& name) const {
  if (has(name)) return integer_lists.at(name);
  std::vector<int64_t> all(size_t(self.dim()));
  for (int64_t d = 0; d < self.dim(); ++d) all[size_t(d)] = d;
  return all;
}

std::optional<at::ScalarType> OpArgs::optional_dtype(const std::string& name) const {
  const auto it = dtypes.find(name);
  return it == dtypes.end() ? std::nullopt : std::optional<at::ScalarType>(it->second);
}

std::optional<c10::Device> OpArgs::optional_device(const std::string& name) const {
  const auto it = devices.find(name);
  return it == devices.end() ? std::nullopt : std::optional<c10::Device>(it->second);
}

namespace {

struct KindInfo {
  ArgKind kind;
  const char* name;      // as opDeclarations() spells it
  const char* expected;  // "name: missing (expected ...)"
  bool optional;
};

constexpr KindInfo kKinds[] = {
    {ArgKind::Tensor, "tensor", "a Tensor", false},
    {ArgKind::OptionalTensor, "optionalTensor", "a Tensor", true},
    {ArgKind::TensorList, "tensorList", "an array of Tensors", false},
    {ArgKind::NullableTensorList, "nullableTensorList", "an array of Tensors", false},
    {ArgKind::TensorOrNumber, "tensorOrNumber", "a Tensor or a number", false},
    {ArgKind::Number, "number", "a number", false},
    {ArgKind::OptionalNumber, "optionalNumber", "a number", true},
    {ArgKind::Integer, "integer", "a number", false},
    {ArgKind::OptionalInteger, "optionalInteger", "a number", true},
    {ArgKind::Boolean, "boolean", "a boolean", false},
    {ArgKind::OptionalBoolean, "optionalBoolean", "a boolean", true},
    {ArgKind::IntegerList, "integerList", "an array of integers", false},
    {ArgKind::OptionalDims, "optionalDims", "an integer or an array of integers", true},
    {ArgKind::Shape, "shape", "an array of integers", false},
    {ArgKind::String, "string", "a string", false},
    {ArgKind::OptionalString, "optionalString", "a string", true},
    {ArgKind::StringList, "stringList", "an array of strings", false},
    {ArgKind::DType, "dtype", "a dtype name", false},
    {ArgKind::OptionalDType, "optionalDtype", "a dtype name", true},
    {ArgKind::OptionalDevice, "optionalDevice", "a device name", true},
    {ArgKind::HostArray, "hostArray", "a typed array", false},
    {ArgKind::Bytes, "bytes", "a Uint8Array", false},
    {ArgKind::Model, "model", "a model handle", false},
    {ArgKind::Group, "group", "a process group handle", false},
    {ArgKind::Reducer, "reducer", "a gradient reducer handle", false},
    {ArgKind::Object, "object", "an object", false},
    {ArgKind::OptionalObject, "optionalObject", "an object", true},
    {ArgKind::ObjectList, "objectList", "an array", false},
};

const KindInfo& kind_info(ArgKind k) {
  for (const auto& i : kKinds)
    if (i.kind == k) return i;
  throw std::logic_error("js_op_binding: undeclared argument kind");
}

const char* result_kind_name(ResultKind k) {
  switch (k) {
    case ResultKind::Tensor:
      return "tensor";
    case ResultKind::TensorList:
      return "tensorList";
    case ResultKind::Number:
      return "number";
    case ResultKind::Boolean:
      return "boolean";
    case ResultKind::String:
      return "string";
    case ResultKind::StringList:
      return "stringList";
    case ResultKind::Model:
      return "model";
    case ResultKind::Group:
      return "group";
    case ResultKind::Reducer:
      return "reducer";
    case ResultKind::Uint8Array:
      return "uint8Array";
    case ResultKind::Float64Array:
      return "float64Array";
  }
  return "?";
}

std::string declared_names(const std::vector<ArgDecl>& decls) {
  std::string out;
  for (const auto& a : decls) out += (out.empty() ? "" : ", ") + a.name;
  return out;
}

// Rethrows the readers' TypeErrors (and anything else about a value) as EDPO_INPUT errors.
template <typename F>
auto as_input_error(Napi::Env env, F&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const Napi::Error& e) {
    throw make_input_error(env, e.Message());
  } catch (const std::exception& e) {
    throw make_input_error(env, error_message(e));
  }
}

// A Tensor's dtype from the typed array that holds its values, copied into a flat CPU tensor.
template <typename ArrayT>
at::Tensor copy_array(const Napi::TypedArray& array, at::ScalarType type) {
  const auto typed = array.As<ArrayT>();
  at::Tensor out = at::empty({int64_t(typed.ElementLength())}, at::TensorOptions().dtype(type));
  if (out.numel() > 0) std::memcpy(out.data_ptr(), typed.Data(), out.nbytes());
  return out;
}

at::Tensor arg_host_array(const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), what + ": expected a typed array");
  const auto array = v.As<Napi::TypedArray>();
  switch (array.TypedArrayType()) {
    case napi_float32_array:
      return copy_array<Napi::Float32Array>(array, at::kFloat);
    case napi_float64_array:
      return copy_array<Napi::Float64Array>(array, at::kDouble);
    case napi_int32_array:
      return copy_array<Napi::Int32Array>(array, at::kInt);
    case napi_bigint64_array:
      return copy_array<Napi::BigInt64Array>(array, at::kLong);
    case napi_uint8_array:
      return copy_array<Napi::Uint8Array>(array, at::kByte);
    default:
      throw Napi::TypeError::New(
          v.Env(), what + ": expected Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array");
  }
}

std::vector<std::string> arg_string_list(const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), what + ": expected an array of strings");
  const auto array = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < array.Length(); ++i)
    out.push_back(arg_string(array.Get(i), (what + "[" + std::to_string(i) + "]").c_str()));
  return out;
}

// A number argument against its declared bound (integers are named as integers).
void check_min(const ArgDecl& a, const std::string& what, double value) {
  if (std::isnan(a.min)) return;
  const bool integer = a.kind == ArgKind::Integer || a.kind == ArgKind::OptionalInteger;
  if (integer ? value >= a.min : std::isfinite(value) && value >= a.min) return;
  throw edpo::ArgumentError(
      c10::str(what, integer ? ": must be >= " : ": must be a finite number >= ", a.min, ", got ", value));
}

std::shared_ptr<OpArgs> read_object(Napi::Env env, const std::vector<ArgDecl>& decls, const Napi::Value& value,
                                    const std::string& what, const std::string& field_prefix);

// Reads one argument `a` (named `what` in errors) from `v` into `args`.
void read_arg(Napi::Env env, const ArgDecl& a, const Napi::Value& v, const std::string& what, OpArgs& args) {
  const KindInfo& info = kind_info(a.kind);
  // Absent means undefined; null is a wrong value (a missing bias is left out, not nulled).
  const bool absent = v.IsUndefined();
  if (absent && !info.optional) throw make_input_error(env, what + ": missing (expected " + info.expected + ")");
  if (!absent) args.given.insert(a.name);
  const char* name = what.c_str();
  switch (a.kind) {
    case ArgKind::Tensor:
    case ArgKind::OptionalTensor:
      args.tensors[a.name] =
          absent ? at::Tensor() : as_input_error(env, [&] { return TensorWrap::FromValue(v, name); });
      break;
    case ArgKind::TensorList:
    case ArgKind::NullableTensorList:
      args.lists[a.name] =
          as_input_error(env, [&] { return arg_tensor_list(v, what, a.kind == ArgKind::NullableTensorList); });
      break;
    case ArgKind::TensorOrNumber:
      if (v.IsNumber())
        args.numbers[a.name] = v.As<Napi::Number>().DoubleValue();
      else
        args.tensors[a.name] = as_input_error(env, [&] { return TensorWrap::FromValue(v, name); });
      break;
    case ArgKind::Number:
    case ArgKind::OptionalNumber:
      args.numbers[a.name] = absent ? a.fallback : as_input_error(env, [&] { return arg_number(v, name); });
      if (!absent) as_input_error(env, [&] { check_min(a, what, args.numbers[a.name]); });
      break;
    case ArgKind::Integer:
    case ArgKind::OptionalInteger:
      args.numbers[a.name] = absent ? a.fallback : double(as_input_error(env, [&] { return arg_int(v, name); }));
      if (!absent) as_input_error(env, [&] { check_min(a, what, args.numbers[a.name]); });
      break;
    case ArgKind::Boolean:
    case ArgKind::OptionalBoolean:
      if (!absent && !v.IsBoolean()) throw make_input_error(env, what + ": expected a boolean");
      args.flags[a.name] = absent ? a.fallback != 0 : v.As<Napi::Boolean>().Value();
      break;
    case ArgKind::IntegerList:
      args.integer_lists[a.name] = as_input_error(env, [&] { return arg_int_list(v, name); });
      break;
    case ArgKind::OptionalDims:
      if (absent) break;
      if (v.IsNumber()) {
        // One dim is named `dim`, as the caller wrote it.
        const std::string one = what.size() > 1 && what.back() == 's' ? what.substr(0, what.size() - 1) : what;
        args.integer_lists[a.name] = {as_input_error(env, [&] { return arg_int(v, one.c_str()); })};
      } else if (v.IsArray()) {
        args.integer_lists[a.name] = as_input_error(env, [&] { return arg_int_list(v, name); });
      } else {
        throw make_input_error(env, what + ": expected an integer or an array of integers");
      }
      break;
    case ArgKind::Shape:
      args.integer_lists[a.name] = as_input_error(env, [&] { return arg_shape(v, name); });
      break;
    case ArgKind::String:
    case ArgKind::OptionalString:
      args.strings[a.name] = absent ? std::string() : as_input_error(env, [&] { return arg_string(v, name); });
      break;
    case ArgKind::StringList:
      args.string_lists[a.name] = as_input_error(env, [&] { return arg_string_list(v, what); });
      break;
    case ArgKind::DType:
    case ArgKind::OptionalDType:
      if (!absent) args.dtypes[a.name] = as_input_error(env, [&] { return parse_dtype(arg_string(v, name), name); });
      break;
    case ArgKind::OptionalDevice:
      if (!absent)
        args.devices.emplace(a.name, as_input_error(env, [&] { return parse_device(arg_string(v, name), name); }));
      break;
    case ArgKind::HostArray:
      args.tensors[a.name] = as_input_error(env, [&] { return arg_host_array(v, what); });
      break;
    case ArgKind::Bytes: {
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw make_input_error(env, what + ": expected a Uint8Array");
      const auto array = v.As<Napi::Uint8Array>();
      args.bytes[a.name] = std::vector<uint8_t>(array.Data(), array.Data() + array.ByteLength());
      break;
    }
    case ArgKind::Model:
      args.models[a.name] = as_input_error(env, [&] { return arg_model(v, name); });
      break;
    case ArgKind::Group:
      args.groups[a.name] = as_input_error(env, [&] { return arg_group(v, name); });
      break;
    case ArgKind::Reducer:
      args.reducers[a.name] = as_input_error(env, [&] { return arg_reducer(v, name); });
      break;
    case ArgKind::Object:
    case ArgKind::OptionalObject:
      if (!absent) args.objects[a.name] = {read_object(env, a.fields, v, what, "")};
      break;
    case ArgKind::ObjectList: {
      if (!v.IsArray()) throw make_input_error(env, what + ": expected an array");
      const auto array = v.As<Napi::Array>();
      auto& entries = args.objects[a.name];
      for (uint32_t i = 0; i < array.Length(); ++i)
        entries.push_back(read_object(env, a.fields, array.Get(i), what + "[" + std::to_string(i) + "]", what + "[]."));
      break;
    }
  }
}

// An object of the declared fields `decls`; errors name the object `what` and each field
// `field_prefix + field`.
std::shared_ptr<OpArgs> read_object(Napi::Env env, const std::vector<ArgDecl>& decls, const Napi::Value& value,
                                    const std::string& what, const std::string& field_prefix) {
  if (!value.IsObject() || value.IsArray()) throw make_input_error(env, what + ": expected an object");
  const Napi::Object object = value.As<Napi::Object>();
  const Napi::Array keys = object.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const auto& a : decls) known = known || a.name == key;
    if (!known)
      throw make_input_error(env, what + ": unknown field '" + key + "' (expected " + declared_names(decls) + ")");
  }
  auto args = std::make_shared<OpArgs>();
  for (const auto& a : decls) read_arg(env, a, object.Get(a.name), field_prefix + a.name, *args);
  return args;
}

// The arguments of one call: the argument object, or the values from info[first] on.
std::shared_ptr<OpArgs> read_args(const OpDecl& op, const Napi::CallbackInfo& info, size_t first) {
  Napi::Env env = info.Env();
  if (op.call == Call::Object) {
    if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray())
      throw make_input_error(env, op.name + ": expected one argument object");
    const Napi::Object object = info[0].As<Napi::Object>();
    const Napi::Array keys = object.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string key = keys.Get(i).ToString().Utf8Value();
      bool known = false;
      for (const auto& a : op.args) known = known || a.name == key;
      if (!known)
        throw make_input_error(env,
                               op.name + ": unknown argument '" + key + "' (expected " + declared_names(op.args) + ")");
    }
    auto args = std::make_shared<OpArgs>();
    for (const auto& a : op.args) read_arg(env, a, object.Get(a.name), a.name, *args);
    return args;
  }
  const size_t given = info.Length() > first ? info.Length() - first : 0;
  if (given > op.args.size())
    throw make_input_error(env, op.name + ": expected at most " + std::to_string(op.args.size()) + " arguments (" +
                                    declared_names(op.args) + "), got " + std::to_string(given));
  auto args = std::make_shared<OpArgs>();
  for (size_t i = 0; i < op.args.size(); ++i) read_arg(env, op.args[i], info[first + i], op.args[i].name, *args);
  return args;
}

Napi::Value to_js(Napi::Env env, const OpResult& r) {
  switch (r.type) {
    case OpResult::Type::Absent:
      return env.Undefined();
    case OpResult::Type::Tensor:
      return TensorWrap::Wrap(env, r.tensor);
    case OpResult::Type::TensorList: {
      Napi::Array list = Napi::Array::New(env, r.list.size());
      for (size_t j = 0; j < r.list.size(); ++j) list.Set(uint32_t(j), TensorWrap::Wrap(env, r.list[j]));
      return list;
    }
    case OpResult::Type::Number:
      return Napi::Number::New(env, r.number);
    case OpResult::Type::Boolean:
      return Napi::Boolean::New(env, r.number != 0);
    case OpResult::Type::String:
      return Napi::String::New(env, r.text);
    case OpResult::Type::StringList: {
      Napi::Array list = Napi::Array::New(env, r.texts.size());
      for (size_t j = 0; j < r.texts.size(); ++j) list.Set(uint32_t(j), Napi::String::New(env, r.texts[j]));
      return list;
    }
    case OpResult::Type::Model:
      return wrap_model(env, r.model);
    case OpResult::Type::Group:
      return wrap_group(env, r.group);
    case OpResult::Type::Reducer:
      return wrap_reducer(env, r.reducer);
    case OpResult::Type::Uint8Array: {
      Napi::Uint8Array out = Napi::Uint8Array::New(env, r.bytes.size());
      if (!r.bytes.empty()) std::memcpy(out.Data(), r.bytes.data(), r.bytes.size());
      return out;
    }
    case OpResult::Type::Float64Array: {
      Napi::Float64Array out = Napi::Float64Array::New(env, r.doubles.size());
      if (!r.doubles.empty()) std::memcpy(out.Data(), r.doubles.data(), r.doubles.size() * sizeof(double));
      return out;
    }
  }
  return env.Undefined();
}

Napi::Value wrap_results(Napi::Env env, const OpDecl& op, const OpResults& results) {
  if (op.returns == Returns::Value) return op.results.empty() ? env.Undefined() : to_js(env, results.at(0));
  Napi::Object out = Napi::Object::New(env);
  for (size_t i = 0; i < op.results.size(); ++i) {
    const OpResult& r = results.at(i);
    if (r.type != OpResult::Type::Absent) out.Set(op.results[i].name, to_js(env, r));
  }
  return out;
}

// Runs the entry; an object-call op inside a user scope named after it, so that a profile
// (--profile-steps) shows which of the addon's ops each ATen op and kernel ran in.
OpResults run_recorded(const OpDecl& op, const OpArgs& args) {
  if (op.call != Call::Object) return op.run(args);
  RECORD_USER_SCOPE(op.name.c_str());
  return op.run(args);
}

Napi::Value run_sync(const OpDecl& op, const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto args = read_args(op, info, 0);
    return wrap_results(info.Env(), op, run_recorded(op, *args));
  });
}

Napi::Value run_async(const OpDecl& op, const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto args = read_args(op, info, 0);
    auto results = std::make_shared<OpResults>();
    const OpDecl* decl = &op;  // the table is static
    return PromiseWorker::Run(
        info.Env(), [decl, args, results] { *results = run_recorded(*decl, *args); },
        [decl, results](Napi::Env env) -> Napi::Value { return wrap_results(env, *decl, *results); });
  });
}

const std::unordered_map<std::string, const OpDecl*>& tensor_methods() {
  static const std::unordered_map<std::string, const OpDecl*> methods = [] {
    std::unordered_map<std::string, const OpDecl*> m;
    for (const auto& op : op_table())
      if (op.call == Call::Method) m[op.name] = &op;
    return m;
  }();
  return methods;
}

Napi::Object arg_decl_js(Napi::Env env, const ArgDecl& a) {
  Napi::Object d = Napi::Object::New(env);
  d.Set("name", a.name);
  d.Set("kind", kind_info(a.kind).name);
  d.Set("doc", a.doc);
  if (a.kind == ArgKind::OptionalNumber || a.kind == ArgKind::OptionalInteger) d.Set("default", a.fallback);
  if (a.kind == ArgKind::OptionalBoolean) d.Set("default", a.fallback != 0);
  if (!std::isnan(a.min)) d.Set("min", a.min);
  if (!a.type_name.empty()) d.Set("typeName", a.type_name);
  if (!a.fields.empty()) {
    Napi::Array fields = Napi::Array::New(env);
    for (const auto& f : a.fields) fields.Set(fields.Length(), arg_decl_js(env, f));
    d.Set("fields", fields);
  }
  return d;
}

const char* call_name(Call c) { return c == Call::Object ? "object" : c == Call::Positional ? "positional" : "method"; }
const char* mode_name(Mode m) { return m == Mode::SyncAndAsync ? "syncAndAsync" : m == Mode::Sync ? "sync" : "async"; }

Napi::Value OpDeclarations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array ops = Napi::Array::New(env);
  for (const auto& op : op_table()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", op.name);
    o.Set("doc", op.doc);
    o.Set("call", call_name(op.call));
    o.Set("mode", mode_name(op.mode));
    o.Set("returns", op.returns == Returns::Fields ? "fields" : "value");
    if (!op.outputs_name.empty()) o.Set("outputsName", op.outputs_name);
    Napi::Array args = Napi::Array::New(env);
    for (const auto& a : op.args) args.Set(args.Length(), arg_decl_js(env, a));
    o.Set("args", args);
    Napi::Array results = Napi::Array::New(env);
    for (const auto& r : op.results) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", r.name);
      d.Set("kind", result_kind_name(r.kind));
      d.Set("optional", r.optional);
      d.Set("doc", r.doc);
      results.Set(results.Length(), d);
    }
    o.Set("results", results);
    ops.Set(ops.Length(), o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ops", ops);
  Napi::Array columns = Napi::Array::New(env);
  for (const auto& c : pair_record_columns()) columns.Set(columns.Length(), c);
  out.Set("pairRecordColumns", columns);
  Napi::Array errors = Napi::Array::New(env);
  for (const auto& e : input_error_bits()) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("bit", e.bit);
    d.Set("message", e.message);
    errors.Set(errors.Length(), d);
  }
  out.Set("inputErrors", errors);
  return out;
}

}  // namespace

GroupPtr arg_group(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a process group handle");
  return *v.As<Napi::External<GroupPtr>>().Data();
}

Napi::Value wrap_group(Napi::Env env, GroupPtr group) {
  return Napi::External<GroupPtr>::New(env, new GroupPtr(std::move(group)), [](Napi::Env, GroupPtr* p) { delete p; });
}

ReducerPtr arg_reducer(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a gradient reducer handle");
  return *v.As<Napi::External<ReducerPtr>>().Data();
}

Napi::Value wrap_reducer(Napi::Env env, ReducerPtr reducer) {
  return Napi::External<ReducerPtr>::New(env, new ReducerPtr(std::move(reducer)),
                                         [](Napi::Env, ReducerPtr* p) { delete p; });
}

// tensor.op(name, ...args): the declared Call::Method entry `name` on this tensor. libtorch's own
// messages ("The size of tensor a (3) must match ...") do not say which call failed: they get the
// op's name in front.
Napi::Value TensorWrap::Op(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const std::string name = arg_string(info[0], "op");
    const auto it = tensor_methods().find(name);
    TORCH_CHECK(it != tensor_methods().end(), "op: unknown tensor op '", name, "'");
    const OpDecl& op = *it->second;
    const at::Tensor& self = tensor(name.c_str());
    const auto args = read_args(op, info, 1);
    args->self = self;
    OpResults results;
    try {
      results = op.run(*args);
    } catch (const edpo::ArgumentError& e) {
      throw edpo::ArgumentError(name + ": " + e.what());
    } catch (const std::exception& e) {
      TORCH_CHECK(false, name, ": ", error_message(e));
    }
    return wrap_results(info.Env(), op, results);
  });
}

void InitOps(Napi::Env env, Napi::Object exports) {
  for (const auto& op : op_table()) {
    if (op.call == Call::Method) continue;
    const OpDecl* decl = &op;
    const auto sync = [decl](const Napi::CallbackInfo& info) { return run_sync(*decl, info); };
    const auto async = [decl](const Napi::CallbackInfo& info) { return run_async(*decl, info); };
    if (op.mode == Mode::Async) {
      exports.Set(op.name, Napi::Function::New(env, async, op.name));
      continue;
    }
    exports.Set(op.name, Napi::Function::New(env, sync, op.name));
    if (op.mode == Mode::SyncAndAsync)
      exports.Set(op.name + "Async", Napi::Function::New(env, async, op.name + "Async"));
  }
  exports.Set("opDeclarations", Napi::Function::New(env, OpDeclarations, "opDeclarations"));
}

}  // namespace edpo_js
