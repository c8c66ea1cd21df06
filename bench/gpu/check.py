#!/usr/bin/env python3
"""GPU check of the ε-DPO op through PyTorch (issue 6, section 2). Run by bench/gpu/run.sh.

1. Builds csrc/ops + csrc/ops/cuda/epsilon_dpo_kernels.cu with bench/gpu/torch_ext.cc into a PyTorch
   extension (torch.utils.cpp_extension.load, ninja).
2. Correctness: the CUDA op against the same op on CPU tensors and against a float64 eager
   composition of spec §2–§5 (bf16/fp16/fp32, V ∈ {32000, 128256, 256000}); the chunked op
   (epsilon_dpo_loss_from_hidden) against the materialised op on the same device.
3. Timing at N = 8192 tokens: fused op forward and forward+backward, the reference trainer's eager
   composition, torch.compile of it, and a device-to-device copy of the bytes the forward must read.
4. Chunked path at N = 16384, V = 128256, H = 4096 (bf16): peak memory and time against eager and
   the materialised fused path.
5. Writes OUT/results.json (updated after every section) and prints a table.

Without CUDA (or with --cpu-only) it builds the CPU sources only and runs the same code paths at
tiny sizes on the CPU: the op against float64 eager, chunked against materialised, and the timing
harness. Exit status: 0 when every check passed and every section ran, 1 when a correctness check
failed (or a correctness section raised), 2 when only a timing section (timing, chunked bench,
torch.compile) raised, 3 when the build failed. Performance targets are reported (pass/fail) but do
not change the exit status.
"""
import argparse
import datetime
import glob
import importlib
import inspect
import json
import math
import os
import platform
import re
import shutil
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Every op source (a glob, so a new op file cannot be forgotten here); the CUDA ones only with CUDA.
CUDA_SOURCES = ["csrc/ops/cuda/cuda_backend.cc", "csrc/ops/cuda/optimizer_cuda.cc", "csrc/ops/cuda/epsilon_dpo_kernels.cu",
                "csrc/ops/cuda/optimizer_kernels.cu", "csrc/ops/cuda/pair_kernels.cu"]
CPU_SOURCES = ["bench/gpu/torch_ext.cc"] + sorted(
    os.path.relpath(f, ROOT) for pattern in ("csrc/ops/*.cc", "csrc/ops/cpu/*.cc")
    for f in glob.glob(os.path.join(ROOT, pattern)) if os.path.relpath(f, ROOT) not in CUDA_SOURCES)

# Report.error's `where` prefixes of the timing sections: their errors exit 2, not 1.
TIMING_SECTIONS = ("timing", "chunked section", "compile")
BETA = 0.1
EPS = 0.01

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}

# Per-element gradient tolerances (rtol, atol); atol is an absolute floor (fp16 subnormals are 6e-8 apart).
GRAD_TOL = {torch.float32: (1e-5, 1e-12), torch.bfloat16: (1e-2, 1e-9), torch.float16: (2e-3, 1.2e-7),
            torch.float64: (1e-9, 1e-15)}
# ‖Δ‖/‖ref‖ of gradients against the float64 eager reference.
GRAD_NORM_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float64: 1e-9}
# Per-sequence sums: |Δ| <= SUM_RTOL·|ref| + SUM_ATOL.
SUM_RTOL, SUM_ATOL = 1e-5, 1e-5

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, torch.Tensor):
        return jsonable(x.detach().cpu().tolist())
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    return x


class Report:
    def __init__(self, out_dir, cuda):
        self.out_dir = out_dir
        self.cuda = cuda
        self.data = {"meta": {}, "build": {}, "correctness": [], "timing": [], "chunked": {}, "compile": [],
                     "targets": [], "errors": []}

    def check(self, section, name, ok, **info):
        rec = {"section": section, "name": name, "ok": bool(ok)}
        rec.update(info)
        self.data["correctness"].append(rec)
        if not ok:
            log(f"FAIL {section}: {name} {json.dumps(jsonable(info))[:600]}")
        return ok

    def error(self, where, exc):
        tb = traceback.format_exc()
        log(f"ERROR in {where}: {exc!r}\n{tb}")
        self.data["errors"].append({"where": where, "error": repr(exc), "traceback": tb[-4000:]})

    def target(self, name, value, goal, ok, note=""):
        self.data["targets"].append({"name": name, "value": value, "goal": goal, "ok": ok, "note": note})

    def failures(self):
        return [c for c in self.data["correctness"] if not c["ok"]]

    def write(self):
        self.data["meta"]["elapsed_s"] = time.time() - T0
        self.data["summary"] = {
            "checks": len(self.data["correctness"]),
            "failed": len(self.failures()),
            "errors": len(self.data["errors"]),
            "targets_met": sum(1 for t in self.data["targets"] if t["ok"] is True),
            "targets_missed": sum(1 for t in self.data["targets"] if t["ok"] is False),
        }
        path = os.path.join(self.out_dir, "results.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(jsonable(self.data), f, indent=1)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Build

def cxx_standard():
    """c++17 unless this torch's headers or cpp_extension ask for C++20 (EDPO_CXX_STD overrides)."""
    if os.environ.get("EDPO_CXX_STD"):
        return os.environ["EDPO_CXX_STD"]
    from torch.utils import cpp_extension
    try:
        src = inspect.getsource(cpp_extension)
        if re.search(r"""['"]-std=c\+\+20['"]""", src) and not re.search(r"""['"]-std=c\+\+17['"]""", src):
            return "c++20"
    except Exception:
        pass
    for inc in cpp_extension.include_paths():
        for rel in ("c10/macros/Macros.h", "c10/util/C++17.h"):
            path = os.path.join(inc, rel)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text = f.read()
                if re.search(r"__cplusplus\s*<\s*202002L", text) and "C++20" in text:
                    return "c++20"
    return "c++17"


def cuda_arch():
    """TORCH_CUDA_ARCH_LIST entry for this GPU: 9.0a on Hopper, 8.0 on Ampere/Ada, X.Y elsewhere."""
    if os.environ.get("EDPO_CUDA_ARCH"):
        return os.environ["EDPO_CUDA_ARCH"]
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) == (9, 0):
        return "9.0a"
    if major == 8:
        return "8.0"
    return f"{major}.{minor}"


def build_extension(report, use_cuda, build_root, verbose):
    from torch.utils import cpp_extension
    std = cxx_standard()
    cflags = ["-O3", f"-std={std}", "-fopenmp-simd"]
    # cpp_extension defines __CUDA_NO_HALF_OPERATORS__ & co. for every .cu; the kernels use only
    # intrinsics, but undo them so the .cu sees the same headers as under run_kernels.sh.
    cuda_cflags = ["-O3", f"-std={std}", "-lineinfo", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                   "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__"]
    sources = list(CPU_SOURCES)
    arch = None
    if use_cuda:
        cflags.append("-DEDPO_WITH_CUDA")
        sources += CUDA_SOURCES
        arch = cuda_arch()
        # cpp_extension turns this into -gencode=arch=compute_XX,code=sm_XX (only this GPU's arch).
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    name = "edpo_torch_ext_cuda" if use_cuda else "edpo_torch_ext_cpu"
    build_dir = os.path.join(build_root, name)
    os.makedirs(build_dir, exist_ok=True)
    info = {"name": name, "build_dir": build_dir, "cxx_std": std, "cflags": cflags,
            "cuda_cflags": cuda_cflags if use_cuda else None, "torch_cuda_arch_list": arch,
            "max_jobs": os.environ.get("MAX_JOBS"), "sources": sources}
    report.data["build"] = info
    log(f"building {name} ({len(sources)} sources, -std={std}, arch={arch}, MAX_JOBS={os.environ.get('MAX_JOBS')})"
        f" in {build_dir}")
    t = time.time()
    try:
        kwargs = dict(name=name, sources=[os.path.join(ROOT, s) for s in sources], extra_cflags=cflags,
                      extra_include_paths=[ROOT], build_directory=build_dir, verbose=verbose, with_cuda=use_cuda)
        if use_cuda:
            kwargs["extra_cuda_cflags"] = cuda_cflags
        ext = cpp_extension.load(**kwargs)
    finally:
        info["build_s"] = time.time() - t
        ninja = os.path.join(build_dir, "build.ninja")
        if os.path.exists(ninja):
            with open(ninja) as f:
                text = f.read()
            info["ninja_flags"] = [l for l in text.splitlines()
                                   if l.startswith(("cflags", "cuda_cflags", "post_cflags", "cuda_post_cflags"))]
            try:
                shutil.copy(ninja, os.path.join(report.out_dir, "build.ninja"))
            except OSError:
                pass
    info["ok"] = True
    info["with_cuda"] = bool(ext.with_cuda)
    info["cpu_kernel_isa"] = ext.cpu_kernel_isa()
    log(f"built in {info['build_s']:.1f} s; with_cuda={ext.with_cuda}, cpu kernels: {info['cpu_kernel_isa']}")
    return ext


# ---------------------------------------------------------------------------------------------
# Reference: the spec's composition in plain PyTorch. In float64 it is the correctness reference;
# in the logits' dtype it is the reference trainer's eager baseline (log-softmax, sums and step
# decision in that dtype, spec §8).

def eager_composition(policy, reference, labels, mask, beta=BETA, epsilon=EPS, label_smoothing=0.0, metrics=False):
    pairs = policy.shape[0] // 2
    index = labels.clamp_min(0).unsqueeze(-1)
    weight = mask.to(policy.dtype)

    def sums(logits):
        return (torch.gather(logits.log_softmax(-1), 2, index).squeeze(-1) * weight).sum(-1)

    S = sums(policy)  # the only term with a gradient
    a = policy.detach()
    b = reference.detach()
    S_ref = sums(b)
    S_plus = sums((1 + epsilon) * a - epsilon * b)
    S_minus = sums((1 - epsilon) * a + epsilon * b)
    Sd = S.detach()
    rho = Sd[:pairs] - Sd[pairs:]
    rho_plus = S_plus[:pairs] - S_plus[pairs:]
    rho_minus = S_minus[:pairs] - S_minus[pairs:]
    steps = ((rho_plus > rho) & (rho > rho_minus)).long() - ((rho_minus > rho) & (rho > rho_plus)).long()
    betas = beta / (1 + epsilon * steps.to(S.dtype))
    rho_ref = S_ref[:pairs] - S_ref[pairs:]
    margin = betas * ((S[:pairs] - S[pairs:]) - rho_ref)
    losses = -(1 - label_smoothing) * F.logsigmoid(margin)
    if label_smoothing > 0:
        losses = losses - label_smoothing * F.logsigmoid(-margin)
    out = {"loss": losses.mean(), "steps": steps, "betas": betas}
    if metrics:
        count = weight.sum(-1)
        logit_sum = (a.sum(-1) * weight).sum(-1)
        vocab = policy.shape[-1]
        out.update({
            "S": Sd, "S_ref": S_ref, "S_plus": S_plus, "S_minus": S_minus,
            "chosen_logps": Sd[:pairs], "rejected_logps": Sd[pairs:],
            "ref_chosen_logps": S_ref[:pairs], "ref_rejected_logps": S_ref[pairs:],
            "chosen_rewards": betas * (Sd[:pairs] - S_ref[:pairs]),
            "rejected_rewards": betas * (Sd[pairs:] - S_ref[pairs:]),
            "mean_chosen_logits": logit_sum[:pairs].sum() / (count[:pairs].sum() * vocab).clamp_min(1),
            "mean_rejected_logits": logit_sum[pairs:].sum() / (count[pairs:].sum() * vocab).clamp_min(1),
        })
    return out


def eager_loss(policy, reference, labels, mask):
    return eager_composition(policy, reference, labels, mask)["loss"]


def step_gaps(S, S_plus, S_minus):
    """Per pair, how far the fp64 log-ratios are from a tie in the step decision."""
    pairs = S.shape[0] // 2
    rho = S[:pairs] - S[pairs:]
    rp = S_plus[:pairs] - S_plus[pairs:]
    rm = S_minus[:pairs] - S_minus[pairs:]
    return torch.minimum((rp - rho).abs(), (rho - rm).abs())


def step_tolerance(S, S_plus, S_minus, rtol=SUM_RTOL, atol=SUM_ATOL):
    """Largest error of a gap that per-sum errors of rtol·|S| + atol allow (two sums on each side)."""
    pairs = S.shape[0] // 2
    e = lambda x: rtol * x.abs() + atol  # noqa: E731
    es, ep, em = e(S), e(S_plus), e(S_minus)
    rho_err = es[:pairs] + es[pairs:]
    return rho_err + torch.maximum(ep[:pairs] + ep[pairs:], em[:pairs] + em[pairs:])


# ---------------------------------------------------------------------------------------------
# Comparisons

def compare(report, section, name, got, ref, rtol, atol, norm_tol=None):
    """Elementwise |got − ref| <= atol + rtol·|ref| (NaN fails; rtol=None: no elementwise test);
    optionally ‖Δ‖/‖ref‖ <= norm_tol."""
    dev = ref.device if ref.is_cuda else got.device
    g = got.detach().to(dev, torch.float64)
    r = ref.detach().to(dev, torch.float64)
    if g.shape != r.shape:
        return report.check(section, name, False, why=f"shape {tuple(g.shape)} vs {tuple(r.shape)}")
    diff = (g - r).abs()
    finite = bool(torch.isfinite(g).all().item())
    if rtol is None:
        n_bad, worst = 0, None
    else:
        if isinstance(atol, torch.Tensor):
            atol = atol.to(dev, torch.float64)
        tol = atol + rtol * r.abs()
        bad = ~(diff <= tol)
        n_bad = int(bad.sum().item())
        worst = float((diff / tol.clamp_min(1e-300)).max().item()) if g.numel() else 0.0
    ref_norm = float(r.norm().item())
    rel_norm = float(diff.norm().item()) / ref_norm if ref_norm > 0 else float(diff.norm().item())
    ok = n_bad == 0 and finite
    info = {"n": g.numel(), "n_bad": n_bad, "max_abs_err": float(diff.max().item()) if g.numel() else 0.0,
            "worst_err_over_tol": worst, "rel_norm_err": rel_norm, "rtol": rtol}
    if norm_tol is not None:
        info["norm_tol"] = norm_tol
        ok = ok and rel_norm <= norm_tol
    return report.check(section, name, ok, **info)


def sum_tol(ref):
    return SUM_ATOL + SUM_RTOL * ref.detach().double().abs()


def rand_logits(shape, dtype, device, gen, scale, base=None, noise=0.0):
    x = torch.randn(shape, device=device, dtype=torch.float32, generator=gen) * scale
    if base is not None:
        x = base.to(torch.float32) + noise * x
    return x.to(dtype)


def rand_mask_labels(rows, steps, vocab, device, gen, all_on=False):
    """Right-padded rows: a prompt (mask 0), a completion (mask 1), padding (mask 0, label -100)."""
    labels = torch.randint(0, vocab, (rows, steps), device=device, generator=gen)
    if all_on:
        return labels, torch.ones(rows, steps, dtype=torch.bool, device=device)
    pos = torch.arange(steps, device=device).unsqueeze(0)
    prompt = torch.randint(1, max(2, steps // 4), (rows, 1), device=device, generator=gen)
    length = torch.randint(max(1, steps // 4), steps - steps // 4, (rows, 1), device=device, generator=gen)
    mask = (pos >= prompt) & (pos < prompt + length)
    labels = labels.masked_fill(~mask, -100)
    return labels, mask


def make_generator(device, seed):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# ---------------------------------------------------------------------------------------------
# 2. Correctness

OUTPUT_SUMS = ["chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"]


def check_outputs(report, section, out, ref, steps_ok_pairs, label_smoothing=0.0):
    """Op outputs against reference outputs (another op run or the fp64 eager composition)."""
    for k in OUTPUT_SUMS:
        compare(report, section, k, out[k], ref[k], SUM_RTOL, SUM_ATOL)
    betas_ref = ref["betas"].detach().double()
    keep = steps_ok_pairs.to(betas_ref.device)
    compare(report, section, "betas", out["betas"][keep.to(out["betas"].device)], betas_ref[keep], 1e-6, 0.0)
    # Derived values: tolerance from the sums they are made of.
    t = {k: sum_tol(ref[k]) for k in OUTPUT_SUMS}
    bmax = betas_ref.abs()
    for side, s, r in (("chosen", "chosen_logps", "ref_chosen_logps"), ("rejected", "rejected_logps", "ref_rejected_logps")):
        tol = 1e-6 + bmax * (t[s] + t[r]) + 1e-6 * ref[f"{side}_rewards"].detach().double().abs()
        compare(report, section, f"{side}_rewards", out[f"{side}_rewards"][keep.to(out["betas"].device)],
                ref[f"{side}_rewards"][keep], 0.0, tol[keep])
    if bool(keep.all()):
        loss_tol = 1e-6 + float((bmax * (t["chosen_logps"] + t["rejected_logps"] + t["ref_chosen_logps"]
                                         + t["ref_rejected_logps"])).mean())
        compare(report, section, "loss", out["loss"].reshape(1), ref["loss"].reshape(1), 1e-6, loss_tol)
    for k in ("mean_chosen_logits", "mean_rejected_logits"):
        compare(report, section, k, out[k].reshape(1), ref[k].reshape(1), 1e-5, 1e-5)


def steps_agreement(report, section, got_steps, ref_steps, gaps, tols):
    """Steps must match except for pairs whose fp64 gap is within the sums' error."""
    got = got_steps.detach().cpu()
    want = ref_steps.detach().cpu()
    mismatch = got != want
    tiny = (gaps.detach().cpu() <= tols.detach().cpu())
    unexplained = mismatch & ~tiny
    report.check(section, "steps", not bool(unexplained.any()), mismatched=int(mismatch.sum()),
                 mismatched_with_tiny_margin=int((mismatch & tiny).sum()), pairs=int(got.numel()),
                 nonzero_steps=int((want != 0).sum()), min_gap=float(gaps.min()))
    return ~mismatch  # pairs whose gradients/betas are comparable


def correctness_logits(report, ext, device, cfgs, seed):
    """The op on `device` against the same op on CPU (CUDA only) and against fp64 eager."""
    for i, (dtype, B, T, V, scale, ls) in enumerate(cfgs):
        name = f"logits {DTYPE_NAMES[dtype]} V={V} B={B} T={T} scale={scale} ls={ls}"
        section = f"correctness: {name}"
        log(section)
        try:
            gen = make_generator(device, seed + 101 * i)
            rows = 2 * B
            a = rand_logits((rows, T, V), dtype, device, gen, scale)
            b = rand_logits((rows, T, V), dtype, device, gen, 1.0, base=a, noise=0.5)
            labels, mask = rand_mask_labels(rows, T, V, device, gen)

            # fp64 eager reference on the same (upcast) values, on the same device.
            a64 = a.detach().double().clone().requires_grad_(True)
            ref = eager_composition(a64, b.double(), labels, mask, label_smoothing=ls, metrics=True)
            ref["loss"].backward()
            grad64 = a64.grad
            gaps = step_gaps(ref["S"], ref["S_plus"], ref["S_minus"])
            tols = step_tolerance(ref["S"], ref["S_plus"], ref["S_minus"])
            del a64

            pol = a.clone().requires_grad_(True)
            out = ext.epsilon_dpo_loss(pol, b, labels, mask, BETA, EPS, ls)
            if device.type == "cuda":
                # Poison: the backward's ∂logits will most likely reuse this freed block of the caching
                # allocator, so an element the kernel fails to write stays NaN and fails the comparisons.
                poison = torch.full_like(a, float("nan"))
                del poison
            out["loss"].backward()
            report.check(section, "loss has grad_fn", out["loss"].grad_fn is not None and pol.grad is not None)
            report.check(section, "grad dtype/shape", pol.grad.dtype == dtype and pol.grad.shape == a.shape)

            sec = section + " | op vs fp64 eager"
            ok_pairs = steps_agreement(report, sec, out["steps"], ref["steps"], gaps, tols)
            check_outputs(report, sec, out, ref, ok_pairs, ls)
            # fp32: exp(a − LSE) is evaluated from arguments rounded at the scale of |a| (log2 e·|a|·2⁻²⁴
            # per side), so very large logits widen the fp32 gradient tolerances a little.
            amax = float(a.detach().abs().max())
            widen = (lambda t: max(t, 4e-7 * amax)) if dtype == torch.float32 else (lambda t: t)
            if bool(ok_pairs.all()):
                compare(report, sec, "grad (norm)", pol.grad, grad64, None, 0.0, norm_tol=widen(GRAD_NORM_TOL[dtype]))
            seq = ext.sequence_logps(a, b, labels, mask, EPS)
            for k, rk in (("policy", "S"), ("reference", "S_ref"), ("plus", "S_plus"), ("minus", "S_minus")):
                compare(report, sec, f"sequence_logps.{k}", seq[k], ref[rk], SUM_RTOL, SUM_ATOL)
            del grad64

            if device.type == "cuda":
                sec = section + " | cuda vs cpu op"
                a_cpu = a.cpu().requires_grad_(True)
                out_cpu = ext.epsilon_dpo_loss(a_cpu, b.cpu(), labels.cpu(), mask.cpu(), BETA, EPS, ls)
                out_cpu["loss"].backward()
                ok_pairs = steps_agreement(report, sec, out["steps"], out_cpu["steps"], gaps, 2 * tols)
                check_outputs(report, sec, out, out_cpu, ok_pairs, ls)
                rtol, atol = GRAD_TOL[dtype]
                rtol = widen(rtol)
                keep_rows = ok_pairs.repeat(2).to(device)
                compare(report, sec, "grad (elementwise)", pol.grad[keep_rows], a_cpu.grad.to(device)[keep_rows],
                        rtol, atol)
                del a_cpu, out_cpu
            del a, b, pol, out, ref
        except Exception as exc:  # noqa: BLE001
            report.check(section, "ran", False, error=repr(exc))
            report.error(section, exc)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report.write()


def correctness_chunked(report, ext, device, cfgs, chunk_sizes, seed):
    """epsilon_dpo_loss_from_hidden against h·Wᵀ (+ b, soft-capped) fed to epsilon_dpo_loss, same device."""
    for i, (dtype, B, T, V, H, use_bias, softcap) in enumerate(cfgs):
        name = f"chunked {DTYPE_NAMES[dtype]} V={V} H={H} B={B} T={T} bias={use_bias} softcap={softcap}"
        log(f"correctness: {name}")
        try:
            gen = make_generator(device, seed + 7919 * (i + 1))
            rows = 2 * B
            hp = torch.randn(rows, T, H, device=device, generator=gen).to(dtype)
            hr = (hp.float() + 0.1 * torch.randn(rows, T, H, device=device, generator=gen)).to(dtype)
            Wp = (torch.randn(V, H, device=device, generator=gen) * (2.0 / math.sqrt(H))).to(dtype)
            Wr = (Wp.float() + 0.02 * torch.randn(V, H, device=device, generator=gen)).to(dtype)
            bp = (0.1 * torch.randn(V, device=device, generator=gen)).to(dtype) if use_bias else None
            br = (bp.float() + 0.01 * torch.randn(V, device=device, generator=gen)).to(dtype) if use_bias else None
            labels, mask = rand_mask_labels(rows, T, V, device, gen)
            tol_scale = 1.0 if dtype in (torch.float32, torch.float64) else 100.0

            def logits(h, W, bias):
                z = h @ W.t()
                if bias is not None:
                    z = z + bias
                return softcap * torch.tanh(z / softcap) if softcap > 0 else z

            hp_m = hp.clone().requires_grad_(True)
            Wp_m = Wp.clone().requires_grad_(True)
            bp_m = bp.clone().requires_grad_(True) if use_bias else None
            with torch.no_grad():
                ref_logits = logits(hr, Wr, br)
            pol_logits = logits(hp_m, Wp_m, bp_m)
            mat = ext.epsilon_dpo_loss(pol_logits, ref_logits, labels, mask, BETA, EPS, 0.0)
            mat["loss"].backward()
            seq = ext.sequence_logps(pol_logits.detach(), ref_logits, labels, mask, EPS)
            gaps = step_gaps(seq["policy"], seq["plus"], seq["minus"])
            tols = step_tolerance(seq["policy"], seq["plus"], seq["minus"], SUM_RTOL * tol_scale, SUM_ATOL * tol_scale)
            del pol_logits, ref_logits

            for chunk in chunk_sizes:
                section = f"correctness: {name} chunk_tokens={chunk}"
                hp_c = hp.clone().requires_grad_(True)
                Wp_c = Wp.clone().requires_grad_(True)
                bp_c = bp.clone().requires_grad_(True) if use_bias else None
                out = ext.epsilon_dpo_loss_from_hidden(hp_c, Wp_c, bp_c, hr, Wr, br, labels, mask, BETA, EPS, 0.0,
                                                       float(softcap), int(chunk))
                out["loss"].backward()
                ok_pairs = steps_agreement(report, section, out["steps"], mat["steps"], gaps, tols)
                for k in OUTPUT_SUMS:
                    compare(report, section, k, out[k], mat[k], SUM_RTOL * tol_scale, SUM_ATOL * tol_scale)
                if bool(ok_pairs.all()):
                    loss_tol = 1e-6 + 1e-5 * tol_scale * float(mat["loss"].abs())
                    loss_tol += BETA * 1.02 * 4 * float(sum(sum_tol(mat[k]).mean() for k in OUTPUT_SUMS)) * tol_scale
                    compare(report, section, "loss", out["loss"].reshape(1), mat["loss"].reshape(1), 0.0, loss_tol)
                    # fp32: different matmul shapes round differently (~1e-6); bf16: the materialised dW/dh
                    # are bf16 products, the chunked ones fp32 sums rounded once.
                    gtol = 1e-4 if dtype in (torch.float32, torch.float64) else 2e-2
                    compare(report, section, "grad hidden (norm)", hp_c.grad, hp_m.grad, None, 0.0, norm_tol=gtol)
                    compare(report, section, "grad weight (norm)", Wp_c.grad, Wp_m.grad, None, 0.0, norm_tol=gtol)
                    if use_bias:
                        compare(report, section, "grad bias (norm)", bp_c.grad, bp_m.grad, None, 0.0,
                                norm_tol=gtol)
                else:
                    report.check(section, "gradients skipped (a tiny-margin step differs)", True)
                del out, hp_c, Wp_c, bp_c
        except Exception as exc:  # noqa: BLE001
            report.check(f"correctness: {name}", "ran", False, error=repr(exc))
            report.error(name, exc)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report.write()


# ---------------------------------------------------------------------------------------------
# Timing

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(fn, device, iters, warmup, setup=None):
    """Median / min / max in ms: CUDA events on GPU, perf_counter on CPU; setup() runs untimed."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        if setup:
            setup()
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1], "iters": iters}


def timing_inputs(B, T, V, dtype, device, seed):
    gen = make_generator(device, seed)
    rows = 2 * B
    a = rand_logits((rows, T, V), dtype, device, gen, 2.0)
    b = rand_logits((rows, T, V), dtype, device, gen, 1.0, base=a, noise=0.5)
    labels, mask = rand_mask_labels(rows, T, V, device, gen, all_on=True)
    return a, b, labels, mask


def gbps(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9 if ms and ms > 0 else float("nan")


def timing_section(report, ext, device, cfgs, iters, warmup, seed):
    for i, (B, T, V, dtype) in enumerate(cfgs):
        N = 2 * B * T
        esize = torch.tensor([], dtype=dtype).element_size()
        nbytes = 2 * N * V * esize  # what the fused forward must read: a and b once
        row = {"N": N, "B": B, "T": T, "V": V, "dtype": DTYPE_NAMES[dtype], "fwd_bytes": nbytes, "seed": seed + i}
        report.data["timing"].append(row)
        log(f"timing N={N} V={V} {DTYPE_NAMES[dtype]} ({nbytes / 1e9:.2f} GB read per forward)")
        try:
            # (d) bandwidth ceiling: a copy of the same bytes, and a read-only reduction over them.
            src = torch.empty(2 * N * V, dtype=dtype, device=device).normal_()
            dst = torch.empty_like(src)
            t = bench(lambda: dst.copy_(src), device, iters, warmup)
            row["copy"] = t
            row["copy_GBps_rw"] = gbps(2 * nbytes, t["median_ms"])
            row["copy_GBps_read"] = gbps(nbytes, t["median_ms"])
            t = bench(lambda: src.sum(dtype=torch.float32), device, iters, warmup)
            row["read_sum"] = t
            row["read_sum_GBps"] = gbps(nbytes, t["median_ms"])
            del src, dst

            a, b, labels, mask = timing_inputs(B, T, V, dtype, device, seed + i)
            pol = a.requires_grad_(True)

            def clear():
                pol.grad = None

            # (a) the fused op, as the addon calls it (argument checks, autograd Function, per-pair math).
            t = bench(lambda: ext.epsilon_dpo_loss(pol, b, labels, mask, BETA, EPS, 0.0), device, iters, warmup)
            row["fused_fwd"] = t
            row["fused_fwd_GBps"] = gbps(nbytes, t["median_ms"])
            row["fused_fwd_pct_of_copy"] = 100.0 * row["fused_fwd_GBps"] / row["copy_GBps_rw"]

            def fused_fb():
                ext.epsilon_dpo_loss(pol, b, labels, mask, BETA, EPS, 0.0)["loss"].backward()

            t = bench(fused_fb, device, iters, warmup, setup=clear)
            row["fused_fwdbwd"] = t
            # The row kernels alone (what the op launches for [N,V]; no checks or per-pair math).
            a2 = pol.detach().view(N, V)
            b2 = b.view(N, V)
            y = labels.view(N)
            w = mask.view(N).to(torch.float32)
            t = bench(lambda: ext.forward_rows(a2, b2, y, w, EPS), device, iters, warmup)
            row["kernel_fwd"] = t
            row["kernel_fwd_GBps"] = gbps(nbytes, t["median_ms"])
            row["kernel_fwd_pct_of_copy"] = 100.0 * row["kernel_fwd_GBps"] / row["copy_GBps_rw"]
            stats = ext.forward_rows(a2, b2, y, w, EPS)
            lse = stats[5].contiguous()
            g = (torch.rand(N, device=device) * 1e-3).to(stats.dtype)
            t = bench(lambda: ext.backward_rows(a2, y, lse, g), device, iters, warmup)
            row["kernel_bwd"] = t
            row["kernel_bwd_GBps_rw"] = gbps(nbytes, t["median_ms"])  # reads a, writes ∂a: N·V each
            del stats, lse, g
            with torch.no_grad():
                row["fused_loss"] = float(ext.epsilon_dpo_loss(pol.detach(), b, labels, mask, BETA, EPS, 0.0)["loss"])

            # (b) the reference trainer's eager composition in the logits' dtype.
            t = bench(lambda: eager_loss(pol, b, labels, mask), device, iters, warmup)
            row["eager_fwd"] = t
            t = bench(lambda: eager_loss(pol, b, labels, mask).backward(), device, iters, warmup, setup=clear)
            row["eager_fwdbwd"] = t
            with torch.no_grad():
                row["eager_loss"] = float(eager_loss(pol.detach(), b, labels, mask))
            row["eager_over_fused_fwd"] = row["eager_fwd"]["median_ms"] / row["fused_fwd"]["median_ms"]
            row["eager_over_fused_fwdbwd"] = row["eager_fwdbwd"]["median_ms"] / row["fused_fwdbwd"]["median_ms"]
            log(f"  copy {row['copy_GBps_rw']:.0f} GB/s rw; fused fwd {row['fused_fwd']['median_ms']:.3f} ms "
                f"({row['fused_fwd_GBps']:.0f} GB/s, {row['fused_fwd_pct_of_copy']:.0f}% of copy), kernel fwd "
                f"{row['kernel_fwd_GBps']:.0f} GB/s; fwd+bwd fused {row['fused_fwdbwd']['median_ms']:.3f} ms, "
                f"eager {row['eager_fwdbwd']['median_ms']:.3f} ms ({row['eager_over_fused_fwdbwd']:.2f}x)")
            del a, b, pol, a2, b2
        except Exception as exc:  # noqa: BLE001
            row["error"] = repr(exc)
            report.error(f"timing N={N} V={V} {DTYPE_NAMES[dtype]}", exc)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report.write()


def compile_section(report, device, cfgs, iters, warmup, seed, deadline):
    """(c) torch.compile (default mode) of the eager composition, same inputs as the timing rows."""
    rows = {(r["B"], r["T"], r["V"], r["dtype"]): r for r in report.data["timing"]}
    for i, (B, T, V, dtype) in enumerate(cfgs):
        rec = {"B": B, "T": T, "V": V, "dtype": DTYPE_NAMES[dtype]}
        report.data["compile"].append(rec)
        timing = rows.get((B, T, V, DTYPE_NAMES[dtype]), {})
        if not hasattr(torch, "compile"):
            rec["error"] = f"torch.compile is not available in torch {torch.__version__}"
            log(f"compile: {rec['error']}")
            report.write()
            continue
        if time.time() > deadline:
            rec["error"] = "skipped: time budget spent"
            log(f"compile N={2 * B * T} V={V}: skipped (time budget)")
            report.write()
            continue
        log(f"compile N={2 * B * T} V={V} {DTYPE_NAMES[dtype]}")
        try:
            dynamo = importlib.import_module("torch._dynamo")
            dynamo.reset()
            a, b, labels, mask = timing_inputs(B, T, V, dtype, device, seed + i)
            pol = a.requires_grad_(True)

            def clear():
                pol.grad = None

            compiled = torch.compile(eager_loss)
            t = time.time()
            compiled(pol, b, labels, mask).backward()  # compiles forward and backward
            sync(device)
            rec["compile_s"] = time.time() - t
            clear()
            rec["compiled_fwd"] = bench(lambda: compiled(pol, b, labels, mask), device, iters, warmup)
            rec["compiled_fwdbwd"] = bench(lambda: compiled(pol, b, labels, mask).backward(), device, iters, warmup,
                                           setup=clear)
            if "fused_fwdbwd" in timing:
                rec["compiled_over_fused_fwd"] = rec["compiled_fwd"]["median_ms"] / timing["fused_fwd"]["median_ms"]
                rec["compiled_over_fused_fwdbwd"] = (rec["compiled_fwdbwd"]["median_ms"]
                                                     / timing["fused_fwdbwd"]["median_ms"])
                timing["compiled_fwd"] = rec["compiled_fwd"]
                timing["compiled_fwdbwd"] = rec["compiled_fwdbwd"]
                timing["compiled_over_fused_fwdbwd"] = rec["compiled_over_fused_fwdbwd"]
            log(f"  compiled in {rec['compile_s']:.1f} s; fwd+bwd {rec['compiled_fwdbwd']['median_ms']:.3f} ms"
                + (f" ({rec['compiled_over_fused_fwdbwd']:.2f}x fused)" if "compiled_over_fused_fwdbwd" in rec else ""))
            del a, b, pol, compiled
        except Exception as exc:  # noqa: BLE001  (a compile failure is a finding, not a crash)
            rec["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            log(f"  torch.compile failed: {rec['error'][:300]}")
        finally:
            try:
                importlib.import_module("torch._dynamo").reset()
            except Exception:  # noqa: BLE001
                pass
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report.write()


def profile_section(report, ext, device, B, T, V, dtype, seed):
    """Where the fused op's time goes outside its row kernels: torch.profiler over a few fused
    forward+backward calls; every ATen op and kernel with its count, CPU and device time."""
    log(f"profile: fused fwd+bwd N={2 * B * T} V={V} {DTYPE_NAMES[dtype]}")
    try:
        a, b, labels, mask = timing_inputs(B, T, V, dtype, device, seed)
        pol = a.requires_grad_(True)

        def step():
            pol.grad = None
            ext.epsilon_dpo_loss(pol, b, labels, mask, BETA, EPS, 0.0)["loss"].backward()

        for _ in range(3):
            step()
        sync(device)
        acts = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(5):
                step()
            sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=60)
        report.data["profile"] = {"N": 2 * B * T, "V": V, "dtype": DTYPE_NAMES[dtype], "calls": 5, "table": table}
        log("profile (5 calls):\n" + table)
    except Exception as exc:  # noqa: BLE001
        report.error("timing profile", exc)
    report.write()


def chunked_section(report, ext, device, B, T, V, H, dtype, iters, warmup, seed, chunk_variants):
    """4. Memory and time from hidden states: eager vs materialised fused vs chunked."""
    N = 2 * B * T
    res = {"N": N, "B": B, "T": T, "V": V, "H": H, "dtype": DTYPE_NAMES[dtype], "methods": {}}
    report.data["chunked"] = res
    log(f"chunked section N={N} V={V} H={H} {DTYPE_NAMES[dtype]}")
    oom_types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),) if t is not None) or (RuntimeError,)
    try:
        gen = make_generator(device, seed)
        hp = torch.randn(2 * B, T, H, device=device, generator=gen).to(dtype).requires_grad_(True)
        hr = (hp.detach().float() + 0.1 * torch.randn(2 * B, T, H, device=device, generator=gen)).to(dtype)
        Wp = (torch.randn(V, H, device=device, generator=gen) * (2.0 / math.sqrt(H))).to(dtype).requires_grad_(True)
        Wr = (Wp.detach().float() + 0.02 * torch.randn(V, H, device=device, generator=gen)).to(dtype)
        labels, mask = rand_mask_labels(2 * B, T, V, device, gen, all_on=True)
    except Exception as exc:  # noqa: BLE001
        res["error"] = repr(exc)
        report.error("chunked section inputs", exc)
        report.write()
        return

    def clear():
        hp.grad = None
        Wp.grad = None

    def eager_from_hidden():
        with torch.no_grad():
            ref = hr @ Wr.t()
        loss = eager_loss(hp @ Wp.t(), ref, labels, mask)
        loss.backward()
        return loss

    def fused_materialised():
        with torch.no_grad():
            ref = hr @ Wr.t()
        loss = ext.epsilon_dpo_loss(hp @ Wp.t(), ref, labels, mask, BETA, EPS, 0.0)["loss"]
        loss.backward()
        return loss

    def chunked(chunk):
        def run():
            loss = ext.epsilon_dpo_loss_from_hidden(hp, Wp, None, hr, Wr, None, labels, mask, BETA, EPS, 0.0, 0.0,
                                                    chunk)["loss"]
            loss.backward()
            return loss
        return run

    methods = [("eager_from_hidden", eager_from_hidden), ("fused_materialised", fused_materialised)]
    methods += [(f"chunked_{c}" if c else "chunked_default", chunked(c)) for c in chunk_variants]
    for name, fn in methods:
        m = {}
        res["methods"][name] = m
        try:
            clear()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            loss = fn()
            sync(device)
            m["loss"] = float(loss.detach())
            del loss
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated()
                m["baseline_bytes"] = base
                m["peak_bytes"] = peak
                m["peak_extra_bytes"] = peak - base
            m["time"] = bench(fn, device, iters, warmup, setup=clear)
            log(f"  {name}: {m['time']['median_ms']:.1f} ms"
                + (f", peak extra {m['peak_extra_bytes'] / 2**30:.2f} GiB" if "peak_extra_bytes" in m else ""))
        except oom_types as exc:
            m["error"] = f"OOM: {str(exc)[:500]}"
            log(f"  {name}: out of memory")
        except Exception as exc:  # noqa: BLE001
            m["error"] = repr(exc)
            report.error(f"chunked section {name}", exc)
        finally:
            clear()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report.write()
    e, f_, c = (res["methods"].get(k, {}) for k in ("eager_from_hidden", "fused_materialised", "chunked_default"))
    if "time" in c and "time" in f_:
        res["chunked_over_materialised_time"] = c["time"]["median_ms"] / f_["time"]["median_ms"]
        best = min((v["time"]["median_ms"], k) for k, v in res["methods"].items() if k.startswith("chunked") and "time" in v)
        res["best_chunked"] = best[1]
        res["best_chunked_over_materialised_time"] = best[0] / f_["time"]["median_ms"]
    if "peak_extra_bytes" in c and "peak_extra_bytes" in e:
        res["chunked_over_eager_peak_extra"] = c["peak_extra_bytes"] / e["peak_extra_bytes"]
        res["chunked_over_eager_peak"] = c["peak_bytes"] / e["peak_bytes"]
    if "loss" in c and "loss" in f_:
        res["loss_chunked_minus_materialised"] = c["loss"] - f_["loss"]
    del hp, hr, Wp, Wr
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report.write()


# ---------------------------------------------------------------------------------------------
# Targets and the printed table

def evaluate_targets(report, meaningful):
    note = "" if meaningful else "cpu-only mode at tiny sizes: not evaluated"

    def add(name, value, goal, ok):
        report.target(name, value, goal, (ok if meaningful else None) if value is not None else None, note)

    for r in report.data["timing"]:
        tag = f"N={r['N']} V={r['V']} {r['dtype']}"
        if "fused_fwd_pct_of_copy" in r:
            add(f"fused op forward % of copy bandwidth ({tag})", r["fused_fwd_pct_of_copy"], ">= 85",
                r["fused_fwd_pct_of_copy"] >= 85)
            add(f"row-kernel forward % of copy bandwidth ({tag})", r["kernel_fwd_pct_of_copy"], ">= 85",
                r["kernel_fwd_pct_of_copy"] >= 85)
        if "eager_over_fused_fwdbwd" in r:
            add(f"eager / fused fwd+bwd ({tag})", r["eager_over_fused_fwdbwd"], ">= 5", r["eager_over_fused_fwdbwd"] >= 5)
        if "compiled_over_fused_fwdbwd" in r:
            add(f"torch.compile / fused fwd+bwd ({tag})", r["compiled_over_fused_fwdbwd"], ">= 1.5",
                r["compiled_over_fused_fwdbwd"] >= 1.5)
    c = report.data["chunked"]
    if c:
        tag = f"N={c['N']} V={c['V']} H={c['H']} {c['dtype']}"
        add(f"chunked / materialised fused time ({tag})", c.get("chunked_over_materialised_time"), "<= 1.15",
            c.get("chunked_over_materialised_time", 1e9) <= 1.15)
        add(f"chunked / eager peak extra memory ({tag})", c.get("chunked_over_eager_peak_extra"), "<= 0.125",
            c.get("chunked_over_eager_peak_extra", 1e9) <= 0.125)
    report.write()


def fmt(x, spec=".3f"):
    if x is None:
        return "-"
    if isinstance(x, dict):
        x = x.get("median_ms")
        if x is None:
            return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def print_table(report):
    d = report.data
    meta = d["meta"]
    print("\n" + "=" * 100)
    print(f"edpo GPU check — {meta.get('device')} — torch {meta.get('torch')} — CUDA {meta.get('cuda')} — {meta.get('date')}")
    b = d["build"]
    print(f"build: {'ok' if b.get('ok') else 'FAILED'} in {fmt(b.get('build_s'), '.1f')} s; arch {b.get('torch_cuda_arch_list')};"
          f" -std={b.get('cxx_std')}; cpu kernels {b.get('cpu_kernel_isa')}")
    fails = report.failures()
    print(f"correctness: {len(d['correctness']) - len(fails)}/{len(d['correctness'])} checks passed")
    for f in fails[:20]:
        print(f"  FAIL {f['section']}: {f['name']} "
              + ", ".join(f"{k}={fmt(v, '.3g')}" for k, v in f.items() if k not in ("section", "name", "ok")))
    if len(fails) > 20:
        print(f"  ... and {len(fails) - 20} more (results.json)")
    if d["timing"]:
        print("\ntiming (median ms; GB/s = bytes read by the forward, 2·N·V·size / t; copy counts read+write)")
        hdr = ("N", "V", "dtype", "copy GB/s", "fused fwd", "GB/s", "% copy", "kern % copy", "fused f+b", "eager f+b",
               "eager/fused", "compiled f+b", "comp/fused")
        print(" | ".join(hdr))
        for r in d["timing"]:
            print(" | ".join([str(r["N"]), str(r["V"]), r["dtype"], fmt(r.get("copy_GBps_rw"), ".0f"),
                              fmt(r.get("fused_fwd")), fmt(r.get("fused_fwd_GBps"), ".0f"),
                              fmt(r.get("fused_fwd_pct_of_copy"), ".0f"), fmt(r.get("kernel_fwd_pct_of_copy"), ".0f"),
                              fmt(r.get("fused_fwdbwd")), fmt(r.get("eager_fwdbwd")),
                              fmt(r.get("eager_over_fused_fwdbwd"), ".2f"), fmt(r.get("compiled_fwdbwd")),
                              fmt(r.get("compiled_over_fused_fwdbwd"), ".2f")]) + (f"  ERROR {r['error']}" if "error" in r else ""))
        for c in d["compile"]:
            if "error" in c:
                print(f"  torch.compile N={2 * c['B'] * c['T']} V={c['V']} {c['dtype']}: {c['error'][:200]}")
            elif "compile_s" in c:
                print(f"  torch.compile N={2 * c['B'] * c['T']} V={c['V']} {c['dtype']}: compiled in {c['compile_s']:.1f} s")
    c = d["chunked"]
    if c:
        print(f"\nchunked path N={c['N']} V={c['V']} H={c['H']} {c['dtype']} (fwd+bwd; peak extra = peak − allocated before)")
        for k, m in c["methods"].items():
            extra = m.get("peak_extra_bytes")
            print(f"  {k:22s} {fmt(m.get('time'), '.1f'):>9s} ms   peak extra "
                  f"{fmt(extra / 2**30 if extra is not None else None, '.2f'):>7s} GiB"
                  + (f"   {m['error'][:120]}" if "error" in m else ""))
    if d["targets"]:
        print("\ntargets")
        for t in d["targets"]:
            status = {True: "PASS", False: "MISS", None: "n/a "}[t["ok"]]
            print(f"  {status} {t['name']}: {fmt(t['value'], '.3f')} (goal {t['goal']})" + (f" [{t['note']}]" if t["note"] else ""))
    if d["errors"]:
        print(f"\n{len(d['errors'])} section error(s): " + "; ".join(e["where"] + ": " + e["error"][:150] for e in d["errors"]))
    print("=" * 100, flush=True)


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/edpo-gpu-out")
    p.add_argument("--build-dir", default=os.environ.get("EDPO_EXT_BUILD_DIR") or "/tmp/edpo-ext")
    p.add_argument("--cpu-only", action="store_true", help="build without CUDA and run tiny CPU versions of every part")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--skip-chunked-bench", action="store_true")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=float(os.environ.get("EDPO_BUDGET_S", "360")),
                   help="after this many seconds optional parts (torch.compile) are skipped")
    p.add_argument("--seed", default="20261201",
                   help="an integer (default 20261201: a rerun sees the same inputs), or 'random' for fresh inputs "
                        "from os.urandom; recorded in results.json")
    p.add_argument("--verbose-build", action="store_true")
    p.add_argument("--print", metavar="RESULTS_JSON", help="only print the table of an earlier run's results.json")
    args = p.parse_args()

    if args.print:
        report = Report(os.path.dirname(os.path.abspath(args.print)), False)
        with open(args.print) as f:
            report.data.update(json.load(f))
        print_table(report)
        return 0

    os.makedirs(args.out, exist_ok=True)
    if args.seed == "random":
        seed = int.from_bytes(os.urandom(3), "little")
    elif re.fullmatch(r"\d+", args.seed):
        seed = int(args.seed)
    else:
        p.error(f"--seed: expected an integer or 'random', got {args.seed!r}")
    have_cuda = torch.cuda.is_available()
    force_cuda_build = os.environ.get("EDPO_FORCE_CUDA_BUILD") == "1"  # compile-only test on a machine without a GPU
    cuda = have_cuda and not args.cpu_only
    device = torch.device("cuda" if cuda else "cpu")
    report = Report(args.out, cuda)
    report.data["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "cuda" if cuda else "cpu-only",
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "capability": list(torch.cuda.get_device_capability()) if cuda else None,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
        "host": platform.node(), "seed": seed, "beta": BETA, "epsilon": EPS, "argv": sys.argv,
        "cpu_threads": torch.get_num_threads(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        report.data["meta"]["gpu_memory_bytes"] = props.total_memory
        report.data["meta"]["sm_count"] = props.multi_processor_count
    log(f"mode {report.data['meta']['mode']}; device {report.data['meta']['device']}; torch {torch.__version__}; "
        f"CUDA {torch.version.cuda}; seed {seed}; out {args.out}")
    report.write()

    try:
        ext = build_extension(report, cuda or force_cuda_build, args.build_dir, args.verbose_build)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        report.data["build"]["ok"] = False
        report.data["build"]["error"] = msg[-20000:]
        with open(os.path.join(args.out, "build_error.log"), "w") as f:
            f.write(msg)
        log("BUILD FAILED:\n" + msg[-6000:])
        report.write()
        print_table(report)
        return 3
    report.write()
    if args.build_only:
        print_table(report)
        return 0
    deadline = T0 + args.budget_s

    if cuda:
        logit_cfgs = [(dt, 2, 64, V, 2.0, 0.0) for dt in (torch.bfloat16, torch.float16, torch.float32)
                      for V in (32000, 128256, 256000)]
        logit_cfgs += [(torch.float32, 2, 64, 32000, 2.0, 0.1),   # label smoothing
                       (torch.float32, 2, 64, 32000, 30.0, 0.0),  # large logits
                       (torch.bfloat16, 8, 16, 50257, 2.0, 0.0)]  # odd V, more pairs
        chunk_cfgs = [(torch.bfloat16, 2, 64, 32000, 256, False, 0.0), (torch.float32, 2, 64, 32000, 256, True, 30.0)]
        chunk_sizes = [0, 7, 37, 4096]
        timing_cfgs = [(4, 1024, 32000, torch.bfloat16), (4, 1024, 128256, torch.bfloat16),
                       (4, 1024, 32000, torch.float32)]
        chunk_bench = dict(B=8, T=1024, V=128256, H=4096, dtype=torch.bfloat16)
        # 0: the default (2048 rows at this V on a GPU); 261 is the CPU default: the trade-off of time and peak.
        chunk_variants = [0, 261, 1024, 4096, 8192]
        iters, warmup = args.iters, args.warmup
    else:
        logit_cfgs = [(dt, 2, 16, V, 2.0, 0.0) for dt in (torch.bfloat16, torch.float16, torch.float32, torch.float64)
                      for V in (1000, 4099)]
        logit_cfgs += [(torch.float32, 2, 16, 1000, 2.0, 0.1), (torch.float32, 2, 16, 1000, 30.0, 0.0)]
        chunk_cfgs = [(torch.float32, 2, 16, 1000, 32, False, 0.0), (torch.float32, 2, 16, 1000, 32, True, 30.0),
                      (torch.float64, 2, 16, 777, 24, True, 0.0)]
        chunk_sizes = [0, 1, 7, 37, 4096]
        timing_cfgs = [(2, 32, 1000, torch.bfloat16), (2, 32, 1000, torch.float32)]
        chunk_bench = dict(B=2, T=16, V=1000, H=64, dtype=torch.float32)
        chunk_variants = [0, 16]
        iters, warmup = 3, 1

    correctness_logits(report, ext, device, logit_cfgs, seed)
    correctness_chunked(report, ext, device, chunk_cfgs, chunk_sizes, seed)
    if not args.skip_timing:
        timing_section(report, ext, device, timing_cfgs, iters, warmup, seed + 1000)
        B0, T0_, V0, dt0 = timing_cfgs[0]
        profile_section(report, ext, device, B0, T0_, V0, dt0, seed + 1500)
    if not args.skip_chunked_bench:
        chunked_section(report, ext, device, iters=iters, warmup=1, seed=seed + 2000, chunk_variants=chunk_variants,
                        **chunk_bench)
    if not args.skip_timing and not args.skip_compile:
        compile_section(report, device, timing_cfgs, iters, warmup, seed + 1000, deadline)
    evaluate_targets(report, meaningful=cuda)
    report.write()
    print_table(report)
    timing_errors = [e for e in report.data["errors"] if e["where"].startswith(TIMING_SECTIONS)]
    wrong = bool(report.failures()) or len(timing_errors) < len(report.data["errors"])
    status = 1 if wrong else 2 if timing_errors else 0
    verdict = {0: "all checks passed", 1: "FAILED (correctness)", 2: "correct, but a timing section raised"}[status]
    log(f"done: {verdict}; results in {os.path.join(args.out, 'results.json')}")
    return status


if __name__ == "__main__":
    sys.exit(main())
