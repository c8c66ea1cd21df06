// The ε-DPO and sequence ops (see js_op_table.h): the head of a training or evaluation step.
// Argument docs become the TSDoc of the generated TypeScript argument types; invariants are
// checked by the ops themselves.
#include "js_op_table.h"

#include "js_common.h"

#include "ops/arg_error.h"
#include "ops/chunked_linear.h"
#include "ops/epsilon_dpo.h"
#include "ops/sequence_stats.h"

namespace edpo_js {
namespace {

using K = ArgKind;

edpo::LinearHead head(const OpArgs& a, const std::string& prefix) {
  return {a.tensor(prefix + "Hidden"), a.tensor(prefix + "Head"), a.tensor(prefix + "Bias")};
}

edpo::EpsilonDpoOptions loss_options(const OpArgs& a) {
  return {a.number("beta"), a.number("epsilon"), a.number("labelSmoothing"), a.flag("bf16Criterion")};
}

const std::vector<ArgDecl> kLogitsArgs = {
    {"policyLogits", K::Tensor, "[2B,T,V] policy logits, chosen rows first; float32, bfloat16, float16 or float64."},
    {"referenceLogits", K::Tensor, "[2B,T,V] reference logits, same dtype and device; never receives gradients."},
    {"labels", K::Tensor, "[2B,T] int64 next-token labels (already shifted); ignored where lossMask is 0."},
    {"lossMask", K::Tensor, "[2B,T] 1 on completion tokens, 0 elsewhere (bool, integer or float)."},
};
const ArgDecl kBeta{"beta", K::Number,
                    "KL coefficient β in (0, 1e6] (the current global value; see spec §6 for its update)."};
const ArgDecl kEpsilon{"epsilon", K::Number, "Perturbation size ε in [0, 1); 0 gives exactly DPO."};
const ArgDecl kLabelSmoothing{"labelSmoothing", K::OptionalNumber,
                              "Conservative label smoothing ℓ in [0, 0.5]; default 0."};
const ArgDecl kBf16Criterion{
    "bf16Criterion", K::OptionalBoolean,
    "true: take the step decision s_i from log-probs and sums rounded as the authors' eager bf16 trainer does "
    "(spec §8); the loss and its gradient stay exact. Default false."};
const ArgDecl kSoftcap{"finalLogitSoftcap", K::OptionalNumber,
                       "Gemma-2's final logit soft-capping c: logits = c·tanh(z/c). 0 or absent: none."};
// Absent means "pick from V" (0 inside the ops).
const ArgDecl kChunkTokens{
    "chunkTokens", K::OptionalInteger,
    "Completion tokens per chunk, >= 1; default: chunkTokensDefault (≈ 2^25 / V on the CPU, 2^28 / V on a GPU).", 0, 1};
const ArgDecl kActiveRows{
    "activeRows", K::OptionalTensor,
    "int64 [n]: the flat row indices (into the [R·T] rows) where lossMask is non-zero, ascending. A caller that "
    "knows the mask on the host passes them so the op need not read the device (nonzero() would); checked. On the "
    "CPU (copied to the tensors' device once) or on that device; epsilonDpoLossFromHidden plans its chunks on the "
    "host, so a device-side list costs it one read."};
const std::vector<ResultDecl> kLossResults = {
    {"loss", false, "Mean loss over pairs, differentiable w.r.t. the policy's inputs."},
    {"record", false, "[B, k] float64 on the op's device, one row per pair: the columns of PAIR_RECORD_COLUMNS."},
};

const ResultDecl kInputErrorResult{"inputError", false,
                                   "float64 scalar: the device-side input-error flag (INPUT_ERRORS), 0 when valid."};

OpResults loss_results(const edpo::EpsilonDpoOutput& o) { return {o.loss, o.record}; }

std::vector<ArgDecl> concat(std::vector<ArgDecl> a, const std::vector<ArgDecl>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

void declare_loss_ops(std::vector<OpDecl>& ops) {
  ops.push_back({"chunkTokensDefault",
                 "The completion tokens per chunk the chunked ops take when chunkTokens is absent: about 2^25 logits "
                 "per chunk and model on the CPU, 2^28 on a GPU (in 64-row tiles).",
                 {{"vocab", K::Integer, "The vocabulary size V.", 0, 1},
                  {"device", K::OptionalDevice, "'cpu' (default), 'cuda' or 'cuda:N'."}},
                 {{"tokens", false, "Completion tokens per chunk.", ResultKind::Number}},
                 [](const OpArgs& a) -> OpResults {
                   const c10::Device d = a.optional_device("device").value_or(c10::Device(c10::DeviceType::CPU));
                   return {double(edpo::default_chunk_rows(a.integer("vocab"), d.type()))};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back(
      {"epsilonDpoLoss", "The ε-DPO loss (spec §2–§5) from full logits, in one fused pass per token row.",
       concat(kLogitsArgs, {kBeta, kEpsilon, kLabelSmoothing, kBf16Criterion}), kLossResults, [](const OpArgs& a) {
         return loss_results(edpo::epsilon_dpo_loss(a.tensor("policyLogits"), a.tensor("referenceLogits"),
                                                    a.tensor("labels"), a.tensor("lossMask"), loss_options(a)));
       }});
  ops.push_back({"epsilonDpoLossFromHidden",
                 "The ε-DPO loss from hidden states and lm_head weights, chunk by chunk.",
                 {{"policyHidden", K::Tensor,
                   "[2B,T,H] final hidden states of the policy (after the final norm), chosen rows first."},
                  {"policyHead", K::Tensor, "[V,H] the policy's lm_head weight (Hugging Face layout)."},
                  {"policyBias", K::OptionalTensor, "[V] the policy's lm_head bias, if it has one."},
                  {"referenceHidden", K::Tensor, "[2B,T,H'] the reference's hidden states; never receive gradients."},
                  {"referenceHead", K::Tensor, "[V,H'] the reference's lm_head weight."},
                  {"referenceBias", K::OptionalTensor, "[V] the reference's lm_head bias, if it has one."},
                  kLogitsArgs[2],
                  kLogitsArgs[3],
                  kBeta,
                  kEpsilon,
                  kLabelSmoothing,
                  kBf16Criterion,
                  kSoftcap,
                  kChunkTokens,
                  kActiveRows},
                 kLossResults,
                 [](const OpArgs& a) {
                   edpo::ChunkedOptions o;
                   o.loss = loss_options(a);
                   o.final_logit_softcap = a.number("finalLogitSoftcap");
                   o.chunk_tokens = a.integer("chunkTokens");
                   o.active_rows = a.tensor("activeRows");
                   return loss_results(edpo::epsilon_dpo_loss_from_hidden(head(a, "policy"), head(a, "reference"),
                                                                          a.tensor("labels"), a.tensor("lossMask"), o));
                 }});
  ops.push_back({"sequenceLogps",
                 "Per-sequence masked log-prob sums (spec §3) under the policy, reference and both perturbations.",
                 concat(kLogitsArgs, {kEpsilon}),
                 {{"policy", false, "Σ_t mask·log π(y_t) per row [2B] float64, differentiable w.r.t. policyLogits."},
                  {"reference", false, "The same under the reference."},
                  {"plus", false, "The sum under the perturbed logits (1+ε)·a − ε·b."},
                  {"minus", false, "The sum under the perturbed logits (1−ε)·a + ε·b."},
                  {"logitSum", false, "Σ_t mask·Σ_j a_j per row."},
                  {"tokenCount", false, "Σ_t mask per row."},
                  kInputErrorResult},
                 [](const OpArgs& a) -> OpResults {
                   const edpo::SequenceLogps s =
                       edpo::sequence_logps(a.tensor("policyLogits"), a.tensor("referenceLogits"), a.tensor("labels"),
                                            a.tensor("lossMask"), a.number("epsilon"));
                   return {s.policy, s.reference, s.plus, s.minus, s.logit_sum, s.token_count, s.input_error};
                 }});
  ops.push_back({"sequenceStatsFromHidden",
                 "Per-sequence log-probs from hidden states and the lm_head, chunk by chunk (no [R,T,V] logits).",
                 {{"policyHidden", K::Tensor,
                   "[R,T,H] final hidden states (any number of rows R: SFT examples, samples, or 2B stacked pairs)."},
                  {"policyHead", K::Tensor, "[V,H] lm_head weight; receives gradients through `logps`."},
                  {"policyBias", K::OptionalTensor, "[V] lm_head bias, if any."},
                  {"referenceHidden", K::OptionalTensor,
                   "A reference model's hidden states (never differentiated): adds referenceLogps and kl."},
                  {"referenceHead", K::OptionalTensor, "The reference's lm_head weight; give it with referenceHidden."},
                  {"referenceBias", K::OptionalTensor, "The reference's lm_head bias, if any."},
                  {"labels", K::Tensor, "[R,T] int64 next-token labels; ignored where lossMask is 0."},
                  {"lossMask", K::Tensor, "[R,T] per-token weight (any real dtype)."},
                  kSoftcap,
                  kChunkTokens,
                  kActiveRows},
                 {{"logps", false,
                   "Σ_t mask·log π(y_t) [R] float64, differentiable w.r.t. the policy's inputs (−SFT loss × tokens)."},
                  {"correct", false, "Σ_t mask·[argmax π = y_t]: token accuracy numerator."},
                  {"tokenCount", false, "Σ_t mask per row."},
                  {"referenceLogps", true, "With a reference: Σ_t mask·log π_ref(y_t)."},
                  {"kl", true, "With a reference: Σ_t mask·KL(π(·|t) ‖ π_ref(·|t)), exact over the vocabulary."},
                  kInputErrorResult},
                 [](const OpArgs& a) -> OpResults {
                   const edpo::LinearHead reference = head(a, "reference");
                   EDPO_ARG_CHECK(reference.hidden.defined() == reference.weight.defined(),
                                  "referenceHidden/referenceHead: give both or neither");
                   edpo::SequenceStatsOptions o;
                   o.final_logit_softcap = a.number("finalLogitSoftcap");
                   o.chunk_tokens = a.integer("chunkTokens");
                   o.active_rows = a.tensor("activeRows");
                   const edpo::SequenceStats s = edpo::sequence_stats_from_hidden(
                       head(a, "policy"), reference, a.tensor("labels"), a.tensor("lossMask"), o);
                   return {s.logps, s.correct, s.token_count, s.ref_logps, s.kl, s.input_error};
                 }});
}

}  // namespace edpo_js
