// Tensor arithmetic exposed to JS, declared as entries (js_op_table.h): the factories
// (fromArray, full, randn, manualSeed, cat, stack) and the Tensor.op methods (tensor.op(name, ...)).
// Enough for eager references, custom loops and optimizers; heavy paths have fused ops instead.
#include <ATen/core/grad_mode.h>
#include <c10/util/accumulate.h>

#include "js_common.h"
#include "js_op_table.h"

namespace edpo_js {
namespace {

using K = ArgKind;
using Fn = std::function<at::Tensor(const OpArgs&)>;

const ResultDecl kTensorResult{"tensor", false, "The new tensor.", ResultKind::Tensor};
const ArgDecl kShape{"shape", K::Shape, "The shape."};
const ArgDecl kDtype{"dtype", K::OptionalDType, "The dtype; default float32."};
const ArgDecl kDevice{"device", K::OptionalDevice, "'cpu' (default), 'cuda' or 'cuda:N'."};
const ArgDecl kDim{"dim", K::Integer, "A dimension (negative: from the end)."};
const ArgDecl kOther{"other", K::TensorOrNumber, "The right operand: a Tensor (broadcast) or a number."};
const ArgDecl kDims{"dims", K::OptionalDims, "The dimensions; absent: all."};
const ArgDecl kKeepdim{"keepdim", K::OptionalBoolean, "Keep the reduced dimensions (of size 1)."};

at::TensorOptions factory_options(const OpArgs& a) {
  at::TensorOptions options = at::TensorOptions().dtype(a.optional_dtype("dtype").value_or(at::kFloat));
  if (const auto device = a.optional_device("device")) options = options.device(*device);
  return options;
}

void factory(std::vector<OpDecl>& ops, const char* name, const char* doc, std::vector<ArgDecl> args, Fn run) {
  ops.push_back({name,
                 doc,
                 std::move(args),
                 {kTensorResult},
                 [run](const OpArgs& a) -> OpResults { return {run(a)}; },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
}

// A Tensor.op method on `self`.
void method(std::vector<OpDecl>& ops, const char* name, const char* doc, std::vector<ArgDecl> args, Fn run) {
  ops.push_back({name,
                 doc,
                 std::move(args),
                 {{"output", false, "The result.", ResultKind::Tensor}},
                 [run](const OpArgs& a) -> OpResults { return {run(a)}; },
                 Call::Method,
                 Mode::Sync,
                 Returns::Value});
}

// Arithmetic with a Tensor or a number as the right operand.
void binary(std::vector<OpDecl>& ops, const char* name, const char* doc,
            at::Tensor (*with_tensor)(const at::Tensor&, const at::Tensor&),
            at::Tensor (*with_scalar)(const at::Tensor&, const at::Scalar&)) {
  method(ops, name, doc, {kOther}, [with_tensor, with_scalar](const OpArgs& a) {
    if (a.tensors.count("other") == 0) return with_scalar(a.self, at::Scalar(a.number("other")));
    return with_tensor(a.self, a.tensor("other"));
  });
}

void unary(std::vector<OpDecl>& ops, const char* name, const char* doc, at::Tensor (*fn)(const at::Tensor&)) {
  method(ops, name, doc, {}, [fn](const OpArgs& a) { return fn(a.self); });
}

// Tensor.cat / Tensor.stack: libtorch's shape errors are reported against the list.
template <at::Tensor (*Join)(at::TensorList, int64_t)>
at::Tensor join(const OpArgs& a) {
  try {
    return Join(a.list("tensors"), a.integer("dim"));
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "tensors: ", error_message(e));
  }
}
at::Tensor cat_tensors(at::TensorList tensors, int64_t dim) { return at::cat(tensors, dim); }
at::Tensor stack_tensors(at::TensorList tensors, int64_t dim) { return at::stack(tensors, dim); }

at::Tensor from_array(const OpArgs& a) {
  const at::Tensor flat = a.tensor("data");
  const std::vector<int64_t>& shape = a.integer_list("shape");
  const int64_t numel = c10::multiply_integers(shape);
  TORCH_CHECK(flat.numel() == numel, "data: has ", flat.numel(), " elements but shape ", c10::IntArrayRef(shape),
              " needs ", numel);
  at::Tensor t = flat.view(shape);
  if (const auto dtype = a.optional_dtype("dtype")) t = t.to(*dtype);
  if (const auto device = a.optional_device("device")) t = t.to(*device);
  if (a.flag("requiresGrad")) {
    TORCH_CHECK(t.is_floating_point(), "requiresGrad: only floating-point tensors can require gradients, got ",
                t.scalar_type());
    t.set_requires_grad(true);
  }
  return t;
}

void declare_factories(std::vector<OpDecl>& ops) {
  factory(ops, "fromArray",
          "A new tensor of `shape` holding a copy of `data` (its dtype: the array's type, then `dtype`).",
          {{"data", K::HostArray, "The values, row-major."},
           kShape,
           {"dtype", K::OptionalDType, "Converts to this dtype; default: the array's type."},
           kDevice,
           {"requiresGrad", K::OptionalBoolean, "Make it a leaf that requires gradients (floating point only)."}},
          from_array);
  factory(ops, "full", "A new tensor of `shape` filled with `value`.",
          {kShape, {"value", K::Number, "The fill value."}, kDtype, kDevice},
          [](const OpArgs& a) { return at::full(a.integer_list("shape"), a.number("value"), factory_options(a)); });
  factory(ops, "randn", "Standard normal samples from libtorch's global generator (see manualSeed).",
          {kShape, kDtype, kDevice},
          [](const OpArgs& a) { return at::randn(a.integer_list("shape"), factory_options(a)); });
  ops.push_back({"manualSeed",
                 "Seeds libtorch's global generator.",
                 {{"seed", K::Integer, "The seed.", 0, 0}},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   at::manual_seed(uint64_t(a.integer("seed")));
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  const std::vector<ArgDecl> join_args = {{"tensors", K::TensorList, "The tensors."},
                                          {"dim", K::OptionalInteger, "The dimension; default 0."}};
  factory(ops, "cat", "The tensors joined along an existing dimension.", join_args, join<cat_tensors>);
  factory(ops, "stack", "The tensors stacked along a new dimension.", join_args, join<stack_tensors>);
}

void declare_methods(std::vector<OpDecl>& ops) {
  using T = const at::Tensor&;
  using S = const at::Scalar&;
  binary(
      ops, "add", "self + other.", [](T a, T b) { return a + b; }, [](T a, S b) { return a + b; });
  binary(
      ops, "sub", "self − other.", [](T a, T b) { return a - b; }, [](T a, S b) { return a - b; });
  binary(
      ops, "mul", "self · other.", [](T a, T b) { return a * b; }, [](T a, S b) { return a * b; });
  binary(
      ops, "div", "self / other.", [](T a, T b) { return a / b; }, [](T a, S b) { return a / b; });
  binary(
      ops, "gt", "self > other (bool).", [](T a, T b) { return a.gt(b); }, [](T a, S b) { return a.gt(b); });
  binary(
      ops, "lt", "self < other (bool).", [](T a, T b) { return a.lt(b); }, [](T a, S b) { return a.lt(b); });
  binary(
      ops, "eq", "self == other (bool).", [](T a, T b) { return a.eq(b); }, [](T a, S b) { return a.eq(b); });
  binary(
      ops, "pow", "self ** other.", [](T a, T b) { return a.pow(b); }, [](T a, S b) { return a.pow(b); });
  method(ops, "logicalAnd", "self && other (bool).", {{"other", K::Tensor, "The right operand."}},
         [](const OpArgs& a) { return a.self.logical_and(a.tensor("other")); });
  unary(ops, "neg", "−self.", [](T t) { return -t; });
  unary(ops, "exp", "exp(self).", [](T t) { return t.exp(); });
  unary(ops, "log", "log(self).", [](T t) { return t.log(); });
  unary(ops, "sqrt", "sqrt(self).", [](T t) { return t.sqrt(); });
  unary(ops, "abs", "|self|.", [](T t) { return t.abs(); });
  unary(ops, "sigmoid", "sigmoid(self).", [](T t) { return t.sigmoid(); });
  unary(ops, "tanh", "tanh(self).", [](T t) { return t.tanh(); });
  unary(ops, "logSigmoid", "log(sigmoid(self)), stable.", [](T t) { return at::log_sigmoid(t); });
  unary(ops, "isfinite", "Where self is finite (bool).", [](T t) { return at::isfinite(t); });
  unary(ops, "detach", "self, cut from the autograd graph (shares storage).", [](T t) { return t.detach(); });
  unary(ops, "clone", "A copy of self.", [](T t) { return t.clone(); });
  unary(ops, "contiguous", "self in row-major layout (self itself when it already is).",
        [](T t) { return t.contiguous(); });
  method(ops, "logSoftmax", "log(softmax(self)) along dim.", {kDim},
         [](const OpArgs& a) { return a.self.log_softmax(a.integer("dim")); });
  method(ops, "softmax", "softmax(self) along dim.", {kDim},
         [](const OpArgs& a) { return a.self.softmax(a.integer("dim")); });
  method(ops, "gather", "self's values at `index` along dim.", {kDim, {"index", K::Tensor, "int64 indices."}},
         [](const OpArgs& a) { return a.self.gather(a.integer("dim"), a.tensor("index")); });
  method(ops, "sum", "Sum over dims.", {kDims, kKeepdim},
         [](const OpArgs& a) { return a.self.sum(a.dims("dims"), a.flag("keepdim")); });
  method(ops, "mean", "Mean over dims.", {kDims, kKeepdim},
         [](const OpArgs& a) { return a.self.mean(a.dims("dims"), a.flag("keepdim")); });
  method(ops, "amax", "Maximum over dims.", {kDims, kKeepdim},
         [](const OpArgs& a) { return a.self.amax(a.dims("dims"), a.flag("keepdim")); });
  method(ops, "argmax", "Index of the maximum along dim (int64).", {kDim, kKeepdim},
         [](const OpArgs& a) { return a.self.argmax(a.integer("dim"), a.flag("keepdim")); });
  method(ops, "reshape", "self with a new shape (one entry may be -1).", {{"shape", K::IntegerList, "The new shape."}},
         [](const OpArgs& a) { return a.self.reshape(a.integer_list("shape")); });
  method(ops, "transpose", "self with two dimensions swapped.",
         {{"dim0", K::Integer, "One dimension."}, {"dim1", K::Integer, "The other."}},
         [](const OpArgs& a) { return a.self.transpose(a.integer("dim0"), a.integer("dim1")); });
  method(ops, "narrow", "The slice [start, start + length) of dim (a view).",
         {kDim, {"start", K::Integer, "First index."}, {"length", K::Integer, "Entries kept."}},
         [](const OpArgs& a) { return a.self.narrow(a.integer("dim"), a.integer("start"), a.integer("length")); });
  method(ops, "unsqueeze", "self with a new dimension of size 1 at dim.", {kDim},
         [](const OpArgs& a) { return a.self.unsqueeze(a.integer("dim")); });
  method(ops, "squeeze", "self without dim when its size is 1.", {kDim},
         [](const OpArgs& a) { return a.self.squeeze(a.integer("dim")); });
  method(ops, "matmul", "The matrix product self · other.", {{"other", K::Tensor, "The right operand."}},
         [](const OpArgs& a) { return a.self.matmul(a.tensor("other")); });
  method(ops, "where", "Elementwise condition ? self : other.",
         {{"condition", K::Tensor, "bool."}, {"other", K::Tensor, "Where condition is false."}},
         [](const OpArgs& a) { return at::where(a.tensor("condition"), a.self, a.tensor("other")); });
  method(ops, "maskedFill", "self with `value` where mask is true.",
         {{"mask", K::Tensor, "bool, broadcast to self."}, {"value", K::Number, "The fill value."}},
         [](const OpArgs& a) { return a.self.masked_fill(a.tensor("mask"), a.number("value")); });
  // In place, without recording autograd history: optimizer updates.
  method(ops, "addInPlace", "self += alpha·other, in place and outside autograd.",
         {kOther, {"alpha", K::OptionalNumber, "The factor on other.", 1}}, [](const OpArgs& a) {
           at::NoGradGuard no_grad;
           at::Tensor target = a.self;
           if (a.tensors.count("other") == 0) return target.add_(a.number("other"), a.number("alpha"));
           return target.add_(a.tensor("other"), a.number("alpha"));
         });
  method(ops, "mulInPlace", "self *= other, in place and outside autograd.", {kOther}, [](const OpArgs& a) {
    at::NoGradGuard no_grad;
    at::Tensor target = a.self;
    if (a.tensors.count("other") == 0) return target.mul_(a.number("other"));
    return target.mul_(a.tensor("other"));
  });
  method(ops, "copyInPlace", "Copies source into self, in place and outside autograd.",
         {{"source", K::Tensor, "The values."}}, [](const OpArgs& a) {
           at::NoGradGuard no_grad;
           at::Tensor target = a.self;
           return target.copy_(a.tensor("source"));
         });
}

}  // namespace

void declare_tensor_ops(std::vector<OpDecl>& ops) {
  declare_factories(ops);
  declare_methods(ops);
}

}  // namespace edpo_js
