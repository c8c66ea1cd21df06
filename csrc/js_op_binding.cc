// The one binding of every declared op (js_op_table.h): `name(args)` runs it on the JS thread,
// `nameAsync(args)` on the thread pool; both read the argument object strictly (unknown keys,
// missing or mistyped arguments and dead tensors are EDPO_INPUT errors naming the argument) and
// return an object of the declared results. opDeclarations() exports the table itself.
#include <memory>

#include <ATen/record_function.h>

#include "js_common.h"
#include "js_op_table.h"

namespace edpo_js {
namespace {

const char* kind_name(ArgKind k) {
  switch (k) {
    case ArgKind::Tensor: return "tensor";
    case ArgKind::OptionalTensor: return "optionalTensor";
    case ArgKind::TensorList: return "tensorList";
    case ArgKind::NullableTensorList: return "nullableTensorList";
    case ArgKind::Integer: return "integer";
    case ArgKind::Number: return "number";
    case ArgKind::OptionalNumber: return "optionalNumber";
    case ArgKind::OptionalInteger: return "optionalInteger";
    case ArgKind::Boolean: return "boolean";
    case ArgKind::OptionalBoolean: return "optionalBoolean";
    case ArgKind::IntegerList: return "integerList";
    case ArgKind::String: return "string";
    case ArgKind::Model: return "model";
    case ArgKind::ReadEntryList: return "readEntryList";
  }
  return "?";
}

bool optional(ArgKind k) {
  return k == ArgKind::OptionalTensor || k == ArgKind::OptionalNumber || k == ArgKind::OptionalInteger ||
         k == ArgKind::OptionalBoolean;
}

const char* expected(ArgKind k) {
  switch (k) {
    case ArgKind::Tensor: return "a Tensor";
    case ArgKind::TensorList: return "an array of Tensors";
    case ArgKind::Boolean: return "a boolean";
    case ArgKind::IntegerList: return "an array of integers";
    case ArgKind::String: return "a string";
    case ArgKind::Model: return "a model handle";
    case ArgKind::ReadEntryList: return "an array";
    default: return "a number";
  }
}

std::string declared_names(const OpDecl& op) {
  std::string out;
  for (const auto& a : op.args) out += (out.empty() ? "" : ", ") + a.name;
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

std::shared_ptr<OpArgs> read_args(const OpDecl& op, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray())
    throw make_input_error(env, op.name + ": expected one argument object");
  const Napi::Object object = info[0].As<Napi::Object>();
  const Napi::Array keys = object.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const auto& a : op.args) known = known || a.name == key;
    if (!known)
      throw make_input_error(env, op.name + ": unknown argument '" + key + "' (expected " + declared_names(op) + ")");
  }
  auto args = std::make_shared<OpArgs>();
  for (const auto& a : op.args) {
    const Napi::Value v = object.Get(a.name);
    // Absent means undefined; null is a wrong value (a missing bias is left out, not nulled).
    const bool absent = v.IsUndefined();
    if (absent && !optional(a.kind))
      throw make_input_error(env, a.name + ": missing (expected " + expected(a.kind) + ")");
    if (!absent) args->given.insert(a.name);
    const char* name = a.name.c_str();
    switch (a.kind) {
      case ArgKind::Tensor:
      case ArgKind::OptionalTensor:
        args->tensors[a.name] = absent ? at::Tensor() : as_input_error(env, [&] { return TensorWrap::FromValue(v, name); });
        break;
      case ArgKind::TensorList:
      case ArgKind::NullableTensorList:
        args->lists[a.name] = as_input_error(env, [&] { return arg_tensor_list(v, a.name, a.kind == ArgKind::NullableTensorList); });
        break;
      case ArgKind::Number:
      case ArgKind::OptionalNumber:
        args->numbers[a.name] = absent ? a.fallback : as_input_error(env, [&] { return arg_number(v, name); });
        break;
      case ArgKind::Integer:
      case ArgKind::OptionalInteger:
        args->numbers[a.name] = absent ? a.fallback : double(as_input_error(env, [&] { return arg_int(v, name); }));
        break;
      case ArgKind::Boolean:
      case ArgKind::OptionalBoolean:
        if (!absent && !v.IsBoolean()) throw make_input_error(env, a.name + ": expected a boolean");
        args->flags[a.name] = absent ? a.fallback != 0 : v.As<Napi::Boolean>().Value();
        break;
      case ArgKind::IntegerList:
        args->integer_lists[a.name] = as_input_error(env, [&] { return arg_int_list(v, name); });
        break;
      case ArgKind::String:
        args->strings[a.name] = as_input_error(env, [&] { return arg_string(v, name); });
        break;
      case ArgKind::Model:
        args->models[a.name] = as_input_error(env, [&] { return arg_model(v, name); });
        break;
      case ArgKind::ReadEntryList:
        args->read_entries[a.name] = as_input_error(env, [&] { return arg_read_entries(v, a.name); });
        break;
    }
  }
  return args;
}

Napi::Object wrap_results(Napi::Env env, const OpDecl& op, const OpResults& results) {
  Napi::Object out = Napi::Object::New(env);
  for (size_t i = 0; i < op.results.size(); ++i) {
    const OpResult& r = results.at(i);
    if (r.is_list) {
      Napi::Array list = Napi::Array::New(env, r.list.size());
      for (size_t j = 0; j < r.list.size(); ++j) list.Set(uint32_t(j), TensorWrap::Wrap(env, r.list[j]));
      out.Set(op.results[i].name, list);
    } else if (r.tensor.defined()) {
      out.Set(op.results[i].name, TensorWrap::Wrap(env, r.tensor));
    }
  }
  return out;
}

// Runs the op inside a user scope named after it: a profile (--profile-steps) shows which of the
// addon's ops each ATen op and kernel ran in.
OpResults run_recorded(const OpDecl& op, const OpArgs& args) {
  RECORD_USER_SCOPE(op.name.c_str());
  return op.run(args);
}

Napi::Value run_sync(const OpDecl& op, const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto args = read_args(op, info);
    return wrap_results(info.Env(), op, run_recorded(op, *args));
  });
}

Napi::Value run_async(const OpDecl& op, const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto args = read_args(op, info);
    auto results = std::make_shared<OpResults>();
    const OpDecl* decl = &op;  // the table is static
    return PromiseWorker::Run(
        info.Env(), [decl, args, results] { *results = run_recorded(*decl, *args); },
        [decl, results](Napi::Env env) -> Napi::Value { return wrap_results(env, *decl, *results); });
  });
}

Napi::Value OpDeclarations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array ops = Napi::Array::New(env);
  for (const auto& op : op_table()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", op.name);
    o.Set("doc", op.doc);
    Napi::Array args = Napi::Array::New(env);
    for (const auto& a : op.args) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", a.name);
      d.Set("kind", kind_name(a.kind));
      d.Set("doc", a.doc);
      if (a.kind == ArgKind::OptionalNumber || a.kind == ArgKind::OptionalInteger) d.Set("default", a.fallback);
      if (a.kind == ArgKind::OptionalBoolean) d.Set("default", a.fallback != 0);
      args.Set(args.Length(), d);
    }
    o.Set("args", args);
    Napi::Array results = Napi::Array::New(env);
    for (const auto& r : op.results) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", r.name);
      d.Set("optional", r.optional);
      if (r.list) d.Set("list", true);
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

void InitOps(Napi::Env env, Napi::Object exports) {
  for (const auto& op : op_table()) {
    const OpDecl* decl = &op;
    exports.Set(op.name, Napi::Function::New(env, [decl](const Napi::CallbackInfo& info) { return run_sync(*decl, info); }, op.name));
    exports.Set(op.name + "Async",
                Napi::Function::New(env, [decl](const Napi::CallbackInfo& info) { return run_async(*decl, info); }, op.name + "Async"));
  }
  exports.Set("opDeclarations", Napi::Function::New(env, OpDeclarations, "opDeclarations"));
}

}  // namespace edpo_js
