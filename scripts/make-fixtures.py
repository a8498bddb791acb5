#!/usr/bin/env python3
"""Writes the golden files in test/fixtures/ that the engine's parity tests compare against.

Usage (from the repository root; CPU, float32, one thread, a fixed seed):
    /usr/bin/python3 scripts/make-fixtures.py [--out test/fixtures] [--no-hf]
The output is reproducible bit for bit on one machine; another BLAS (reference BLAS, OpenBLAS, MKL) sums in
another order, so its files differ in the last bits (about 1e-6 in the logits) while every test still passes.

Needs PyTorch (1.13 or later). The reference is Hugging Face's LlamaForCausalLM (eager attention) and PEFT's
LoRA when `transformers` and `peft` import (unless --no-hf); otherwise bench/peers/llama_ref.py, a plain-torch
implementation of the same semantics. Either way llama_ref is also run in float64 and the script stops if the
float32 reference disagrees with it (logits beyond 1e-4), and when Hugging Face is used, if llama_ref and
Hugging Face disagree.

Files written:
  llama-full.safetensors   full training, grouped-query attention (4 heads, 2 kv heads), untied lm_head
  llama-tied.safetensors   the same with tie_word_embeddings (no lm_head.weight)
  llama-lora.safetensors   LoRA r=4, alpha=8 on q,k,v,o,gate,up,down over a frozen base
  dtypes.safetensors       one tensor per dtype torch writes, and torch's own f32 -> bf16/f16 conversions
Each llama file holds, with __metadata__ keys config, lora, adamw, generator (JSON strings):
  every base parameter by its Hugging Face name (norm weights drawn around 1, not exactly 1);
  LoRA tensors by PEFT's names (base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out, r]),
    B drawn small and non-zero so that A's gradients are non-zero; dropout 0;
  input.tokens I32 [2, 12]; input.targets I32 [2, 12] (targets[b, t] is what logits[b, t] predicts; -100 ignored);
  out.logits F32 [2, 12, V]; out.loss F32 [1]; grad.<name> F32 for every trainable tensor (before clipping);
  out.losses F32 [10]: the loss before each of 10 AdamW steps on the same batch
    (torch.optim.AdamW, decoupled weight decay on every trainable tensor, after clip_grad_norm_);
  out.grad_norms F32 [10]: the global gradient norm before clipping at each of those steps.
"""

import argparse
import json
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
import llama_ref as ref  # noqa: E402
from peer_util import blas_in_use, limit_blas_threads  # noqa: E402
from safetensors_torch import ST_OF_TORCH as ST_DTYPES, save_safetensors  # noqa: E402

SEED = 20240611
BATCH, SEQ = 2, 12
ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_grad_norm": 1.0, "steps": 10}
BASE_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 72,  # not a power of two, on purpose: kernels must handle ragged tiles
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 32,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": list(ref.ALL_TARGETS)}
WEIGHT_STD = 0.15  # larger than HF's 0.02 so attention and the MLP are far from linear in these tiny models
NORM_JITTER = 0.1
LORA_B_STD = 0.05
LOGITS_TOL = 1e-4

def make_batch(gen, vocab):
    tokens = torch.randint(0, vocab, (BATCH, SEQ), generator=gen)
    targets = torch.full((BATCH, SEQ), ref.IGNORE_INDEX, dtype=torch.int64)
    targets[:, :-1] = tokens[:, 1:]
    targets[0, :4] = ref.IGNORE_INDEX  # a masked prompt
    targets[1, 5] = ref.IGNORE_INDEX  # a hole in the middle
    return tokens, targets


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def run_reference(cfg, lora, params, lora_params, tokens, targets, use_hf):
    """Step 0's logits, loss and grads, then the losses of ADAMW['steps'] steps. Returns a dict and the
    name of the implementation that produced it."""
    built = ref.build_hf(cfg, lora, params, lora_params) if use_hf else None
    if built is not None:
        model, trainable = built
        transformers, peft = ref.hf_available()
        impl = f"transformers {transformers.__version__}" + (f" + peft {peft.__version__}" if lora else "")

        def logits_fn():
            return model(input_ids=tokens).logits
    else:
        impl = "bench/peers/llama_ref.py (plain torch)"
        base = {n: t.clone().requires_grad_(lora is None) for n, t in params.items()}
        adapters = {n: t.clone().requires_grad_(True) for n, t in (lora_params or {}).items()}
        trainable = adapters if lora else base

        def logits_fn():
            return ref.forward(base, cfg, tokens, adapters if lora else None, lora, training=True)

    names = list(trainable)
    tensors = [trainable[n] for n in names]
    hp = ref.check_adamw({k: v for k, v in ADAMW.items() if k != "steps"})
    opt = ref.make_adamw(tensors, hp)
    out = {"losses": [], "grad_norms": []}
    for step in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        logits = logits_fn()
        loss = ref.loss_fn(logits, targets)
        loss.backward()
        if step == 0:
            out["logits"] = logits.detach().clone()
            out["loss"] = loss.detach().clone()
            out["grads"] = {n: t.grad.detach().clone() for n, t in zip(names, tensors)}
        norm = torch.nn.utils.clip_grad_norm_(tensors, hp["max_grad_norm"])
        opt.step()
        out["losses"].append(loss.item())
        out["grad_norms"].append(norm.item())
    return out, impl


def float64_check(cfg, lora, params, lora_params, tokens, targets, result, label):
    """llama_ref in float64 from the same values: logits, loss and gradients must agree with the float32 run."""
    base = {n: t.double().requires_grad_(lora is None) for n, t in params.items()}
    adapters = {n: t.double().requires_grad_(True) for n, t in (lora_params or {}).items()}
    logits = ref.forward(base, cfg, tokens, adapters if lora else None, lora)
    loss = ref.loss_fn(logits, targets)
    loss.backward()
    report = {"logits": max_abs(logits, result["logits"]), "loss": abs(loss.item() - result["loss"].item())}
    trainable = adapters if lora else base
    worst_grad = 0.0
    for n, g in result["grads"].items():
        g64 = trainable[n].grad
        worst_grad = max(worst_grad, max_abs(g64, g) / (g64.abs().max().item() + 1e-12))
    report["grad_rel"] = worst_grad
    if report["logits"] > LOGITS_TOL or report["loss"] > LOGITS_TOL or worst_grad > 1e-3:
        raise SystemExit(f"{label}: float32 reference disagrees with float64: {report}")
    return report


def hf_cross_check(cfg, lora, params, lora_params, tokens, result, label):
    """When Hugging Face made the reference, llama_ref must agree with it (that is what the engine mirrors)."""
    with torch.no_grad():
        ours = ref.forward(params, cfg, tokens, lora_params, lora)
    diff = max_abs(ours, result["logits"])
    if diff > LOGITS_TOL:
        raise SystemExit(f"{label}: llama_ref disagrees with Hugging Face: max |logits diff| {diff:.3g}")
    return diff


def make_llama(out_dir, name, cfg, lora, use_hf):
    cfg = ref.check_config(cfg)
    lora = ref.check_lora(lora)
    gen = torch.Generator().manual_seed(SEED)
    params = ref.init_params(cfg, gen, norm_jitter=NORM_JITTER, std=WEIGHT_STD)
    lora_params = ref.init_lora(cfg, lora, gen, b_std=LORA_B_STD) if lora else None
    tokens, targets = make_batch(gen, cfg["vocab_size"])
    result, impl = run_reference(cfg, lora, params, lora_params, tokens, targets, use_hf)
    check = float64_check(cfg, lora, params, lora_params, tokens, targets, result, name)
    if impl.startswith("transformers"):
        check["llama_ref_vs_hf_logits"] = hf_cross_check(cfg, lora, params, lora_params, tokens, result, name)

    tensors = {}
    for n, t in params.items():
        tensors[n] = t
    for n, t in (lora_params or {}).items():
        tensors[n] = t
    tensors["input.tokens"] = tokens.to(torch.int32)
    tensors["input.targets"] = targets.to(torch.int32)
    tensors["out.logits"] = result["logits"].float()
    tensors["out.loss"] = result["loss"].float().reshape(1)
    for n, g in result["grads"].items():
        tensors["grad." + n] = g.float()
    tensors["out.losses"] = torch.tensor(result["losses"], dtype=torch.float32)
    tensors["out.grad_norms"] = torch.tensor(result["grad_norms"], dtype=torch.float32)
    metadata = {
        "config": json.dumps({k: cfg[k] for k in ref.CONFIG_KEYS}),
        "lora": json.dumps(lora),
        "adamw": json.dumps(ADAMW),
        "generator": json.dumps({
            "script": "scripts/make-fixtures.py",
            "reference": impl,
            "torch": torch.__version__,
            "blas": blas_in_use(),
            "seed": SEED,
            "dtype": "float32",
            "device": "cpu",
            "weight_std": WEIGHT_STD,
            "norm_jitter": NORM_JITTER,
            "lora_b_std": LORA_B_STD if lora else None,
            "clip": "torch.nn.utils.clip_grad_norm_: grads *= min(1, max_norm / (norm + 1e-6))",
            "adamw_semantics": "torch.optim.AdamW, one parameter group: p *= 1 - lr * weight_decay on every "
                               "trainable tensor (norms and embeddings included), then m, v with bias correction, "
                               "p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)",
            "float64_check": check,
        }),
    }
    path = os.path.join(out_dir, name)
    size = save_safetensors(path, tensors, metadata)
    print(f"{path}: {size} bytes, {impl}, loss {result['loss'].item():.6f} -> {result['losses'][-1]:.6f}, "
          f"float64 check {check}", file=sys.stderr)
    if size > 200 * 1024:
        raise SystemExit(f"{path} is {size} bytes, over the 200 KB budget for fixtures")


def make_dtypes(out_dir):
    """Every dtype torch can write, plus torch's own float32 -> bf16 / f16 roundings of awkward values, so
    the TypeScript reader and converters are checked against torch rather than against themselves."""
    gen = torch.Generator().manual_seed(SEED)
    special = [
        0.0, -0.0, 1.0, -1.0, 1 / 3, -2.5, 65504.0, 65519.0, 65520.0, 1e6, 3.0e38, -3.0e38,
        1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11,  # bf16 / f16 ties
        2 ** -14, 2 ** -15, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1.5 * 2 ** -24, 2.5 * 2 ** -24, 2 ** -26,  # f16 subnormals
        1e-40, -1e-45, 2 ** -126, 2 ** -133,  # f32 subnormals (bf16 keeps them)
        float("inf"), float("-inf"), float("nan"),
    ]
    f32 = torch.cat([torch.tensor(special, dtype=torch.float32), torch.randn(64, generator=gen) * 100])
    bf16 = f32.to(torch.bfloat16)
    f16 = f32.to(torch.float16)
    tensors = {
        "f32": f32,
        "f32.bf16": bf16,
        "f32.f16": f16,
        "f32.bf16.f32": bf16.to(torch.float32),
        "f32.f16.f32": f16.to(torch.float32),
        "f64": torch.tensor([[0.1, -2.0, 1e300], [5e-324, float("inf"), -0.0]], dtype=torch.float64),
        "i64": torch.tensor([0, -1, 2 ** 40 + 3, -(2 ** 62), 2 ** 63 - 1], dtype=torch.int64),
        "i32": torch.tensor([[0, -1], [2 ** 31 - 1, -(2 ** 31)], [7, 8]], dtype=torch.int32),
        "i16": torch.tensor([0, -1, 32767, -32768], dtype=torch.int16),
        "i8": torch.tensor([0, -1, 127, -128], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, False, True, True], dtype=torch.bool),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
    }
    metadata = {"generator": json.dumps({"script": "scripts/make-fixtures.py", "torch": torch.__version__, "seed": SEED})}
    path = os.path.join(out_dir, "dtypes.safetensors")
    size = save_safetensors(path, tensors, metadata)
    print(f"{path}: {size} bytes", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "test", "fixtures")))
    parser.add_argument("--no-hf", action="store_true", help="use llama_ref even where transformers imports")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # one thread: reductions in a fixed order
    limit_blas_threads(1)
    use_hf = not args.no_hf
    make_llama(args.out, "llama-full.safetensors", BASE_CONFIG, None, use_hf)
    make_llama(args.out, "llama-tied.safetensors", dict(BASE_CONFIG, tie_word_embeddings=True), None, use_hf)
    make_llama(args.out, "llama-lora.safetensors", BASE_CONFIG, LORA, use_hf)
    make_dtypes(args.out)


if __name__ == "__main__":
    main()
