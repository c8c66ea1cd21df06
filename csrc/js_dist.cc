// The dist* entries: a c10d process group handle and its collectives, declared in the op table
// like every other entry (Mode::Async: each a Promise settled off the JS thread, since a
// collective waits on the other ranks). Gradient variants take the parameters and work on their
// .grad, giving a parameter without one a zero gradient first, so every rank sends the same buckets.
#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#endif

#include "dist/grad_reducer.h"
#include "dist/layer_shards.h"
#include "dist/process_group.h"
#include "js_op_table.h"
#include "ops/adamw.h"
#include "ops/arg_error.h"

namespace edpo_js {
namespace {

// The parameters' gradients (created as zeros where absent), or the tensors themselves.
std::vector<at::Tensor> targets(std::vector<at::Tensor> tensors, bool grads) {
  if (!grads) return tensors;
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (auto& p : tensors) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    out.push_back(p.grad());
  }
  return out;
}

const ArgDecl kGroup{"group", ArgKind::Group, "The process group (distCreateGroup)."};
const ArgDecl kTensors{"tensors", ArgKind::TensorList,
                       "The tensors, or with grads the parameters whose .grad is meant."};
const ArgDecl kBucket{"bucketBytes", ArgKind::Integer, "Bytes per flattened bucket (one collective each).", 0, 1};
const ArgDecl kRoot{"root", ArgKind::Integer, "The rank that sends (broadcast) or receives (reduce).", 0, 0};
const ArgDecl kGrads{"grads", ArgKind::Boolean, "Work on the tensors' gradients, not the tensors."};
const ArgDecl kAverage{"average", ArgKind::Boolean, "Divide the sum by the world size."};

// What GradReducer's and ZeRO-3's finish report (csrc/dist/reducer_stats.h): one result type.
const std::vector<ResultDecl> kReducerStats{
    {"buckets", false, "The step's collectives: buckets, or (ZeRO-3) unit reduce-scatters.", ResultKind::Number},
    {"startedInBackward", false, "Those the backward's hooks started.", ResultKind::Number},
    {"startedBeforeLastHook", false, "Those started when the backward's last gradient arrived.", ResultKind::Number},
    {"peakGradientBytes", false, "This rank's gradient and bucket bytes at their peak over the backward and the wait.",
     ResultKind::Number},
    {"peakInFlightBytes", false, "Bytes of the collectives started and not yet waited for, at their peak.",
     ResultKind::Number}};

OpResults stats_results(const edpo::dist::ReducerStats& s) {
  return {double(s.buckets), double(s.started_in_backward), double(s.started_before_last_hook),
          double(s.peak_gradient_bytes), double(s.peak_in_flight_bytes)};
}

ArgDecl options(std::vector<ArgDecl> fields, const char* type_name) {
  return {"o", ArgKind::Object, "The collective's settings.", 0, NAN, std::move(fields), type_name};
}

// The global norm over every rank's `params` (each rank passing the ones whose gradients it owns,
// ZeRO-2), clipped to maxNorm (0: never), with clipGradNorm's formula: coef = maxNorm / (norm +
// 1e-6), applied only when < 1 and finite.
double clip_grad_norm_across(edpo::dist::Group& group, const std::vector<at::Tensor>& params, double max_norm) {
  EDPO_ARG_CHECK(std::isfinite(max_norm) && max_norm >= 0, "maxGradNorm: must be a finite number >= 0, got ", max_norm);
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  // This rank's Σ g² (as clipGradNorm computes it: fp64, no fp64 copy of a gradient), on its
  // gradients' device; a rank that owns none adds a zero on its parameters' device.
  const at::Tensor sq =
      grads.empty()
          ? at::zeros({1},
                      at::TensorOptions().dtype(at::kDouble).device(params.empty() ? at::kCPU : params[0].device()))
          : edpo::grad_square_sum(grads);
  group.allreduce({sq}, false, false, int64_t(1) << 20);
  return edpo::clip_by_square_sum(grads, sq, max_norm);
}

// Whether the parent is still parentPid. On Linux the kernel then sends this process SIGKILL when
// its parent dies (PR_SET_PDEATHSIG), even by SIGKILL: a launcher's workers never outlive it. The
// check after prctl closes the race with a parent that died before (this process was re-parented).
bool exit_with_parent(int64_t parent) {
#if defined(__linux__)
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) throw std::runtime_error("prctl(PR_SET_PDEATHSIG) failed");
  return int64_t(getppid()) == parent;
#else
  (void)parent;
  throw std::runtime_error("distExitWithParent: Linux only (other platforms watch the launcher's pipe)");
#endif
}

}  // namespace

void declare_dist_ops(std::vector<OpDecl>& ops) {
  using K = ArgKind;
  const auto async = [&ops](std::string name, std::string doc, std::vector<ArgDecl> args,
                            std::vector<ResultDecl> results, std::function<OpResults(const OpArgs&)> run) {
    ops.push_back({std::move(name), std::move(doc), std::move(args), std::move(results), std::move(run),
                   Call::Positional, Mode::Async, Returns::Value});
  };
  async("distCreateGroup",
        "A c10d process group: a FileStore at storePath, else a TCPStore at host:port; Gloo or NCCL.",
        {{"options",
          K::Object,
          "The group's settings.",
          0,
          NAN,
          {{"backend", K::String, "'gloo' or 'nccl'."},
           {"rank", K::Integer, "This process's rank.", 0, 0},
           {"worldSize", K::Integer, "The number of ranks.", 0, 1},
           {"storePath", K::OptionalString, "A FileStore's file (one machine); else the TCPStore below."},
           {"host", K::OptionalString, "The TCPStore's address (rank 0 serves it)."},
           {"port", K::OptionalInteger, "The TCPStore's port.", 0, 0},
           {"tcpClientOnly", K::OptionalBoolean,
            "torchrun >= 2's agent serves the store itself (TORCHELASTIC_USE_AGENT_STORE)."},
           {"glooInterface", K::OptionalString, "GLOO_SOCKET_IFNAME: the network interface Gloo binds."},
           {"glooHostname", K::OptionalString, "The address Gloo binds, where no interface is named."},
           {"timeoutMs", K::Integer, "How long any collective or store wait may take.", 0, 1}},
          "NativeGroupOptions"}},
        {{"group", false, "The group handle.", ResultKind::Group}}, [](const OpArgs& a) -> OpResults {
          const OpArgs& o = a.object("options");
          edpo::dist::GroupOptions g;
          g.backend = o.string("backend");
          g.rank = int(o.integer("rank"));
          g.world_size = int(o.integer("worldSize"));
          g.store_path = o.string("storePath");
          g.host = o.string("host");
          g.port = int(o.integer("port"));
          g.tcp_client_only = o.flag("tcpClientOnly");
          g.gloo_interface = o.string("glooInterface");
          g.gloo_hostname = o.string("glooHostname");
          g.timeout = std::chrono::milliseconds(o.integer("timeoutMs"));
          return {edpo::dist::create_group(g)};
        });
  async("distAllreduce",
        "Sums (or averages, or takes the max of) the tensors over every rank, in place, bucket by bucket.",
        {kGroup, kTensors,
         options({{"max", K::Boolean, "The elementwise max instead of the sum."}, kAverage, kGrads, kBucket},
                 "NativeAllreduceOptions")},
        {}, [](const OpArgs& a) -> OpResults {
          const OpArgs& o = a.object("o");
          a.group("group")->allreduce(targets(a.list("tensors"), o.flag("grads")), o.flag("max"), o.flag("average"),
                                      o.integer("bucketBytes"));
          return {};
        });
  async(
      "distReduce",
      "Sums (or averages) the tensors onto rank root, bucket by bucket; the other ranks' tensors are left unspecified.",
      {kGroup, kTensors, options({kRoot, kAverage, kGrads, kBucket}, "NativeReduceOptions")}, {},
      [](const OpArgs& a) -> OpResults {
        const OpArgs& o = a.object("o");
        a.group("group")->reduce(targets(a.list("tensors"), o.flag("grads")), int(o.integer("root")), o.flag("average"),
                                 o.integer("bucketBytes"));
        return {};
      });
  async("distBroadcast", "Copies rank root's tensors into every rank's, in place, bucket by bucket.",
        {kGroup, kTensors, options({kRoot, kBucket}, "NativeBroadcastOptions")}, {}, [](const OpArgs& a) -> OpResults {
          const OpArgs& o = a.object("o");
          c10::NoGradGuard no_grad;  // parameters are leaves that require grad; the copy is not part of any graph
          a.group("group")->broadcast(a.list("tensors"), int(o.integer("root")), o.integer("bucketBytes"));
          return {};
        });
  async("distAllgather", "Every rank's `tensor`, stacked: [world, ...shape].",
        {kGroup, {"tensor", K::Tensor, "This rank's tensor."}},
        {{"gathered", false, "[world, ...shape].", ResultKind::Tensor}},
        [](const OpArgs& a) -> OpResults { return {a.group("group")->allgather(a.tensor("tensor"))}; });
  async("distBarrier", "Waits until every rank has reached it.", {kGroup}, {}, [](const OpArgs& a) -> OpResults {
    a.group("group")->barrier();
    return {};
  });
  async("distClipGradNorm",
        "The global gradient norm over every rank's params (each rank passing those whose gradients it owns), clipping "
        "them to maxNorm.",
        {kGroup,
         {"params", K::TensorList, "This rank's parameters (their .grad is used)."},
         {"maxNorm", K::Number, "The largest norm let through (0: never clip)."}},
        {{"norm", false, "The global norm before clipping.", ResultKind::Number}}, [](const OpArgs& a) -> OpResults {
          return {clip_grad_norm_across(*a.group("group"), a.list("params"), a.number("maxNorm"))};
        });
  ops.push_back(
      {"distReducerCreate",
       "Hooks on every parameter's gradient accumulation (csrc/dist/grad_reducer.h) that reduce its gradients bucket "
       "by "
       "bucket during an armed backward.",
       {kGroup,
        {"params", K::TensorList, "The parameters, in registration order."},
        options(
            {kBucket,
             {"owners", K::IntegerList, "ZeRO-2: each parameter's owner rank (reduce onto it); empty: all-reduce."}},
            "NativeReducerOptions")},
       {{"reducer", false, "The reducer handle.", ResultKind::Reducer}},
       [](const OpArgs& a) -> OpResults {
         const OpArgs& o = a.object("o");
         const auto& params = a.list("params");
         std::vector<int> owners;
         for (const int64_t r : o.integer_list("owners")) owners.push_back(int(r));
         EDPO_ARG_CHECK(owners.empty() || owners.size() == params.size(), "o.owners: expected one rank per parameter (",
                        params.size(), "), got ", owners.size());
         return {std::make_shared<edpo::dist::GradReducer>(a.group("group"), params, o.integer("bucketBytes"),
                                                           std::move(owners))};
       },
       Call::Positional,
       Mode::Sync,
       Returns::Value});
  const ArgDecl reducer{"reducer", K::Reducer, "The reducer (distReducerCreate)."};
  ops.push_back({"distReducerRelease",
                 "Unhooks the parameters and drops the reducer's tensors now; a later arm or finish is an error.",
                 {reducer},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   a.reducer("reducer")->release();
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back({"distReducerArm",
                 "The next backward reduces the gradients as autograd produces them (the last micro-batch's).",
                 {reducer},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   a.reducer("reducer")->arm();
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back(
      {"distReducerFinish",
       "After the armed backward: starts the buckets it did not, waits for every one, and leaves this rank's gradients "
       "averaged.",
       {reducer},
       kReducerStats,
       [](const OpArgs& a) -> OpResults { return stats_results(a.reducer("reducer")->finish()); },
       Call::Positional,
       Mode::Async,
       Returns::Fields,
       "ReducerStats"});
  const ArgDecl model{"model", K::Model, "The model's handle (createModel)."};
  ops.push_back({"distShardModel",
                 "ZeRO-3: the model's parameters become this rank's shards of its gather units (csrc/dist/"
                 "layer_shards.h); every forward then gathers one unit at a time over the group.",
                 {kGroup, model,
                  options({{"bucketBytes", K::Integer,
                            "The bytes of gradient reduce-scatters in flight at most (one always may be).", 0, 1}},
                          "NativeShardOptions")},
                 {},
                 [](const OpArgs& a) -> OpResults {
                   const ModelPtr& m = a.model("model");
                   m->shard(edpo::dist::make_layer_shards(a.group("group"), *m, a.object("o").integer("bucketBytes")));
                   return {};
                 },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  async("distGatherUnit",
        "ZeRO-3: one gather unit of a sharded model, whole, under its Hugging Face names (a collective: every rank "
        "calls it).",
        {model, {"unit", K::Integer, "0 the embedding, 1 + l layer l, then the final norm and the untied head.", 0, 0}},
        {{"names", false, "The tensors' names (Hugging Face module paths).", ResultKind::StringList},
         {"tensors", false, "The gathered tensors, in the names' order.", ResultKind::TensorList}},
        [](const OpArgs& a) -> OpResults {
          const ModelPtr& m = a.model("model");
          EDPO_ARG_CHECK(m->shards() != nullptr, "model: not sharded (distShardModel)");
          c10::NoGradGuard no_grad;
          std::vector<std::string> names;
          std::vector<at::Tensor> tensors;
          // Borrowed: the returned tensors own the gathered buffer, freed with them.
          for (auto& [n, t] : m->shards()->borrow(a.integer("unit"), false)) {
            names.push_back(n);
            tensors.push_back(t);
          }
          return {names, tensors};
        });
  ops.back().returns = Returns::Fields;
  ops.back().outputs_name = "NativeGatheredUnit";
  ops.push_back(
      {"distUnitLayout",
       "ZeRO-3: each gather unit's tensors in the order its flat buffer holds them (the padding after them), "
       "of a sharded model or as distShardModel would shard a whole one.",
       {model},
       {{"units", false, "The units' names (\"zero3.<unit>\"), in order.", ResultKind::StringList},
        {"names", false, "The tensors' Hugging Face names, unit after unit.", ResultKind::StringList},
        {"counts", false, "How many of the names each unit has.", ResultKind::Float64Array},
        {"shapes", false, "Each tensor's rank, then its sizes, in the names' order.", ResultKind::Float64Array}},
       [](const OpArgs& a) -> OpResults {
         std::vector<std::string> units, names;
         std::vector<double> counts, shapes;
         for (const auto& u : edpo::dist::unit_params(*a.model("model"))) {
           units.push_back(u.name);
           counts.push_back(double(u.names.size()));
           for (size_t i = 0; i < u.names.size(); ++i) {
             names.push_back(u.names[i]);
             shapes.push_back(double(u.shapes[i].size()));
             for (int64_t d : u.shapes[i]) shapes.push_back(double(d));
           }
         }
         return {units, names, counts, shapes};
       },
       Call::Positional,
       Mode::Sync,
       Returns::Fields,
       "NativeUnitLayout"});
  async("distShardsFinish",
        "ZeRO-3: after a step's backward passes, waits for the gradients' reduce-scatters and leaves each shard its "
        "gradient, averaged over ranks.",
        {model}, kReducerStats, [](const OpArgs& a) -> OpResults {
          const ModelPtr& m = a.model("model");
          EDPO_ARG_CHECK(m->shards() != nullptr, "model: not sharded (distShardModel)");
          return stats_results(m->shards()->finish());
        });
  ops.back().returns = Returns::Fields;
  ops.back().outputs_name = "ReducerStats";
  ops.push_back({"distNcclAvailable",
                 "Whether this build has NCCL.",
                 {},
                 {{"available", false, "Whether NCCL is there.", ResultKind::Boolean}},
                 [](const OpArgs&) -> OpResults { return {edpo::dist::nccl_available()}; },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
  ops.push_back({"distExitWithParent",
                 "Linux: SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); false when the parent is no "
                 "longer parentPid.",
                 {{"parentPid", K::Integer, "The launcher's pid.", 0, 1}},
                 {{"sameParent", false, "Whether the parent is still parentPid.", ResultKind::Boolean}},
                 [](const OpArgs& a) -> OpResults { return {exit_with_parent(a.integer("parentPid"))}; },
                 Call::Positional,
                 Mode::Sync,
                 Returns::Value});
}

}  // namespace edpo_js
