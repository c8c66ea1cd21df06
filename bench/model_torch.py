"""Eager PyTorch twin of bench/model.ts: the same llama (HF numerics), the same weights and ids
read from the safetensors files the TS bench writes. Prints one JSON line. On cuda, attention is
F.scaled_dot_product_attention (causal), as edpo's on libtorch >= 2.1.
usage: /usr/bin/python3 bench/model_torch.py DIR DTYPE ITERS [THREADS [DEVICE]]"""
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        buf = bytearray(data[8 + n + a : 8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=DTYPES[e["dtype"]]).reshape(e["shape"]).clone()
    return out


def rms_norm(x, w, eps):
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    B, T = ids.shape
    dev = ids.device
    sdpa = dev.type == "cuda" and hasattr(F, "scaled_dot_product_attention")
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    eps = cfg["rms_norm_eps"]
    x = F.embedding(ids, w["model.embed_tokens.weight"])
    dtype = x.dtype
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64, device=dev).float() / hd))
    freqs = torch.arange(T, device=dev).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    causal = torch.full((T, T), torch.finfo(torch.float32).min, device=dev).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = F.linear(h, w[p + "self_attn.q_proj.weight"]).view(B, T, nh, hd).transpose(1, 2)
        k = F.linear(h, w[p + "self_attn.k_proj.weight"]).view(B, T, nkv, hd).transpose(1, 2)
        v = F.linear(h, w[p + "self_attn.v_proj.weight"]).view(B, T, nkv, hd).transpose(1, 2)
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
        x = x + F.linear(a, w[p + "self_attn.o_proj.weight"])
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        m = F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"])
        x = x + F.linear(m, w[p + "mlp.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], eps)
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
