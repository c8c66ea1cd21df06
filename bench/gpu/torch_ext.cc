// PyTorch binding of the ε-DPO op for bench/gpu/check.py: the same C++ sources as the npm addon
// (csrc/ops/*, csrc/ops/cuda/epsilon_dpo_kernels.cu), built by torch.utils.cpp_extension.load instead of
// node-gyp/cmake-js, so the op can be checked and timed against PyTorch on a GPU machine without Node.
//
// The ops build their autograd graph with torch::autograd::Function, so a returned loss keeps its
// grad_fn across pybind11 and `loss.backward()` in Python runs the op's C++ backward.
// Built with -DEDPO_WITH_CUDA (GPU) or without it (CPU-only check); `with_cuda` says which.
#include <torch/extension.h>

#include <optional>
#include <string>

#include "../../csrc/ops/chunked_linear.h"
#include "../../csrc/ops/epsilon_dpo.h"
#include "../../csrc/ops/backend.h"
#include "../../csrc/ops/cpu/cpu_isa.h"

namespace {

namespace py = pybind11;

// The op's per-pair record, unpacked into the dict check.py compares (steps int64, the rest in the
// loss dtype, the mean logits token-weighted over the batch).
py::dict output_dict(const edpo::EpsilonDpoOutput& o) {
  const auto dtype = o.loss.scalar_type();
  auto column = [&](int c) { return o.record.select(1, c); };
  auto as_loss = [&](int c) { return column(c).to(dtype); };
  auto mean_logits = [&](int sums, int tokens) {
    const at::Tensor n = column(tokens).sum();
    return (column(sums).sum() / n.clamp_min(1.0)).to(dtype);
  };
  py::dict d;
  d["loss"] = o.loss;
  d["record"] = o.record;
  d["steps"] = column(edpo::kStep).to(at::kLong);
  d["betas"] = as_loss(edpo::kBeta);
  d["chosen_logps"] = as_loss(edpo::kChosenLogps);
  d["rejected_logps"] = as_loss(edpo::kRejectedLogps);
  d["ref_chosen_logps"] = as_loss(edpo::kRefChosenLogps);
  d["ref_rejected_logps"] = as_loss(edpo::kRefRejectedLogps);
  d["chosen_rewards"] = as_loss(edpo::kChosenRewards);
  d["rejected_rewards"] = as_loss(edpo::kRejectedRewards);
  d["mean_chosen_logits"] = mean_logits(edpo::kChosenLogitSum, edpo::kChosenTokens);
  d["mean_rejected_logits"] = mean_logits(edpo::kRejectedLogitSum, edpo::kRejectedTokens);
  d["input_error"] = column(edpo::kInputError).max();
  return d;
}

py::dict sequences_dict(const edpo::SequenceLogps& s) {
  py::dict d;
  d["policy"] = s.policy;
  d["reference"] = s.reference;
  d["plus"] = s.plus;
  d["minus"] = s.minus;
  d["logit_sum"] = s.logit_sum;
  d["token_count"] = s.token_count;
  d["vocab"] = s.vocab;
  d["input_error"] = s.input_error;
  return d;
}

edpo::EpsilonDpoOptions loss_options(double beta, double epsilon, double label_smoothing) {
  edpo::EpsilonDpoOptions o;
  o.beta = beta;
  o.epsilon = epsilon;
  o.label_smoothing = label_smoothing;
  return o;
}

edpo::LinearHead head(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  edpo::LinearHead h;
  h.hidden = hidden;
  h.weight = weight;
  if (bias.has_value() && bias->defined()) h.bias = *bias;
  return h;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "edpo ε-DPO op (csrc/ops) for bench/gpu/check.py";
#ifdef EDPO_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif

  m.def(
      "epsilon_dpo_loss",
      [](const at::Tensor& policy_logits, const at::Tensor& reference_logits, const at::Tensor& labels,
         const at::Tensor& loss_mask, double beta, double epsilon, double label_smoothing) {
        return output_dict(edpo::epsilon_dpo_loss(policy_logits, reference_logits, labels, loss_mask,
                                                  loss_options(beta, epsilon, label_smoothing)));
      },
      "ε-DPO loss from [2B,T,V] logits: dict of loss, steps, betas, logps, rewards, mean logits",
      py::arg("policy_logits"), py::arg("reference_logits"), py::arg("labels"), py::arg("loss_mask"),
      py::arg("beta") = 0.1, py::arg("epsilon") = 0.01, py::arg("label_smoothing") = 0.0);

  m.def(
      "epsilon_dpo_loss_from_hidden",
      [](const at::Tensor& policy_hidden, const at::Tensor& policy_weight, const std::optional<at::Tensor>& policy_bias,
         const at::Tensor& reference_hidden, const at::Tensor& reference_weight,
         const std::optional<at::Tensor>& reference_bias, const at::Tensor& labels, const at::Tensor& loss_mask,
         double beta, double epsilon, double label_smoothing, double final_logit_softcap, int64_t chunk_tokens) {
        edpo::ChunkedOptions o;
        o.loss = loss_options(beta, epsilon, label_smoothing);
        o.final_logit_softcap = final_logit_softcap;
        o.chunk_tokens = chunk_tokens;
        // The op runs autograd inside its forward (dL/dS for the pairs a chunk ends), which the
        // engine refuses under the GIL: release it for the op, take it back for the dict.
        const auto out = [&] {
          py::gil_scoped_release no_gil;
          return edpo::epsilon_dpo_loss_from_hidden(head(policy_hidden, policy_weight, policy_bias),
                                                    head(reference_hidden, reference_weight, reference_bias), labels,
                                                    loss_mask, o);
        }();
        return output_dict(out);
      },
      "Chunked ε-DPO loss from hidden states [2B,T,H] and lm_head weights [V,H] (same dict as epsilon_dpo_loss)",
      py::arg("policy_hidden"), py::arg("policy_weight"), py::arg("policy_bias") = py::none(),
      py::arg("reference_hidden"), py::arg("reference_weight"), py::arg("reference_bias") = py::none(),
      py::arg("labels"), py::arg("loss_mask"), py::arg("beta") = 0.1, py::arg("epsilon") = 0.01,
      py::arg("label_smoothing") = 0.0, py::arg("final_logit_softcap") = 0.0, py::arg("chunk_tokens") = 0);

  m.def(
      "sequence_logps",
      [](const at::Tensor& policy_logits, const at::Tensor& reference_logits, const at::Tensor& labels,
         const at::Tensor& loss_mask, double epsilon) {
        return sequences_dict(edpo::sequence_logps(policy_logits, reference_logits, labels, loss_mask, epsilon));
      },
      "Per-sequence masked sums S, S_ref, S+, S- (float64, [2B]); S is differentiable", py::arg("policy_logits"),
      py::arg("reference_logits"), py::arg("labels"), py::arg("loss_mask"), py::arg("epsilon") = 0.01);

  // The fused row pass alone (no argument checks, no autograd): for kernel-only timing.
  m.def("forward_rows", &edpo::forward_rows,
        "[N,V] policy/reference, [N] int64 labels, [N] weights (fp32) -> [6,N] row stats", py::arg("policy"),
        py::arg("reference"), py::arg("labels"), py::arg("weight"), py::arg("epsilon"));
  m.def("backward_rows", &edpo::backward_rows, "[N,V] policy, [N] labels, [N] lse, [N] row_grad -> [N,V] grad",
        py::arg("policy"), py::arg("labels"), py::arg("lse"), py::arg("row_grad"));
  m.def("cpu_kernel_isa", []() { return std::string(edpo::cpu::isa_name(edpo::cpu::isa())); });
}
