// Tensor arithmetic exposed to JS: a table of named ops (t.op(name, ...args)) plus factories.
// Enough for eager references, custom loops and optimizers; heavy paths have fused ops instead.
#include <ATen/core/grad_mode.h>

#include <cstring>
#include <functional>
#include <unordered_map>

#include "js_common.h"

namespace edpo_js {
namespace {

using Args = const Napi::CallbackInfo&;  // info[0] is the op name; op arguments start at 1
using OpFn = std::function<at::Tensor(const at::Tensor&, Args)>;

at::Tensor tensor_arg(Args info, size_t i, const char* what) { return TensorWrap::FromValue(info[i], what); }
int64_t int_arg(Args info, size_t i, const char* what) { return arg_int(info[i], what); }
bool bool_arg(Args info, size_t i, bool fallback) {
  if (info.Length() <= i || info[i].IsUndefined()) return fallback;
  if (!info[i].IsBoolean()) throw Napi::TypeError::New(info.Env(), "keepdim: expected a boolean");
  return info[i].As<Napi::Boolean>().Value();
}
// Dimensions argument: a number, an array, or undefined (= all dims).
std::vector<int64_t> dims_arg(Args info, size_t i, const at::Tensor& t) {
  if (info.Length() <= i || info[i].IsUndefined()) {
    std::vector<int64_t> all(size_t(t.dim()));
    for (int64_t d = 0; d < t.dim(); ++d) all[size_t(d)] = d;
    return all;
  }
  if (info[i].IsNumber()) return {int_arg(info, i, "dim")};
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), "dims: expected an integer or an array of integers");
  return arg_int_list(info[i], "dims");
}

// Binary ops take a Tensor or a number as the right operand.
OpFn binary(at::Tensor (*with_tensor)(const at::Tensor&, const at::Tensor&),
            at::Tensor (*with_scalar)(const at::Tensor&, const at::Scalar&)) {
  return [with_tensor, with_scalar](const at::Tensor& t, Args info) {
    if (info[1].IsNumber()) return with_scalar(t, at::Scalar(info[1].As<Napi::Number>().DoubleValue()));
    return with_tensor(t, tensor_arg(info, 1, "other"));
  };
}

const std::unordered_map<std::string, OpFn>& op_table() {
  static const std::unordered_map<std::string, OpFn> table = {
      {"add", binary([](const at::Tensor& a, const at::Tensor& b) { return a + b; },
                     [](const at::Tensor& a, const at::Scalar& b) { return a + b; })},
      {"sub", binary([](const at::Tensor& a, const at::Tensor& b) { return a - b; },
                     [](const at::Tensor& a, const at::Scalar& b) { return a - b; })},
      {"mul", binary([](const at::Tensor& a, const at::Tensor& b) { return a * b; },
                     [](const at::Tensor& a, const at::Scalar& b) { return a * b; })},
      {"div", binary([](const at::Tensor& a, const at::Tensor& b) { return a / b; },
                     [](const at::Tensor& a, const at::Scalar& b) { return a / b; })},
      {"gt", binary([](const at::Tensor& a, const at::Tensor& b) { return a.gt(b); },
                    [](const at::Tensor& a, const at::Scalar& b) { return a.gt(b); })},
      {"lt", binary([](const at::Tensor& a, const at::Tensor& b) { return a.lt(b); },
                    [](const at::Tensor& a, const at::Scalar& b) { return a.lt(b); })},
      {"eq", binary([](const at::Tensor& a, const at::Tensor& b) { return a.eq(b); },
                    [](const at::Tensor& a, const at::Scalar& b) { return a.eq(b); })},
      {"pow", binary([](const at::Tensor& a, const at::Tensor& b) { return a.pow(b); },
                     [](const at::Tensor& a, const at::Scalar& b) { return a.pow(b); })},
      {"logicalAnd", [](const at::Tensor& t, Args info) { return t.logical_and(tensor_arg(info, 1, "other")); }},
      {"neg", [](const at::Tensor& t, Args) { return -t; }},
      {"exp", [](const at::Tensor& t, Args) { return t.exp(); }},
      {"log", [](const at::Tensor& t, Args) { return t.log(); }},
      {"sqrt", [](const at::Tensor& t, Args) { return t.sqrt(); }},
      {"abs", [](const at::Tensor& t, Args) { return t.abs(); }},
      {"sigmoid", [](const at::Tensor& t, Args) { return t.sigmoid(); }},
      {"tanh", [](const at::Tensor& t, Args) { return t.tanh(); }},
      {"logSigmoid", [](const at::Tensor& t, Args) { return at::log_sigmoid(t); }},
      {"isfinite", [](const at::Tensor& t, Args) { return at::isfinite(t); }},
      {"detach", [](const at::Tensor& t, Args) { return t.detach(); }},
      {"clone", [](const at::Tensor& t, Args) { return t.clone(); }},
      {"contiguous", [](const at::Tensor& t, Args) { return t.contiguous(); }},
      {"logSoftmax", [](const at::Tensor& t, Args info) { return t.log_softmax(int_arg(info, 1, "dim")); }},
      {"softmax", [](const at::Tensor& t, Args info) { return t.softmax(int_arg(info, 1, "dim")); }},
      {"gather",
       [](const at::Tensor& t, Args info) { return t.gather(int_arg(info, 1, "dim"), tensor_arg(info, 2, "index")); }},
      {"sum", [](const at::Tensor& t, Args info) { return t.sum(dims_arg(info, 1, t), bool_arg(info, 2, false)); }},
      {"mean", [](const at::Tensor& t, Args info) { return t.mean(dims_arg(info, 1, t), bool_arg(info, 2, false)); }},
      {"amax", [](const at::Tensor& t, Args info) { return t.amax(dims_arg(info, 1, t), bool_arg(info, 2, false)); }},
      {"argmax",
       [](const at::Tensor& t, Args info) { return t.argmax(int_arg(info, 1, "dim"), bool_arg(info, 2, false)); }},
      {"reshape", [](const at::Tensor& t, Args info) { return t.reshape(arg_int_list(info[1], "shape")); }},
      {"transpose",
       [](const at::Tensor& t, Args info) { return t.transpose(int_arg(info, 1, "dim0"), int_arg(info, 2, "dim1")); }},
      {"narrow",
       [](const at::Tensor& t, Args info) {
         return t.narrow(int_arg(info, 1, "dim"), int_arg(info, 2, "start"), int_arg(info, 3, "length"));
       }},
      {"unsqueeze", [](const at::Tensor& t, Args info) { return t.unsqueeze(int_arg(info, 1, "dim")); }},
      {"squeeze", [](const at::Tensor& t, Args info) { return t.squeeze(int_arg(info, 1, "dim")); }},
      {"matmul", [](const at::Tensor& t, Args info) { return t.matmul(tensor_arg(info, 1, "other")); }},
      {"where",
       [](const at::Tensor& t, Args info) { return at::where(tensor_arg(info, 1, "condition"), t, tensor_arg(info, 2, "other")); }},
      {"maskedFill",
       [](const at::Tensor& t, Args info) {
         return t.masked_fill(tensor_arg(info, 1, "mask"), arg_number(info[2], "value"));
       }},
      // In place, without recording autograd history: optimizer updates.
      {"addInPlace",
       [](const at::Tensor& t, Args info) {
         at::NoGradGuard no_grad;
         at::Tensor target = t;
         const double alpha = info.Length() > 2 ? arg_number(info[2], "alpha") : 1.0;
         if (info[1].IsNumber()) return target.add_(arg_number(info[1], "other"), alpha);
         return target.add_(tensor_arg(info, 1, "other"), alpha);
       }},
      {"mulInPlace",
       [](const at::Tensor& t, Args info) {
         at::NoGradGuard no_grad;
         at::Tensor target = t;
         if (info[1].IsNumber()) return target.mul_(arg_number(info[1], "other"));
         return target.mul_(tensor_arg(info, 1, "other"));
       }},
      {"copyInPlace",
       [](const at::Tensor& t, Args info) {
         at::NoGradGuard no_grad;
         at::Tensor target = t;
         return target.copy_(tensor_arg(info, 1, "source"));
       }},
  };
  return table;
}

}  // namespace

Napi::Value TensorWrap::Op(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const std::string name = arg_string(info[0], "op");
    const auto& table = op_table();
    const auto it = table.find(name);
    TORCH_CHECK(it != table.end(), "op: unknown tensor op '", name, "'");
    const at::Tensor& self = tensor(name.c_str());
    at::Tensor out;
    try {
      out = it->second(self, info);
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      // libtorch's own messages ("The size of tensor a (3) must match ...") do not say which call failed.
      TORCH_CHECK(false, name, ": ", error_message(e));
    }
    return Wrap(info.Env(), out);
  });
}

namespace {

template <typename ArrayT>
at::Tensor copy_in(const Napi::TypedArray& array, at::ScalarType source, const std::vector<int64_t>& shape) {
  const auto typed = array.As<ArrayT>();
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(source));
  TORCH_CHECK(int64_t(typed.ElementLength()) == out.numel(), "data: has ", typed.ElementLength(),
              " elements but shape ", c10::IntArrayRef(shape), " needs ", out.numel());
  if (out.numel() > 0) std::memcpy(out.data_ptr(), typed.Data(), out.nbytes());
  return out;
}

// fromArray(typedArray, shape, dtype?, device?, requiresGrad?)
Napi::Value FromArray(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    if (!info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "data: expected a typed array");
    const auto array = info[0].As<Napi::TypedArray>();
    const std::vector<int64_t> shape = arg_shape(info[1], "shape");
    at::Tensor t;
    switch (array.TypedArrayType()) {
      case napi_float32_array: t = copy_in<Napi::Float32Array>(array, at::kFloat, shape); break;
      case napi_float64_array: t = copy_in<Napi::Float64Array>(array, at::kDouble, shape); break;
      case napi_int32_array: t = copy_in<Napi::Int32Array>(array, at::kInt, shape); break;
      case napi_bigint64_array: t = copy_in<Napi::BigInt64Array>(array, at::kLong, shape); break;
      case napi_uint8_array: t = copy_in<Napi::Uint8Array>(array, at::kByte, shape); break;
      default:
        throw Napi::TypeError::New(info.Env(),
                                   "data: expected Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array");
    }
    if (info.Length() > 2 && !info[2].IsUndefined()) t = t.to(parse_dtype(arg_string(info[2], "dtype"), "dtype"));
    if (info.Length() > 3 && !info[3].IsUndefined()) t = t.to(parse_device(arg_string(info[3], "device"), "device"));
    if (info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value()) {
      TORCH_CHECK(t.is_floating_point(), "requiresGrad: only floating-point tensors can require gradients, got ",
                  t.scalar_type());
      t.set_requires_grad(true);
    }
    return TensorWrap::Wrap(info.Env(), t);
  });
}

at::TensorOptions factory_options(const Napi::CallbackInfo& info, size_t dtype_at) {
  at::TensorOptions options = at::TensorOptions().dtype(at::kFloat);
  if (info.Length() > dtype_at && !info[dtype_at].IsUndefined())
    options = options.dtype(parse_dtype(arg_string(info[dtype_at], "dtype"), "dtype"));
  if (info.Length() > dtype_at + 1 && !info[dtype_at + 1].IsUndefined())
    options = options.device(parse_device(arg_string(info[dtype_at + 1], "device"), "device"));
  return options;
}

// full(shape, value, dtype?, device?)
Napi::Value Full(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    return TensorWrap::Wrap(info.Env(),
                            at::full(arg_shape(info[0], "shape"), arg_number(info[1], "value"), factory_options(info, 2)));
  });
}

// randn(shape, dtype?, device?) from libtorch's global generator (see manualSeed).
Napi::Value Randn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    return TensorWrap::Wrap(info.Env(), at::randn(arg_shape(info[0], "shape"), factory_options(info, 1)));
  });
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const double seed = arg_number(info[0], "seed");
    TORCH_CHECK(seed >= 0 && seed == double(uint64_t(seed)), "seed: expected a non-negative integer, got ", seed);
    at::manual_seed(uint64_t(seed));
    return info.Env().Undefined();
  });
}

std::vector<at::Tensor> tensor_list(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of Tensors");
  const auto array = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(TensorWrap::FromValue(array.Get(i), what));
  return out;
}

// Tensor.cat / Tensor.stack: a list of tensors joined along `dim` (default 0); libtorch's shape
// errors are reported against the list.
template <at::Tensor (*Join)(at::TensorList, int64_t)>
Napi::Value JoinTensors(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const int64_t dim = info.Length() > 1 && !info[1].IsUndefined() ? arg_int(info[1], "dim") : 0;
    const std::vector<at::Tensor> tensors = tensor_list(info[0], "tensors");
    try {
      return TensorWrap::Wrap(info.Env(), Join(tensors, dim));
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "tensors: ", error_message(e));
    }
  });
}

at::Tensor cat_tensors(at::TensorList tensors, int64_t dim) { return at::cat(tensors, dim); }
at::Tensor stack_tensors(at::TensorList tensors, int64_t dim) { return at::stack(tensors, dim); }

}  // namespace

void InitTensorFactories(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
                                      {"fromArray", FromArray},
                                      {"full", Full},
                                      {"randn", Randn},
                                      {"manualSeed", ManualSeed},
                                      {"cat", JoinTensors<cat_tensors>},
                                      {"stack", JoinTensors<stack_tensors>},
                                  });
}

}  // namespace edpo_js
