"""Bench peer: the bandwidth-bound ops of a LLaMA training step in PyTorch (eager), the reference for the
GB/s rows of bench:gpu (kernels.timeOp): a device-to-device copy, the residual add, RMSNorm forward and
backward, RoPE forward and backward, SwiGLU forward and backward, cross-entropy (losses and dlogits),
an AdamW step and the embedding gather and its backward, on the shapes our rows take. The caller turns the
time into GB/s with our op's byte count, so both rows divide the same bytes.

stdin:  {"op": "copy" | "add" | "rmsnormForward" | "rmsnormBackward" | "ropeForward" | "ropeBackward" |
         "swigluForward" | "swigluBackward" | "crossEntropy" | "adamw" | "embeddingForward" |
         "embeddingBackward", and its shape as kernels.timeOp takes it: "n" (copy, add, swiglu, adamw),
         "n", "c" (rmsnorm), "b", "t", "h", "d" (rope), "n", "v" (crossEntropy), "n", "c", "v" (embedding);
         "repeats": 10, "calls": 10, "warmup": 2, "threads": 2, "device": "cpu" | "cuda", "dtype": "fp32"};
        or {"ops": [{"op": ..., shape}, ...], and the common fields}: every op in one process (one torch import)
stdout: {"msPerCall" (median over repeats of a batch of calls, per call), "msMin", "impl", "op", "torch",
         "device", "dtype", "threads"}; for "ops", {"results": [one such object per op, in order]}
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_util import ConfigError, get_int, median, run_peer, setup, time_calls  # noqa: E402

SHAPES = {
    "copy": ("n",), "add": ("n",), "swigluForward": ("n",), "swigluBackward": ("n",), "adamw": ("n",),
    "rmsnormForward": ("n", "c"), "rmsnormBackward": ("n", "c"),
    "ropeForward": ("b", "t", "h", "d"), "ropeBackward": ("b", "t", "h", "d"),
    "crossEntropy": ("n", "v"),
    "embeddingForward": ("n", "c", "v"), "embeddingBackward": ("n", "c", "v"),
}


def rms_norm(x, w, eps):
    if hasattr(F, "rms_norm"):  # PyTorch >= 2.4
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(t, d, device):
    inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    f = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv)
    emb = torch.cat((f, f), dim=-1)  # [t, d]: dim i pairs with i + d/2 (rotate_half)
    return emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def build(op, s, device, dtype, gen):
    """Returns (fn, impl): one call of the op on tensors made here."""

    def randn(*shape, scale=1.0, grad=False):
        x = (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * scale).to(dtype)
        return x.requires_grad_(grad)

    def indices(count, vocab, ignore):
        i = torch.arange(count, device=device, dtype=torch.int64)
        tok = (i * 7919) % vocab
        return torch.where(i % 5 == 3, torch.full_like(tok, -100), tok) if ignore else tok

    if op == "copy":
        src, dst = randn(s["n"]), torch.empty(s["n"], device=device, dtype=dtype)
        return (lambda: dst.copy_(src)), "Tensor.copy_ (device to device)"
    if op == "add":
        a, b, out = randn(s["n"]), randn(s["n"]), torch.empty(s["n"], device=device, dtype=dtype)
        return (lambda: torch.add(a, b, out=out)), "torch.add(out=)"
    if op in ("rmsnormForward", "rmsnormBackward"):
        impl = "F.rms_norm" if hasattr(F, "rms_norm") else "x * rsqrt(mean(x^2) + eps) * w"
        x, w = randn(s["n"], s["c"], grad=True), randn(s["c"], grad=True)
        if op == "rmsnormForward":
            def fwd():
                with torch.no_grad():
                    rms_norm(x, w, 1e-5)
            return fwd, impl
        y, dy = rms_norm(x, w, 1e-5), randn(s["n"], s["c"])
        return (lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True)), f"autograd of {impl}"
    if op in ("ropeForward", "ropeBackward"):
        cos, sin = rope_tables(s["t"], s["d"], device)
        x = randn(s["b"], s["t"], s["h"], s["d"], grad=True)
        impl = "x * cos + rotate_half(x) * sin (transformers' apply_rotary_pos_emb)"
        if op == "ropeForward":
            def fwd():
                with torch.no_grad():
                    x * cos + rotate_half(x) * sin
            return fwd, impl
        y, dy = x * cos + rotate_half(x) * sin, randn(s["b"], s["t"], s["h"], s["d"])
        return (lambda: torch.autograd.grad(y, x, dy, retain_graph=True)), f"autograd of {impl}"
    if op in ("swigluForward", "swigluBackward"):
        g, u = randn(s["n"], grad=True), randn(s["n"], grad=True)
        if op == "swigluForward":
            def fwd():
                with torch.no_grad():
                    F.silu(g) * u
            return fwd, "F.silu(gate) * up"
        y, dy = F.silu(g) * u, randn(s["n"])
        return (lambda: torch.autograd.grad(y, (g, u), dy, retain_graph=True)), "autograd of F.silu(gate) * up"
    if op == "crossEntropy":
        logits = randn(s["n"], s["v"], scale=3.0, grad=True)
        targets = indices(s["n"], s["v"], True)

        def ce():
            losses = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
            return torch.autograd.grad(losses.sum() / s["n"], logits)
        return ce, "F.cross_entropy(reduction='none') forward + backward (losses and dlogits, as ours)"
    if op == "adamw":
        p = torch.nn.Parameter(randn(s["n"]))
        p.grad = randn(s["n"])
        opt, impl = None, None
        for kind in ("fused", "foreach"):
            try:
                opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.01, **{kind: True})
                opt.step()  # some builds refuse the option only at the first step
                impl = f"torch.optim.AdamW({kind}=True)"
                break
            except (TypeError, RuntimeError, ValueError):
                opt = None
        if opt is None:
            opt, impl = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.01), "torch.optim.AdamW"
        return opt.step, impl
    if op in ("embeddingForward", "embeddingBackward"):
        wte = randn(s["v"], s["c"], grad=True)
        tokens = indices(s["n"], s["v"], False)
        if op == "embeddingForward":
            def fwd():
                with torch.no_grad():
                    F.embedding(tokens, wte)
            return fwd, "F.embedding"
        y, dy = F.embedding(tokens, wte), randn(s["n"], s["c"])
        return (lambda: torch.autograd.grad(y, wte, dy, retain_graph=True)), "autograd of F.embedding (a dense [v, c] gradient)"
    raise ConfigError(f"config.op must be one of {', '.join(SHAPES)}, got {op!r}")


def body(cfg):
    if "ops" in cfg:
        ops = cfg["ops"]
        if not isinstance(ops, list) or not ops or not all(isinstance(o, dict) for o in ops):
            raise ConfigError(f"config.ops must be a non-empty list of objects, got {ops!r}")
        common = {k: v for k, v in cfg.items() if k != "ops"}
        return {"results": [one({**common, **o}) for o in ops]}
    return one(cfg)


def one(cfg):
    op = cfg.get("op")
    if op not in SHAPES:
        raise ConfigError(f"config.op must be one of {', '.join(SHAPES)}, got {op!r}")
    shape = {k: get_int(cfg, k) for k in SHAPES[op]}
    if op.startswith("rope") and shape["d"] % 2:
        raise ConfigError(f"config.d must be even, got {shape['d']}")
    repeats = get_int(cfg, "repeats", default=10)
    calls = get_int(cfg, "calls", default=10)
    warmup = get_int(cfg, "warmup", default=2, minimum=0)
    device, dtype, info = setup(cfg)
    gen = torch.Generator(device=device).manual_seed(0)
    fn, impl = build(op, shape, device, dtype, gen)

    def batch():
        for _ in range(calls):
            fn()

    times = [t / calls for t in time_calls(batch, device, repeats, warmup)]
    return {"msPerCall": median(times), "msMin": min(times), "impl": impl, "op": op, **shape, "calls": calls, **info}


if __name__ == "__main__":
    run_peer("bandwidth", body)
