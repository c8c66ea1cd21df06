// dist* entry points: a c10d process group handle (an External owning a shared_ptr) and its
// collectives, each a Promise settled off the JS thread (a collective waits on the other ranks).
// Gradient variants take the parameters and work on their .grad, giving a parameter without one
// a zero gradient first, so every rank sends the same buckets.
#include <c10/core/GradMode.h>

#include <memory>
#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#endif

#include "dist/process_group.h"
#include "js_common.h"
#include "ops/adamw.h"
#include "ops/arg_error.h"

namespace edpo_js {
namespace {

using GroupPtr = std::shared_ptr<edpo::dist::Group>;

GroupPtr arg_group(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "group: expected a process group handle");
  return *v.As<Napi::External<GroupPtr>>().Data();
}

std::string opt_string(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  return v.IsUndefined() ? std::string() : arg_string(v, key);
}

// The parameters' gradients (created as zeros where absent), or the tensors themselves.
std::vector<at::Tensor> targets(const Napi::Value& v, bool grads) {
  auto tensors = arg_tensor_list(v, "tensors", false);
  if (!grads) return tensors;
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (auto& p : tensors) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    out.push_back(p.grad());
  }
  return out;
}

Napi::Promise Done(Napi::Env env, std::function<void()> work) {
  return PromiseWorker::Run(env, std::move(work), [](Napi::Env e) { return e.Undefined(); });
}

// distCreateGroup({backend, rank, worldSize, storePath?, host?, port?, tcpClientOnly?, glooInterface?, glooHostname?, timeoutMs})
Napi::Value CreateGroup(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "distCreateGroup: expected an options object");
    const auto o = info[0].As<Napi::Object>();
    edpo::dist::GroupOptions g;
    g.backend = arg_string(o.Get("backend"), "backend");
    g.rank = int(arg_int(o.Get("rank"), "rank"));
    g.world_size = int(arg_int(o.Get("worldSize"), "worldSize"));
    g.store_path = opt_string(o, "storePath");
    g.host = opt_string(o, "host");
    g.port = o.Get("port").IsUndefined() ? 0 : int(arg_int(o.Get("port"), "port"));
    g.tcp_client_only = o.Get("tcpClientOnly").ToBoolean();
    g.gloo_interface = opt_string(o, "glooInterface");
    g.gloo_hostname = opt_string(o, "glooHostname");
    g.timeout = std::chrono::milliseconds(arg_int(o.Get("timeoutMs"), "timeoutMs"));
    auto out = std::make_shared<GroupPtr>();
    return PromiseWorker::Run(
        info.Env(), [g, out] { *out = edpo::dist::create_group(g); },
        [out](Napi::Env env) -> Napi::Value {
          return Napi::External<GroupPtr>::New(env, new GroupPtr(*out), [](Napi::Env, GroupPtr* p) { delete p; });
        });
  });
}

// distAllreduce(group, tensors, {max, average, grads, bucketBytes})
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    const auto o = info[2].As<Napi::Object>();
    const bool grads = o.Get("grads").ToBoolean();
    auto tensors = targets(info[1], grads);
    const bool max = o.Get("max").ToBoolean(), average = o.Get("average").ToBoolean();
    const int64_t bucket = arg_int(o.Get("bucketBytes"), "bucketBytes");
    return Done(info.Env(), [=] { group->allreduce(tensors, max, average, bucket); });
  });
}

// distReduce(group, tensors, {root, average, grads, bucketBytes})
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    const auto o = info[2].As<Napi::Object>();
    auto tensors = targets(info[1], o.Get("grads").ToBoolean());
    const int root = int(arg_int(o.Get("root"), "root"));
    const bool average = o.Get("average").ToBoolean();
    const int64_t bucket = arg_int(o.Get("bucketBytes"), "bucketBytes");
    return Done(info.Env(), [=] { group->reduce(tensors, root, average, bucket); });
  });
}

// distBroadcast(group, tensors, {root, bucketBytes})
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    const auto o = info[2].As<Napi::Object>();
    auto tensors = targets(info[1], false);
    const int root = int(arg_int(o.Get("root"), "root"));
    const int64_t bucket = arg_int(o.Get("bucketBytes"), "bucketBytes");
    return Done(info.Env(), [=] {
      c10::NoGradGuard no_grad;  // parameters are leaves that require grad; the copy is not part of any graph
      group->broadcast(tensors, root, bucket);
    });
  });
}

// distAllgather(group, tensor) → [world, ...shape]
Napi::Value Allgather(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    const at::Tensor t = TensorWrap::FromValue(info[1], "tensor");
    auto out = std::make_shared<at::Tensor>();
    return PromiseWorker::Run(
        info.Env(), [group, t, out] { *out = group->allgather(t); },
        [out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out); });
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    return Done(info.Env(), [group] { group->barrier(); });
  });
}

// distClipGradNorm(group, params, maxNorm) → the global norm over every rank's `params` (each
// rank passing the ones whose gradients it owns, ZeRO-2), clipping them to maxNorm (0: never).
// Same formula as clipGradNorm: coef = maxNorm / (norm + 1e-6), applied only when < 1 and finite.
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto group = arg_group(info[0]);
    auto params = arg_tensor_list(info[1], "params", false);
    const double max_norm = arg_number(info[2], "maxNorm");
    EDPO_ARG_CHECK(std::isfinite(max_norm) && max_norm >= 0, "maxGradNorm: must be a finite number >= 0, got ", max_norm);
    auto norm = std::make_shared<double>(0);
    return PromiseWorker::Run(
        info.Env(),
        [group, params, max_norm, norm] {
          c10::NoGradGuard no_grad;
          std::vector<at::Tensor> grads;
          for (const auto& p : params)
            if (p.grad().defined()) grads.push_back(p.grad());
          // This rank's Σ g² (as clipGradNorm computes it: fp64, no fp64 copy of a gradient), on its
          // gradients' device; a rank that owns none adds a zero on its parameters' device.
          const at::Tensor sq = grads.empty()
              ? at::zeros({1}, at::TensorOptions().dtype(at::kDouble).device(params.empty() ? at::kCPU : params[0].device()))
              : edpo::grad_square_sum(grads);
          group->allreduce({sq}, false, false, int64_t(1) << 20);
          *norm = edpo::clip_by_square_sum(grads, sq, max_norm);
        },
        [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); });
  });
}

Napi::Value NcclAvailable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), edpo::dist::nccl_available()); }

// distExitWithParent(parentPid) → whether the parent is still parentPid. On Linux the kernel
// then sends this process SIGKILL when its parent dies (PR_SET_PDEATHSIG), even by SIGKILL:
// a launcher's workers never outlive it. The check after prctl closes the race with a parent
// that died before (this process was then re-parented).
Napi::Value ExitWithParent(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int64_t parent = arg_int(info[0], "parentPid");
#if defined(__linux__)
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) throw std::runtime_error("prctl(PR_SET_PDEATHSIG) failed");
    return Napi::Boolean::New(info.Env(), int64_t(getppid()) == parent);
#else
    (void)parent;
    throw std::runtime_error("distExitWithParent: Linux only (other platforms watch the launcher's pipe)");
#endif
  });
}

}  // namespace

void InitDist(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports,
                   {
                       {"distCreateGroup", CreateGroup},
                       {"distAllreduce", Allreduce},
                       {"distReduce", Reduce},
                       {"distBroadcast", Broadcast},
                       {"distAllgather", Allgather},
                       {"distBarrier", Barrier},
                       {"distClipGradNorm", ClipGradNorm},
                       {"distNcclAvailable", NcclAvailable},
                       {"distExitWithParent", ExitWithParent},
                   });
}

}  // namespace edpo_js
