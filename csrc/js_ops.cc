// ops.* entry points: argument objects in, objects of Tensors out. Each op has a synchronous
// form and an Async form that runs on the thread pool and returns a Promise.
#include <memory>

#include "js_common.h"
#include "ops/chunked_linear.h"
#include "ops/epsilon_dpo.h"
#include "ops/sequence_stats.h"

namespace edpo_js {
namespace {

at::Tensor field_tensor(const Napi::Object& args, const char* name) {
  return TensorWrap::FromValue(args.Get(name), name);
}

double field_number(const Napi::Object& args, const char* name, double fallback, bool required) {
  const Napi::Value v = args.Get(name);
  if (v.IsUndefined() && !required) return fallback;
  return arg_number(v, name);
}

Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "expected one argument object");
  return info[0].As<Napi::Object>();
}

struct LossCall {
  at::Tensor policy, reference, labels, mask;
  edpo::EpsilonDpoOptions options;
  edpo::EpsilonDpoOutput out;
};

std::shared_ptr<LossCall> read_loss_call(const Napi::CallbackInfo& info) {
  const Napi::Object args = args_object(info);
  auto call = std::make_shared<LossCall>();
  call->policy = field_tensor(args, "policyLogits");
  call->reference = field_tensor(args, "referenceLogits");
  call->labels = field_tensor(args, "labels");
  call->mask = field_tensor(args, "lossMask");
  call->options.beta = field_number(args, "beta", 0, true);
  call->options.epsilon = field_number(args, "epsilon", 0, true);
  call->options.label_smoothing = field_number(args, "labelSmoothing", 0.0, false);
  return call;
}

Napi::Object loss_result(Napi::Env env, const edpo::EpsilonDpoOutput& o) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", TensorWrap::Wrap(env, o.loss));
  r.Set("steps", TensorWrap::Wrap(env, o.steps));
  r.Set("betas", TensorWrap::Wrap(env, o.betas));
  r.Set("chosenLogps", TensorWrap::Wrap(env, o.chosen_logps));
  r.Set("rejectedLogps", TensorWrap::Wrap(env, o.rejected_logps));
  r.Set("refChosenLogps", TensorWrap::Wrap(env, o.ref_chosen_logps));
  r.Set("refRejectedLogps", TensorWrap::Wrap(env, o.ref_rejected_logps));
  r.Set("chosenRewards", TensorWrap::Wrap(env, o.chosen_rewards));
  r.Set("rejectedRewards", TensorWrap::Wrap(env, o.rejected_rewards));
  r.Set("meanChosenLogits", TensorWrap::Wrap(env, o.mean_chosen_logits));
  r.Set("meanRejectedLogits", TensorWrap::Wrap(env, o.mean_rejected_logits));
  return r;
}

void run_loss(LossCall& c) { c.out = edpo::epsilon_dpo_loss(c.policy, c.reference, c.labels, c.mask, c.options); }

Napi::Value EpsilonDpoLoss(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_loss_call(info);
    run_loss(*call);
    return loss_result(info.Env(), call->out);
  });
}

Napi::Value EpsilonDpoLossAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_loss_call(info);
    return PromiseWorker::Run(
        info.Env(), [call] { run_loss(*call); }, [call](Napi::Env env) -> Napi::Value { return loss_result(env, call->out); });
  });
}

// The chunked op's call: hidden states and heads instead of logits.
struct HiddenCall {
  edpo::LinearHead policy, reference;
  at::Tensor labels, mask;
  edpo::ChunkedOptions options;
  edpo::EpsilonDpoOutput out;
};

at::Tensor optional_tensor(const Napi::Object& args, const char* name) {
  const Napi::Value v = args.Get(name);
  return v.IsUndefined() || v.IsNull() ? at::Tensor() : TensorWrap::FromValue(v, name);
}

std::shared_ptr<HiddenCall> read_hidden_call(const Napi::CallbackInfo& info) {
  const Napi::Object args = args_object(info);
  auto call = std::make_shared<HiddenCall>();
  call->policy = {field_tensor(args, "policyHidden"), field_tensor(args, "policyHead"), optional_tensor(args, "policyBias")};
  call->reference = {field_tensor(args, "referenceHidden"), field_tensor(args, "referenceHead"),
                     optional_tensor(args, "referenceBias")};
  call->labels = field_tensor(args, "labels");
  call->mask = field_tensor(args, "lossMask");
  call->options.loss.beta = field_number(args, "beta", 0, true);
  call->options.loss.epsilon = field_number(args, "epsilon", 0, true);
  call->options.loss.label_smoothing = field_number(args, "labelSmoothing", 0.0, false);
  call->options.final_logit_softcap = field_number(args, "finalLogitSoftcap", 0.0, false);
  const double chunk = field_number(args, "chunkTokens", 0.0, false);
  TORCH_CHECK(chunk >= 0 && chunk == double(int64_t(chunk)), "chunkTokens: expected an integer >= 1, got ", chunk);
  call->options.chunk_tokens = int64_t(chunk);
  return call;
}

void run_hidden(HiddenCall& c) {
  c.out = edpo::epsilon_dpo_loss_from_hidden(c.policy, c.reference, c.labels, c.mask, c.options);
}

Napi::Value EpsilonDpoLossFromHidden(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_hidden_call(info);
    run_hidden(*call);
    return loss_result(info.Env(), call->out);
  });
}

Napi::Value EpsilonDpoLossFromHiddenAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_hidden_call(info);
    return PromiseWorker::Run(
        info.Env(), [call] { run_hidden(*call); },
        [call](Napi::Env env) -> Napi::Value { return loss_result(env, call->out); });
  });
}

// sequenceLogps({policyLogits, referenceLogits, labels, lossMask, epsilon}) → per-sequence float64 sums.
Napi::Value SequenceLogps(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const Napi::Object args = args_object(info);
    const edpo::SequenceLogps s = edpo::sequence_logps(
        field_tensor(args, "policyLogits"), field_tensor(args, "referenceLogits"), field_tensor(args, "labels"),
        field_tensor(args, "lossMask"), field_number(args, "epsilon", 0, true));
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("policy", TensorWrap::Wrap(env, s.policy));
    r.Set("reference", TensorWrap::Wrap(env, s.reference));
    r.Set("plus", TensorWrap::Wrap(env, s.plus));
    r.Set("minus", TensorWrap::Wrap(env, s.minus));
    r.Set("logitSum", TensorWrap::Wrap(env, s.logit_sum));
    r.Set("tokenCount", TensorWrap::Wrap(env, s.token_count));
    return r;
  });
}

// sequenceStatsFromHidden: per-sequence log-probs (SFT, evaluation) from hidden states, chunked.
struct StatsCall {
  edpo::LinearHead policy, reference;
  at::Tensor labels, mask;
  edpo::SequenceStatsOptions options;
  edpo::SequenceStats out;
};

std::shared_ptr<StatsCall> read_stats_call(const Napi::CallbackInfo& info) {
  const Napi::Object args = args_object(info);
  auto call = std::make_shared<StatsCall>();
  call->policy = {field_tensor(args, "policyHidden"), field_tensor(args, "policyHead"), optional_tensor(args, "policyBias")};
  call->reference = {optional_tensor(args, "referenceHidden"), optional_tensor(args, "referenceHead"),
                     optional_tensor(args, "referenceBias")};
  TORCH_CHECK(call->reference.hidden.defined() == call->reference.weight.defined(),
              "referenceHidden/referenceHead: give both or neither");
  call->labels = field_tensor(args, "labels");
  call->mask = field_tensor(args, "lossMask");
  call->options.final_logit_softcap = field_number(args, "finalLogitSoftcap", 0.0, false);
  const double chunk = field_number(args, "chunkTokens", 0.0, false);
  TORCH_CHECK(chunk >= 0 && chunk == double(int64_t(chunk)), "chunkTokens: expected an integer >= 1, got ", chunk);
  call->options.chunk_tokens = int64_t(chunk);
  return call;
}

void run_stats(StatsCall& c) {
  c.out = edpo::sequence_stats_from_hidden(c.policy, c.reference, c.labels, c.mask, c.options);
}

Napi::Object stats_result(Napi::Env env, const edpo::SequenceStats& s) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("logps", TensorWrap::Wrap(env, s.logps));
  r.Set("correct", TensorWrap::Wrap(env, s.correct));
  r.Set("tokenCount", TensorWrap::Wrap(env, s.token_count));
  if (s.ref_logps.defined()) r.Set("referenceLogps", TensorWrap::Wrap(env, s.ref_logps));
  if (s.kl.defined()) r.Set("kl", TensorWrap::Wrap(env, s.kl));
  return r;
}

Napi::Value SequenceStatsFromHidden(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_stats_call(info);
    run_stats(*call);
    return stats_result(info.Env(), call->out);
  });
}

Napi::Value SequenceStatsFromHiddenAsync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    auto call = read_stats_call(info);
    return PromiseWorker::Run(
        info.Env(), [call] { run_stats(*call); },
        [call](Napi::Env env) -> Napi::Value { return stats_result(env, call->out); });
  });
}

}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) {
  exports.Set("epsilonDpoLoss", Napi::Function::New(env, EpsilonDpoLoss));
  exports.Set("epsilonDpoLossAsync", Napi::Function::New(env, EpsilonDpoLossAsync));
  exports.Set("sequenceLogps", Napi::Function::New(env, SequenceLogps));
  exports.Set("epsilonDpoLossFromHidden", Napi::Function::New(env, EpsilonDpoLossFromHidden));
  exports.Set("epsilonDpoLossFromHiddenAsync", Napi::Function::New(env, EpsilonDpoLossFromHiddenAsync));
  exports.Set("sequenceStatsFromHidden", Napi::Function::New(env, SequenceStatsFromHidden));
  exports.Set("sequenceStatsFromHiddenAsync", Napi::Function::New(env, SequenceStatsFromHiddenAsync));
}

}  // namespace edpo_js
