"""Bench peer: grouped-query attention forward and forward+backward in PyTorch, the reference for our
attention kernel. Uses torch.nn.functional.scaled_dot_product_attention where it exists (PyTorch >= 2.0), causal,
with grouped-query attention by enable_gqa where that exists (PyTorch >= 2.5), else by repeating the key-value
heads; else the explicit softmax(Q K^T / sqrt(d)) V of bench/peers/llama_ref.py. The output's "impl" says which.

stdin:  {"batch": 2, "heads": 8, "kvHeads": 2, "seq": 256, "headDim": 64, "threads": 2, "causal": true,
         "repeats": 10, "warmup": 2, "device": "cpu" | "cuda", "dtype": "fp32" | "bf16" | "fp16"}
stdout: {"msFwd", "msBwd" (the backward alone, from a kept graph), "msFwdBwd" (medians), "samplesFwdBwdMs" (every
         timed forward+backward), "impl", "torch",
         "device", "dtype", "threads"}
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from peer_util import ConfigError, get_bool, get_int, median, run_peer, setup, time_calls  # noqa: E402

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def sdpa_has_gqa():
    """Whether this torch's SDPA takes enable_gqa (query heads sharing key-value heads without a copy)."""
    if not HAS_SDPA:
        return False
    q, kv = torch.zeros((1, 2, 1, 8)), torch.zeros((1, 1, 1, 8))
    try:
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


def body(cfg):
    batch, heads, seq, head_dim = get_int(cfg, "batch"), get_int(cfg, "heads"), get_int(cfg, "seq"), get_int(cfg, "headDim")
    kv_heads = get_int(cfg, "kvHeads", default=heads)
    if heads % kv_heads != 0:
        raise ConfigError(f"config.heads {heads} must be a multiple of config.kvHeads {kv_heads}")
    causal = get_bool(cfg, "causal", True)
    repeats = get_int(cfg, "repeats", default=10)
    warmup = get_int(cfg, "warmup", default=2, minimum=0)
    device, dtype, info = setup(cfg)
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(h):
        return torch.randn((batch, h, seq, head_dim), generator=gen, device=device).to(dtype).requires_grad_(True)

    q, k, v = rand(heads), rand(kv_heads), rand(kv_heads)
    dout = torch.randn((batch, heads, seq, head_dim), generator=gen, device=device).to(dtype)
    n_rep = heads // kv_heads
    gqa = n_rep > 1 and sdpa_has_gqa()

    def attend():
        if gqa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        kk, vv = ref.repeat_kv(k, n_rep), ref.repeat_kv(v, n_rep)
        if HAS_SDPA:
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=causal)
        return ref.attention(q, kk, vv, 0, causal)

    def fwd():
        with torch.no_grad():
            attend()

    def fwd_bwd():
        q.grad = k.grad = v.grad = None
        attend().backward(dout)

    ms_fwd = median(time_calls(fwd, device, repeats, warmup))
    fwd_bwd_times = time_calls(fwd_bwd, device, repeats, warmup)
    ms_fwd_bwd = median(fwd_bwd_times)
    out = attend()

    def bwd():
        q.grad = k.grad = v.grad = None
        out.backward(dout, retain_graph=True)

    ms_bwd = median(time_calls(bwd, device, repeats, warmup))
    if gqa:
        impl = "sdpa (enable_gqa)"
    elif HAS_SDPA:
        impl = "sdpa" + (" (key-value heads repeated)" if n_rep > 1 else "")
    else:
        impl = "explicit softmax(QK^T/sqrt(d))V (no scaled_dot_product_attention in this torch)"
    return {"msFwd": ms_fwd, "msBwd": ms_bwd, "msFwdBwd": ms_fwd_bwd, "samplesFwdBwdMs": fwd_bwd_times, "impl": impl, **info,
            "batch": batch, "heads": heads, "kvHeads": kv_heads, "seq": seq, "headDim": head_dim, "causal": causal}


if __name__ == "__main__":
    run_peer("attention", body)
