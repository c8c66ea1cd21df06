"""The authors' ε-DPO optimizer step in eager PyTorch: the baseline of bench/step.ts.

What github.com/oddqueue/e-dpo's EpsilonDPOTrainer (on TRL's DPOTrainer and the HF Trainer) does
per step, on bench/model_torch.py's llama (HF numerics) with the weights and batch that
bench/step.ts wrote: the reference's concatenated forward under no_grad with full logits and its
log_softmax/gather sums, the policy's forward with full logits, the perturbed logits
(1±ε)·logits ∓ ε·ref_logits and their log_softmax/gather sums, the step decision, the sigmoid loss
with per-pair β, the logit metrics, backward, clip_grad_norm_ (HF max_grad_norm), torch.optim.AdamW
and zero_grad. Logits stay in the model's dtype, as the reference trainer keeps them. In bf16 the
optimizer holds fp32 master weights and the bf16 weights are copied from them after each step, as
DeepSpeed's bf16 mode does. Prints one JSON line.
hyper.json's "lora" ({r, scale, targets, seed}) trains LoRA adapters as edpo does (PEFT has no
place on the GPU machine, so the math is written out: model_torch.linear, lora_adapters below): the
base frozen and also the reference with the adapters off, AdamW over the fp32 adapters only.
"gradientCheckpointing" recomputes each decoder layer in backward (HF's torch.utils.checkpoint).
On cuda the JSON has the timed steps' torch.cuda.max_memory_allocated.
With EDPO_BENCH_PROFILE=DIR, one more step after the timed ones is profiled as edpo's
--profile-steps does: the wall time per section with the device synchronised at each border
(DIR/sections.json) and torch.profiler's op table (DIR/summary.txt).
usage: /usr/bin/python3 bench/step_torch.py DIR DTYPE ITERS [THREADS [DEVICE]]"""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_torch import forward, load_safetensors  # noqa: E402


def masked_logps(logits, labels, mask):
    per_token = torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)
    per_token[~mask] = 0
    return per_token.sum(-1)


def lora_adapters(cfg, w, hp, device):
    """edpo's add_lora (csrc/models/lora.cc): per layer and target, A [r, in] kaiming-uniform (bound
    1/sqrt(in), drawn in fp64 from a CPU generator seeded with the run's seed, layer by layer in
    module order) and B [out, r] zeros, both fp32 whatever the base's dtype. B = 0: the first
    step's policy is the base."""
    g = torch.Generator().manual_seed(hp["seed"])
    r = hp["r"]
    out = {}
    for l in range(cfg["num_hidden_layers"]):
        for module in hp["targets"]:
            name = f"model.layers.{l}.{module}"
            rows, cols = w[name + ".weight"].shape
            bound = 1.0 / math.sqrt(cols)
            a = torch.empty(r, cols, dtype=torch.float64).uniform_(-bound, bound, generator=g)
            out[name + ".lora_A.weight"] = a.to(device, torch.float32).requires_grad_(True)
            out[name + ".lora_B.weight"] = torch.zeros(rows, r, dtype=torch.float32, device=device).requires_grad_(True)
    return out


def main():
    d, dtype_name, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count())
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    cfg = json.load(open(os.path.join(d, "config.json")))
    hp = json.load(open(os.path.join(d, "hyper.json")))
    weights = load_safetensors(os.path.join(d, "model.safetensors"), device)
    lora_hp = hp.get("lora")
    checkpoint = hp.get("gradientCheckpointing", False)
    if lora_hp is None:
        policy = {k: v.to(dtype).requires_grad_(True) for k, v in weights.items()}
        # copy=True: in fp32, .to() would return the policy's own tensor, and the reference would train with it.
        reference = {k: v.to(dtype, copy=True) for k, v in weights.items()}
        mixed = dtype != torch.float32
        master = {k: v.detach().float().clone().requires_grad_(True) for k, v in policy.items()} if mixed else policy
        trainable = list(master.values())
        lora = None
    else:
        # LoRA: the frozen base is both the policy's body and, with the adapters off, the reference
        # (no copy); only the fp32 adapters train, so AdamW needs no master weights.
        policy = reference = {k: v.to(dtype) for k, v in weights.items()}
        adapters = lora_adapters(cfg, policy, lora_hp, device)
        lora = (adapters, lora_hp["scale"])
        mixed = False
        trainable = list(adapters.values())
    del weights
    opt = torch.optim.AdamW(
        trainable, lr=hp["learningRate"], betas=(hp["adamBeta1"], hp["adamBeta2"]),
        eps=hp["adamEpsilon"], weight_decay=hp["weightDecay"],
    )
    batch = load_safetensors(os.path.join(d, "batch.safetensors"))
    ids, loss_mask = batch["input_ids"].to(device), batch["loss_mask"].to(device).bool()
    B = ids.shape[0] // 2
    eps = hp["epsilon"]
    beta = hp["beta"]
    # TRL: labels are the inputs rolled by one; masked positions read a dummy token 0.
    labels = torch.roll(ids, shifts=-1, dims=1)
    labels[~loss_mask] = 0

    profile_dir = os.environ.get("EDPO_BENCH_PROFILE") or None
    sections = []

    def lap(name):
        # Only in the profiled step: the section ends when the device work it queued has.
        if not profiling:
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        sections.append([name, (now - lap.last) * 1000])
        lap.last = now

    times, first_logps, losses, peak_device = [], None, [], None
    profiler = None
    for i in range(iters + 1 + (1 if profile_dir else 0)):
        profiling = profile_dir is not None and i == iters + 1
        if i == 1 and device.type == "cuda":
            # The timed steps' peak, as edpo's child reports a step after its warm-up.
            torch.cuda.reset_peak_memory_stats(device)
        if profiling:
            activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
            profiler = torch.profiler.profile(activities=activities)
            profiler.__enter__()
        t0 = lap.last = time.perf_counter()
        with torch.no_grad():
            ref_logits = forward(cfg, reference, ids)  # with LoRA: the base, adapters off
            ref_logps = masked_logps(ref_logits, labels, loss_mask)
            ref_metrics = (ref_logits[:B][loss_mask[:B]].mean(), ref_logits[B:][loss_mask[B:]].mean())
        lap("reference forward")
        logits = forward(cfg, policy, ids, lora, checkpoint)
        lap("policy forward")
        logps = masked_logps(logits, labels, loss_mask)
        plus = masked_logps((1 + eps) * logits - eps * ref_logits, labels, loss_mask)
        minus = masked_logps((1 - eps) * logits + eps * ref_logits, labels, loss_mask)
        ratio, ratio_plus, ratio_minus = logps[:B] - logps[B:], plus[:B] - plus[B:], minus[:B] - minus[B:]
        steps = 1 * ((ratio_plus > ratio) & (ratio > ratio_minus)) - 1 * ((ratio_minus > ratio) & (ratio > ratio_plus))
        z = ratio - (ref_logps[:B] - ref_logps[B:])
        pair_beta = beta / (1 + eps * steps)
        loss = (-F.logsigmoid(pair_beta * z)).mean()
        chosen_rewards = pair_beta * (logps[:B] - ref_logps[:B]).detach()
        rejected_rewards = pair_beta * (logps[B:] - ref_logps[B:]).detach()
        mean_logits = (logits[:B][loss_mask[:B]].mean(), logits[B:][loss_mask[B:]].mean())
        lap("loss")
        loss.backward()
        lap("backward")
        if mixed:
            for k, p in policy.items():
                master[k].grad = p.grad.float()
                p.grad = None
        torch.nn.utils.clip_grad_norm_(trainable, hp["maxGradNorm"])
        lap("clip")
        opt.step()
        lap("optimizer")
        opt.zero_grad(set_to_none=True)
        lap("zero grad")
        if mixed:
            with torch.no_grad():
                for k, p in policy.items():
                    p.copy_(master[k])
            lap("master to weights")
        # The callback's β update and the logged metrics (each an .item(), as the trainer logs them).
        beta = beta / (1 + eps * steps.float().mean().item())
        metrics = [loss.item(), chosen_rewards.mean().item(), rejected_rewards.mean().item()]
        metrics += [m.item() for m in mean_logits + ref_metrics]
        losses.append(metrics[0] if math.isfinite(metrics[0]) else None)  # JSON has no NaN: null fails bench/step.ts's check
        if i == iters and device.type == "cuda":
            peak_device = torch.cuda.max_memory_allocated(device)
        if i == 0:
            first_logps = logps[:B].mean().item()
            first_logps = first_logps if math.isfinite(first_logps) else None
        elif profiling:
            lap("rest of the step")
            profiler.__exit__(None, None, None)
            os.makedirs(profile_dir, exist_ok=True)
            with open(os.path.join(profile_dir, "sections.json"), "w") as f:
                json.dump({"device": str(device), "steps": [{"step": i + 1, "sections": sections}]}, f, indent=1)
            sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            with open(os.path.join(profile_dir, "summary.txt"), "w") as f:
                f.write(profiler.key_averages().table(sort_by=sort, row_limit=40))
            profiler.export_chrome_trace(os.path.join(profile_dir, "trace.json"))
        else:
            times.append(time.perf_counter() - t0)
        del ref_logits, logits, loss
    sec = min(times)  # best step, as bench/step.ts does
    print(json.dumps({
        "engine": f"pytorch {torch.__version__} eager" + (" (fp32 master weights)" if mixed else "")
        + (f" (LoRA r={lora_hp['r']}, fp32 adapters)" if lora else "") + (" (checkpointing)" if checkpoint else "")
        + (f" on {device}" if device.type != "cpu" else ""),
        "threads": torch.get_num_threads(),
        "seconds": sec,
        "tokens_per_s": ids.numel() / sec,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_logps": first_logps,
        "losses": losses,
        # torch.cuda.max_memory_allocated over the timed steps; None on the CPU (no allocator peak).
        "peak_device_bytes": peak_device,
    }))


if __name__ == "__main__":
    main()
