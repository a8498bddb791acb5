"""Bench peer: C[m, n] = A[m, k] @ B[k, n] in PyTorch, the reference for our matmul kernel's GFLOP/s.

stdin:  {"m": 1024, "n": 1024, "k": 1024, "threads": 2, "repeats": 10, "warmup": 2,
         "device": "cpu" | "cuda", "dtype": "fp32" | "bf16" | "fp16"}
stdout: {"gflops", "msPerCall" (median), "msMin", "samplesMs" (every timed call), "torch", "device", "dtype", "threads", "m", "n", "k"}
"""

import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_util import get_int, median, run_peer, setup, time_calls  # noqa: E402


def body(cfg):
    m, n, k = get_int(cfg, "m"), get_int(cfg, "n"), get_int(cfg, "k")
    repeats = get_int(cfg, "repeats", default=10)
    warmup = get_int(cfg, "warmup", default=2, minimum=0)
    device, dtype, info = setup(cfg)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn((m, k), generator=gen, device=device, dtype=torch.float32).to(dtype)
    b = torch.randn((k, n), generator=gen, device=device, dtype=torch.float32).to(dtype)
    c = torch.empty((m, n), device=device, dtype=dtype)
    times = time_calls(lambda: torch.mm(a, b, out=c), device, repeats, warmup)
    ms = median(times)
    return {"gflops": 2.0 * m * n * k / (ms * 1e-3) / 1e9, "msPerCall": ms, "msMin": min(times), "samplesMs": times,
            **info, "m": m, "n": n, "k": k}


if __name__ == "__main__":
    run_peer("matmul", body)
