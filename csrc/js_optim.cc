// The optimizer's entries: the AdamW step and gradient clipping over a list of parameters.
#include "js_op_table.h"

#include "ops/adamw.h"

namespace edpo_js {

void declare_optim_ops(std::vector<OpDecl>& ops) {
  using K = ArgKind;
  ops.push_back({"adamwStep",
                 "One AdamW step (as torch.optim.AdamW) at step t over every parameter with a gradient, in place.",
                 {{"params", K::TensorList, "The parameters; those without a gradient are skipped."},
                  {"master", K::NullableTensorList,
                   "Per parameter: its fp32 master copy (bf16/fp16 parameters; updated, then rounded into the "
                   "parameter) or null."},
                  {"expAvg", K::TensorList, "First moments, in the master's (or parameter's) dtype."},
                  {"expAvgSq", K::TensorList, "Second moments, likewise."},
                  {"step", K::Integer, "The 1-based step count t (bias correction)."},
                  {"lr", K::Number, "Learning rate, >= 0."},
                  {"beta1", K::Number, "First-moment decay in [0, 1)."},
                  {"beta2", K::Number, "Second-moment decay in [0, 1)."},
                  {"eps", K::Number, "Denominator term, > 0."},
                  {"weightDecay", K::Number, "Decoupled weight decay, >= 0."}},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   edpo::AdamWOptions o;
                   o.lr = a.number("lr");
                   o.beta1 = a.number("beta1");
                   o.beta2 = a.number("beta2");
                   o.eps = a.number("eps");
                   o.weight_decay = a.number("weightDecay");
                   edpo::adamw_step(a.list("params"), a.list("master"), a.list("expAvg"), a.list("expAvgSq"),
                                    int64_t(a.number("step")), o);
                   return {};
                 }});
  ops.push_back(
      {"clipGradNorm",
       "Scales the parameters' gradients so that their global L2 norm is at most maxNorm; returns the norm before.",
       {{"params", K::TensorList, "The parameters; those without a gradient are skipped."},
        {"maxNorm", K::Number, "The largest norm let through (0: never clip)."}},
       {{"norm", false, "The global gradient norm before clipping.", ResultKind::Number}},
       [](const OpArgs& a) -> OpResults { return {edpo::clip_grad_norm(a.list("params"), a.number("maxNorm"))}; },
       Call::Positional,
       Mode::Sync,
       Returns::Value});
}

}  // namespace edpo_js
