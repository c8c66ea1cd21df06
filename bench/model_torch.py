"""Eager PyTorch twin of bench/model.ts: the same llama (HF numerics), the same weights and ids
read from the safetensors files the TS bench writes. Prints one JSON line. On cuda, attention is
F.scaled_dot_product_attention (causal), as edpo's on libtorch >= 2.1.
usage: /usr/bin/python3 bench/model_torch.py DIR DTYPE ITERS [THREADS [DEVICE]]"""
import json
import math
import mmap
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}


def load_safetensors(path, device="cpu"):
    # Mapped, not read: each tensor is one copy out of the page cache, straight onto `device` (an 8B
    # file is 16 GB; reading it whole and cloning held it three times). ACCESS_COPY: frombuffer
    # wants a writable buffer; nothing writes to it.
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        dtype = DTYPES[e["dtype"]]
        count = (b - a) // torch.empty((), dtype=dtype).element_size()
        if count == 0:
            out[name] = torch.empty(e["shape"], dtype=dtype, device=device)
            continue
        view = torch.frombuffer(data, dtype=dtype, count=count, offset=8 + n + a)
        out[name] = view.reshape(e["shape"]).to(device, copy=True)
    return out


def rms_norm(x, w, eps):
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(h, w, name, lora):
    """h·Wᵀ, plus edpo's LoRA term where `lora` (adapters, scale) has one for `name` (csrc/models/lora.cc:
    s·B(A(x)) in the adapters' dtype, fp32 over a bf16 base, cast back before the sum)."""
    y = F.linear(h, w[name + ".weight"])
    if lora is not None and name + ".lora_A.weight" in lora[0]:
        a, b = lora[0][name + ".lora_A.weight"], lora[0][name + ".lora_B.weight"]
        y = y + (F.linear(F.linear(h.to(a.dtype), a), b) * lora[1]).to(h.dtype)
    return y


def decoder_layer(cfg, w, l, x, cos, sin, causal, sdpa, lora):
    B, T, H = x.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    eps = cfg["rms_norm_eps"]
    dtype = x.dtype
    p = f"model.layers.{l}."
    h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
    q = linear(h, w, p + "self_attn.q_proj", lora).view(B, T, nh, hd).transpose(1, 2)
    k = linear(h, w, p + "self_attn.k_proj", lora).view(B, T, nkv, hd).transpose(1, 2)
    v = linear(h, w, p + "self_attn.v_proj", lora).view(B, T, nkv, hd).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nh // nkv
    k = k[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
    v = v[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
    if sdpa:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        s = torch.matmul(q, k.transpose(2, 3)) * hd**-0.5
        a = torch.softmax(s.float() + causal, dim=-1).to(dtype)
        a = torch.matmul(a, v)
    a = a.transpose(1, 2).reshape(B, T, H)
    x = x + linear(a, w, p + "self_attn.o_proj", lora)
    h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
    m = F.silu(linear(h, w, p + "mlp.gate_proj", lora)) * linear(h, w, p + "mlp.up_proj", lora)
    return x + linear(m, w, p + "mlp.down_proj", lora)


def forward(cfg, w, ids, lora=None, checkpoint=False):
    """Logits of the llama `w` for `ids`. lora: (adapters by HF name + .lora_A/.lora_B.weight, scale),
    or None for the base. checkpoint: recompute every decoder layer in backward (HF's
    gradient_checkpointing: torch.utils.checkpoint per layer, use_reentrant=False)."""
    B, T = ids.shape
    dev = ids.device
    sdpa = dev.type == "cuda" and hasattr(F, "scaled_dot_product_attention")
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = H // nh
    x = F.embedding(ids, w["model.embed_tokens.weight"])
    dtype = x.dtype
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64, device=dev).float() / hd))
    freqs = torch.arange(T, device=dev).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    causal = torch.full((T, T), torch.finfo(torch.float32).min, device=dev).triu(1)
    recompute = checkpoint and torch.is_grad_enabled()
    for l in range(cfg["num_hidden_layers"]):
        if recompute:
            x = torch.utils.checkpoint.checkpoint(decoder_layer, cfg, w, l, x, cos, sin, causal, sdpa, lora, use_reentrant=False)
        else:
            x = decoder_layer(cfg, w, l, x, cos, sin, causal, sdpa, lora)
    x = rms_norm(x, w["model.norm.weight"], cfg["rms_norm_eps"])
    return F.linear(x, w["lm_head.weight"])


def main():
    d, dtype_name, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count())
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = {k: v.to(device, dtype).requires_grad_(True) for k, v in load_safetensors(os.path.join(d, "model.safetensors")).items()}
    ids = load_safetensors(os.path.join(d, "ids.safetensors"))["input_ids"].to(device)
    times = []
    for i in range(iters + 1):
        t0 = time.perf_counter()
        loss = forward(cfg, w, ids).mean()
        loss.backward()
        for p in w.values():
            p.grad = None
        value = float(loss)  # a device->host read, as bench/model.ts reads its loss: the step is done
        if i > 0:
            times.append(time.perf_counter() - t0)
    sec = min(times)  # best step, as bench/model.ts does
    print(json.dumps({
        "engine": f"pytorch {torch.__version__} eager" + (f" on {device}" if device.type != "cpu" else ""),
        "threads": torch.get_num_threads(),
        "seconds": sec,
        "tokens_per_s": ids.numel() / sec,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": value,
    }))


if __name__ == "__main__":
    main()
