"""Bench peer: LLaMA training steps in PyTorch (forward, backward, grad-norm clip, AdamW), the reference for
our engine's tokens/s. Uses Hugging Face LlamaForCausalLM (+ PEFT LoRA) where transformers (and peft) import,
else bench/peers/llama_ref.py (the model scripts/make-fixtures.py uses); the output's "impl" says which.
On CUDA with dtype bf16/fp16 it trains under autocast with float32 master weights, as our engine does.

stdin:  {"config": {LlamaConfig keys}, "lora": {"r", "alpha", "dropout", "targets"} | null, "batch": 8,
         "seq": 128, "threads": 2, "steps": 5, "warmup": 1, "seed": 0, "adamw": {lr, beta1, ...},
         "device": "cpu" | "cuda", "dtype": "fp32" | "bf16" | "fp16", "impl": "auto" | "llama_ref" | "hf",
         "baseWeights": "fp32" (default: float32 master weights) | "bf16" (LoRA only: the frozen base model
         stored in bf16 with transformers' random init, adapters float32, as one LoRA-tunes a 3B model),
         "attention": "eager" (default) | "sdpa" (Hugging Face models only),
         "compile": false (default) | true (the forward and loss under torch.compile, inductor; its backward
         compiled with it by AOTAutograd; the optimizer eager; warmup defaults to 3 steps, which compile)}
A compile that fails exits 1 with one stderr line "torch.compile failed: ..." (the row says why).
stdout: {"tokensPerSecond", "msPerStep" (median of the timed steps), "msPerStepMin", "msPerStepMean", "samplesMs",
         "peakRssMb",
         "peakGpuMb" (CUDA only), "impl", "trainableParams", "firstLoss", "lastLoss", "torch", "device", ...}
"""

import contextlib
import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from peer_util import ConfigError, get_bool, get_int, log, median, peak_rss_mb, run_peer, setup, sync  # noqa: E402

DEFAULT_ADAMW = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_grad_norm": 1.0}


def body(cfg):
    try:
        config = ref.check_config(cfg.get("config"))
        lora = ref.check_lora(cfg.get("lora"))
        hp = ref.check_adamw(dict(DEFAULT_ADAMW, **(cfg.get("adamw") or {})))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    batch, seq = get_int(cfg, "batch"), get_int(cfg, "seq")
    steps = get_int(cfg, "steps", default=5)
    compiled = get_bool(cfg, "compile", False)
    if compiled and not hasattr(torch, "compile"):
        raise ConfigError(f"config.compile is true but torch {torch.__version__} has no torch.compile (needs >= 2.0)")
    warmup = get_int(cfg, "warmup", default=3 if compiled else 1, minimum=0)
    seed = get_int(cfg, "seed", default=0, minimum=0)
    want = cfg.get("impl", "auto")
    if want not in ("auto", "llama_ref", "hf"):
        raise ConfigError(f"config.impl must be 'auto', 'llama_ref' or 'hf', got {want!r}")
    if seq > config["max_position_embeddings"]:
        raise ConfigError(f"config.seq {seq} exceeds config.config.max_position_embeddings "
                          f"{config['max_position_embeddings']}")
    device, dtype, info = setup(cfg)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    base_weights = cfg.get("baseWeights", "fp32")
    if base_weights not in ("fp32", "bf16"):
        raise ConfigError(f"config.baseWeights must be 'fp32' or 'bf16', got {base_weights!r}")
    if base_weights == "bf16" and (lora is None or want == "llama_ref"):
        raise ConfigError("config.baseWeights 'bf16' needs config.lora and the Hugging Face model (impl 'auto' or 'hf')")
    attention = cfg.get("attention", "eager")
    if attention not in ("eager", "sdpa"):
        raise ConfigError(f"config.attention must be 'eager' or 'sdpa', got {attention!r}")

    # Master weights stay float32; a lower dtype means autocast, not bf16 parameters (unless baseWeights
    # is bf16: then the frozen base is bf16 and only the float32 adapters are trained).
    params = ref.init_params(config, gen, device=device) if base_weights == "fp32" else None
    lora_params = ref.init_lora(config, lora, gen, device=device) if lora else None
    built = None if want == "llama_ref" else ref.build_hf(
        config, lora, params, lora_params, device=device, attention=attention,
        dtype=torch.bfloat16 if base_weights == "bf16" else torch.float32)
    if built is None and want == "hf":
        raise ConfigError("config.impl is 'hf' but transformers" + (" or peft" if lora else "") + " does not import")
    if built is not None:
        model, trainable = built
        params = None  # the model holds its own copies: do not count these in the peak
        model.train()
        transformers, peft = ref.hf_available()
        impl = (f"transformers {transformers.__version__} LlamaForCausalLM ({attention} attention"
                + (", bf16 base weights)" if base_weights == "bf16" else ")") + (f" + peft {peft.__version__}" if lora else ""))

        def logits_of(tokens):
            return model(input_ids=tokens).logits
    else:
        impl = "llama_ref (plain torch, bench/peers/llama_ref.py)"
        base = {n: t.requires_grad_(lora is None) for n, t in params.items()}
        adapters = {n: t.requires_grad_(True) for n, t in (lora_params or {}).items()}
        trainable = adapters if lora else base

        def logits_of(tokens):
            return ref.forward(base, config, tokens, adapters if lora else None, lora, training=True)

    tensors = list(trainable.values())
    optimizer = ref.make_adamw(tensors, hp)
    tokens = torch.randint(0, config["vocab_size"], (batch, seq), generator=gen).to(device)
    targets = torch.roll(tokens, -1, dims=1)
    targets[:, -1] = ref.IGNORE_INDEX
    if dtype == torch.float32:
        autocast = contextlib.nullcontext
    else:
        def autocast():
            return torch.autocast(device_type=device.type, dtype=dtype)

    def forward_loss(tokens, targets):
        with autocast():
            logits = logits_of(tokens)
        return ref.loss_fn(logits, targets)

    if compiled:
        forward_loss = torch.compile(forward_loss)
        impl += " + torch.compile (inductor)"

    def loss_closure():
        return forward_loss(tokens, targets)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, times = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        try:
            loss, _ = ref.train_step(loss_closure, tensors, optimizer, hp)
        except Exception as err:  # noqa: BLE001 (a compiler failure can be any type)
            if not compiled:
                raise
            first = (str(err).strip().splitlines() or [""])[0][:300]
            log("train_step", f"torch.compile failed: {type(err).__name__}: {first}")
            sys.exit(1)
        sync(device)
        elapsed = (time.perf_counter() - start) * 1e3
        losses.append(loss.item())
        if i >= warmup:
            times.append(elapsed)
    ms = median(times)  # robust to a busy machine; the mean is reported beside it
    log("train_step", f"{impl}: {len(times)} steps, median {ms:.1f} ms/step, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    out = {"tokensPerSecond": batch * seq / (ms * 1e-3), "msPerStep": ms, "msPerStepMin": min(times),
           "msPerStepMean": sum(times) / len(times), "samplesMs": times, "compiled": compiled,
           "peakRssMb": peak_rss_mb(), "impl": impl, "trainableParams": sum(t.numel() for t in tensors),
           "firstLoss": losses[0], "lastLoss": losses[-1], **info, "batch": batch, "seq": seq, "steps": steps}
    if device.type == "cuda":
        out["peakGpuMb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


if __name__ == "__main__":
    run_peer("train_step", body)
