#!/usr/bin/env python3
"""Writes test/fixtures/hf/: files made by Hugging Face transformers and PEFT themselves, for
test/model/transformers-parity.test.ts (issue 6: parity with the reference implementations).

Usage (from the repository root, with a python3 that has torch, transformers and peft):
    python3 scripts/make-hf-fixtures.py --out test/fixtures/hf
    python3 scripts/make-hf-fixtures.py --out OUT/hf --ours OUT/ours     # also: transformers loads our files
CPU, float32, eager attention, one thread, a fixed seed; a few seconds. It never touches the network
(HF_HUB_OFFLINE=1). Exit status: 0 done; 1 a check failed (what was written is kept, to look at);
3 torch, transformers or peft does not import (nothing is written).

For each of two models (GQA: hidden 64, 2 layers, 4 heads, 2 key-value heads, intermediate 96, vocab 32,
64 positions, rms_norm_eps 1e-5, rope_theta 10000), `gqa-untied` and `gqa-tied` (tie_word_embeddings):
  a random LlamaForCausalLM (matrices normal(0, 0.15), norm weights around 1, drawn from a torch.Generator
  in sorted name order), saved with save_pretrained(OUT/<name>/model, safe_serialization=True);
  a PEFT LoRA on it (r 4, lora_alpha 8, dropout 0, q,k,v,o,gate,up,down; A uniform(+-1/sqrt(in)), B
  normal(0, 0.05), so that A's gradients are non-zero), saved with save_pretrained(OUT/<name>/adapter)
  (less the blank README.md model card PEFT adds);
  OUT/<name>/expected.safetensors (written by hand, the format of scripts/make-fixtures.py):
    input.tokens  I32 [2, 12]
    input.targets I32 [2, 12]   targets[b, t] is the token logits[b, t] predicts (already shifted), -100
                                ignored (a masked prompt, a hole, and the last position, which has no next
                                token); Hugging Face's `labels` are these shifted right by one
    out.base_logits F32 [2, 12, 32]  the model without the adapter
    out.logits      F32 [2, 12, 32]  the PEFT model (adapter applied)
    out.loss        F32 [1]          mean cross-entropy of out.logits over targets != -100, computed here
                                     from the logits; the script checks that the model's own loss from
                                     labels (its internal shift) is the same number
    grad.<name>     F32              d out.loss / d every LoRA tensor, under PEFT's saved names
                                     (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight:
                                     named_parameters()' `.default` adapter name dropped)
  with __metadata__ config (our LlamaConfig keys), lora ({r, alpha, dropout, targets}) and generator (JSON).
Before writing, the script reloads both folders with from_pretrained / PeftModel.from_pretrained and checks
they reproduce the logits, and checks that the gradient names are exactly the tensors PEFT saved.

With --ours DIR2 (folders our writers made: npx tsx scripts/write-ours-for-hf.ts --out DIR2): for every
DIR2/<name>/model (and DIR2/<name>/adapter when present), loads it with LlamaForCausalLM.from_pretrained
(+ PeftModel.from_pretrained), refuses missing or unexpected weights, checks PEFT took every LoRA tensor,
and writes OUT/<name>-ours-logits.safetensors: input.tokens (from DIR2/<name>/expected.safetensors),
out.base_logits (the model alone), out.logits (with the adapter, when there is one), and tok.ids I32 when
transformers' AutoTokenizer loads the folder's tokenizer (the ids of TOKENIZER_TEXT). When DIR2's
expected.safetensors holds out.logits (the plain-torch reference for those weights), transformers' logits
must match it within 1e-4, else the exit status is 1.
"""

import argparse
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # PEFT saves target_modules from a set: a fixed hash seed makes adapter_config.json the same every run.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                     ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240612
BATCH, SEQ = 2, 12
IGNORE_INDEX = -100
WEIGHT_STD = 0.15
NORM_JITTER = 0.1
LORA_B_STD = 0.05
LOGITS_TOL = 1e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": TARGETS}
CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings")
BASE_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 32,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
MODELS = [("gqa-untied", BASE_CONFIG), ("gqa-tied", dict(BASE_CONFIG, tie_word_embeddings=True))]
# Puzzle-vocabulary text for the tokenizer check of --ours (our tokenizer.json: one token per character).
TOKENIZER_TEXT = "12+3*4=24"
SIZE_BUDGET = 1024 * 1024  # everything under --out for the fixtures, in bytes


def fail_missing(err):
    print(f"make-hf-fixtures.py: needs torch, transformers and peft in this python ({sys.executable}): "
          f"{type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(3)


try:
    import torch
    import torch.nn.functional as F
    import transformers
    import peft
except Exception as _err:  # ImportError, or a broken install raising something else
    fail_missing(_err)

from safetensors_torch import load_safetensors, save_safetensors  # noqa: E402  (beside this script)


class CheckFailed(Exception):
    pass


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---- building and running the models -------------------------------------------------------------------

def hf_config(cfg):
    c = transformers.LlamaConfig(**{k: cfg[k] for k in CONFIG_KEYS}, attention_bias=False, mlp_bias=False,
                                 hidden_act="silu", initializer_range=0.02, attn_implementation="eager")
    # Older transformers keep an unknown attn_implementation as a plain attribute: set the private one too.
    if getattr(c, "_attn_implementation", None) != "eager":
        c._attn_implementation = "eager"
    for k in CONFIG_KEYS:
        got = getattr(c, k, None)
        if k == "rope_theta" and got is None:  # transformers 5 keeps it in rope_parameters
            got = (getattr(c, "rope_parameters", None) or {}).get("rope_theta")
        if got != cfg[k]:
            raise CheckFailed(f"LlamaConfig did not take {k} = {cfg[k]!r} (it has {got!r})")
    return c


def eager(model):
    """Eager attention on the model's config (softmax in float32, the reference semantics)."""
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl not in (None, "eager"):
        raise CheckFailed(f"the model runs {impl!r} attention, not eager")
    return model


def random_init(model, cfg, gen):
    """Matrices normal(0, WEIGHT_STD), norm weights 1 + NORM_JITTER * normal, in sorted name order
    (independent of the order transformers creates parameters in); tied weights are drawn once."""
    params = dict(model.named_parameters())  # shared (tied) parameters appear once
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_JITTER * torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=gen))
            else:
                raise CheckFailed(f"unexpected parameter {name} {tuple(p.shape)} in LlamaForCausalLM")
    if cfg["tie_word_embeddings"] and model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise CheckFailed("tie_word_embeddings is set but lm_head.weight is not embed_tokens.weight")


def make_batch(gen, vocab):
    tokens = torch.randint(0, vocab, (BATCH, SEQ), generator=gen)
    targets = torch.full((BATCH, SEQ), IGNORE_INDEX, dtype=torch.int64)
    targets[:, :-1] = tokens[:, 1:]
    targets[0, :4] = IGNORE_INDEX  # a masked prompt
    targets[1, 5] = IGNORE_INDEX  # a hole in the middle
    return tokens, targets


def loss_of(logits, targets):
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v).float(), targets.reshape(-1).long(), ignore_index=IGNORE_INDEX)


def logits_of(model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens).logits.float()


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def peft_name(name):
    """named_parameters()' `...q_proj.lora_A.default.weight` -> the saved `...q_proj.lora_A.weight`."""
    for which in ("lora_A", "lora_B"):
        name = name.replace(f".{which}.default.", f".{which}.")
    return name


def lora_parameters(peft_model):
    """{saved PEFT name: parameter} of every LoRA tensor of the adapter `default`."""
    out = {}
    for n, p in peft_model.named_parameters():
        if ".lora_A." in n or ".lora_B." in n:
            if ".default." not in n:
                raise CheckFailed(f"LoRA parameter {n} is not under the adapter name 'default'")
            out[peft_name(n)] = p
    return out


def load_model(path):
    """from_pretrained, float32, eager; refuses missing or unexpected weights (tied lm_head aside)."""
    model, info = transformers.LlamaForCausalLM.from_pretrained(path, attn_implementation="eager",
                                                                output_loading_info=True)
    model = eager(model.float().eval())
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    missing = [k for k in info.get("missing_keys", []) if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]
    unexpected = [k for k in info.get("unexpected_keys", []) if "rotary_emb" not in k]
    mismatched = list(info.get("mismatched_keys", []))
    errors = list(info.get("error_msgs", []))
    if missing or unexpected or mismatched or errors:
        raise CheckFailed(f"{path}: transformers did not load it cleanly: missing {missing}, unexpected {unexpected}, "
                          f"mismatched {mismatched}, errors {errors}")
    return model


def load_adapter(model, path):
    """PeftModel.from_pretrained, then every LoRA tensor of the model must equal the file's."""
    pm = peft.PeftModel.from_pretrained(model, path).eval()
    saved, _ = load_safetensors(os.path.join(path, "adapter_model.safetensors"))
    params = lora_parameters(pm)
    if sorted(params) != sorted(saved):
        only_model = sorted(set(params) - set(saved))[:3]
        only_file = sorted(set(saved) - set(params))[:3]
        raise CheckFailed(f"{path}: PEFT's LoRA tensors and the file's differ: model only {only_model}, file only {only_file}")
    for name, p in params.items():
        if not torch.equal(p.detach().float().cpu(), saved[name].float()):
            raise CheckFailed(f"{path}: PEFT did not take tensor {name} (values differ after loading)")
    return pm


def llama_ref_logits(params, cfg, tokens, lora_params=None):
    """bench/peers/llama_ref.py (what the engine mirrors) on the same weights, for the log."""
    sys.path.insert(0, os.path.join(HERE, "..", "bench", "peers"))
    import llama_ref as ref  # noqa: E402
    with torch.no_grad():
        return ref.forward(params, ref.check_config(cfg), tokens, lora_params, ref.check_lora(LORA) if lora_params else None)


def make_model(out_dir, name, cfg, index):
    folder = os.path.join(out_dir, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    model_dir, adapter_dir = os.path.join(folder, "model"), os.path.join(folder, "adapter")
    gen = torch.Generator().manual_seed(SEED + index)
    torch.manual_seed(SEED + index)

    model = eager(transformers.LlamaForCausalLM(hf_config(cfg)).float().eval())
    random_init(model, cfg, gen)
    tokens, targets = make_batch(gen, cfg["vocab_size"])
    base_logits = logits_of(model, tokens)
    base_params = {k: v.detach().clone() for k, v in model.state_dict().items() if "rotary_emb" not in k}
    model.save_pretrained(model_dir, safe_serialization=True)
    if not os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        raise CheckFailed(f"{model_dir}: save_pretrained wrote no model.safetensors ({sorted(os.listdir(model_dir))})")

    peft_cfg = peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                               target_modules=list(TARGETS), bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, peft_cfg)
    params = lora_parameters(pm)
    with torch.no_grad():
        for n in sorted(params):
            p = params[n]
            if ".lora_A." in n:
                bound = 1.0 / p.shape[1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            else:
                p.copy_(LORA_B_STD * torch.randn(p.shape, generator=gen))
    trainable = sorted(n for n, p in pm.named_parameters() if p.requires_grad)
    if [peft_name(n) for n in trainable] != sorted(params):
        raise CheckFailed(f"trainable parameters are not exactly the LoRA tensors: {trainable[:4]}...")
    pm.eval()  # dropout is 0 anyway; eval mode keeps the forward deterministic
    pm.zero_grad(set_to_none=True)
    out = pm(input_ids=tokens)
    logits = out.logits.float()
    loss = loss_of(logits, targets)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items()}
    logits = logits.detach()
    # The model's own loss from labels (it shifts them left by one): labels[:, t] = targets[:, t - 1].
    labels = torch.full_like(targets, IGNORE_INDEX)
    labels[:, 1:] = targets[:, :-1]
    if (targets[:, -1] != IGNORE_INDEX).any():
        raise CheckFailed("the last position of targets must be -100 (nothing follows it)")
    with torch.no_grad():
        hf_loss = pm(input_ids=tokens, labels=labels).loss.float()
    if abs(hf_loss.item() - loss.item()) > 1e-5 * max(1.0, loss.item()):
        raise CheckFailed(f"{name}: the loss from labels ({hf_loss.item():.7f}) differs from the loss computed from the "
                          f"logits with targets[b, t] = the token logits[b, t] predicts ({loss.item():.7f})")
    pm.save_pretrained(adapter_dir, safe_serialization=True)
    if not os.path.isfile(os.path.join(adapter_dir, "adapter_model.safetensors")):
        raise CheckFailed(f"{adapter_dir}: PEFT wrote no adapter_model.safetensors ({sorted(os.listdir(adapter_dir))})")
    readme = os.path.join(adapter_dir, "README.md")  # PEFT's blank model card: not part of the exchange
    if os.path.isfile(readme):
        os.remove(readme)
    saved, _ = load_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    if sorted(saved) != sorted(grads):
        raise CheckFailed(f"{adapter_dir}: saved tensor names {sorted(saved)[:2]}... are not the gradient names "
                          f"{sorted(grads)[:2]}...")

    # The folders as written reproduce the numbers.
    reloaded = load_model(model_dir)
    d_base = max_abs(logits_of(reloaded, tokens), base_logits)
    d_lora = max_abs(logits_of(load_adapter(reloaded, adapter_dir), tokens), logits)
    if d_base > 1e-6 or d_lora > 1e-6:
        raise CheckFailed(f"{name}: the saved folders do not reproduce the logits (base {d_base:.3g}, adapter {d_lora:.3g})")
    # For the log: how far bench/peers/llama_ref.py (the engine's plain-torch twin) is from transformers here.
    ref_base = max_abs(llama_ref_logits(base_params, cfg, tokens), base_logits)
    ref_lora = max_abs(llama_ref_logits(base_params, cfg, tokens, {n: p.detach() for n, p in params.items()}), logits)

    tensors = {
        "input.tokens": tokens.to(torch.int32),
        "input.targets": targets.to(torch.int32),
        "out.base_logits": base_logits,
        "out.logits": logits,
        "out.loss": loss.detach().float().reshape(1),
    }
    for n in sorted(grads):
        tensors["grad." + n] = grads[n].float()
    metadata = {
        "config": json.dumps({k: cfg[k] for k in CONFIG_KEYS}),
        "lora": json.dumps(LORA),
        "generator": json.dumps({
            "script": "scripts/make-hf-fixtures.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "seed": SEED + index,
            "dtype": "float32",
            "device": "cpu",
            "attention": "eager",
            "weight_std": WEIGHT_STD,
            "norm_jitter": NORM_JITTER,
            "lora_b_std": LORA_B_STD,
            "loss": "mean cross-entropy over targets != -100 from out.logits; equals the model's loss from labels",
            "hf_loss_from_labels": hf_loss.item(),
            "llama_ref_vs_transformers_logits": {"base": ref_base, "adapter": ref_lora},
        }),
    }
    size = save_safetensors(os.path.join(folder, "expected.safetensors"), tensors, metadata)
    log(f"{folder}: expected.safetensors {size} bytes; loss {loss.item():.6f} (from labels {hf_loss.item():.6f}); "
        f"{len(grads)} LoRA gradients; llama_ref vs transformers logits: base {ref_base:.2e}, adapter {ref_lora:.2e}")
    if max(ref_base, ref_lora) > LOGITS_TOL:
        log(f"WARNING {name}: bench/peers/llama_ref.py differs from transformers by more than {LOGITS_TOL}: "
            "the engine (which mirrors llama_ref) will likely fail transformers-parity.test.ts")


def check_ours(out_dir, ours_dir):
    """Loads every folder our writers made and records transformers' logits on them."""
    names = sorted(n for n in os.listdir(ours_dir) if os.path.isfile(os.path.join(ours_dir, n, "model", "config.json")))
    if not names:
        raise CheckFailed(f"{ours_dir}: no <name>/model/config.json under it (run npx tsx scripts/write-ours-for-hf.ts --out {ours_dir})")
    failures = []
    for name in names:
        folder = os.path.join(ours_dir, name)
        model_dir, adapter_dir = os.path.join(folder, "model"), os.path.join(folder, "adapter")
        expected, _ = load_safetensors(os.path.join(folder, "expected.safetensors"))
        tokens = expected["input.tokens"].long()
        model = load_model(model_dir)
        result = {"input.tokens": tokens.to(torch.int32), "out.base_logits": logits_of(model, tokens)}
        final = result["out.base_logits"]
        if os.path.isdir(adapter_dir):
            final = result["out.logits"] = logits_of(load_adapter(model, adapter_dir), tokens)
        note = ""
        try:
            tok = transformers.AutoTokenizer.from_pretrained(model_dir)
            result["tok.ids"] = torch.tensor(tok(TOKENIZER_TEXT)["input_ids"], dtype=torch.int32)
            note = f"; tokenizer: {TOKENIZER_TEXT!r} -> {result['tok.ids'].tolist()}"
        except Exception as err:  # recorded, not fatal: the test only compares ids when they are there
            note = f"; tokenizer did not load: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        path = os.path.join(out_dir, f"{name}-ours-logits.safetensors")
        save_safetensors(path, result, {"generator": json.dumps({
            "script": "scripts/make-hf-fixtures.py --ours", "source": f"{name}/model" + (" + adapter" if "out.logits" in result else ""),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "tokenizer_text": TOKENIZER_TEXT})})
        if "out.logits" in expected:
            diff = max_abs(final, expected["out.logits"])
            note = f"; max |transformers - reference| {diff:.2e}" + note
            if not diff <= LOGITS_TOL:
                failures.append(f"{name}: transformers' logits on our files differ from the reference by {diff:.3g}")
        log(f"{path}: transformers loaded {name}/model" + (" + adapter" if os.path.isdir(adapter_dir) else "") + note)
    if failures:
        raise CheckFailed("; ".join(failures))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where the fixtures go (test/fixtures/hf in the repository)")
    parser.add_argument("--ours", help="folders written by scripts/write-ours-for-hf.ts, to load with transformers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the log
    except Exception:
        pass
    os.makedirs(args.out, exist_ok=True)
    log(f"make-hf-fixtures.py: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    try:
        for index, (name, cfg) in enumerate(MODELS):
            make_model(args.out, name, cfg, index)
        total = 0
        for name, _ in MODELS:
            for root, _, files in os.walk(os.path.join(args.out, name)):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        log(f"{args.out}: {total} bytes of fixtures")
        if total > SIZE_BUDGET:
            raise CheckFailed(f"the fixtures take {total} bytes, over the {SIZE_BUDGET} byte budget")
        if args.ours:
            check_ours(args.out, args.ours)
    except CheckFailed as err:
        log(f"make-hf-fixtures.py: FAILED: {err}")
        sys.exit(1)
    log("make-hf-fixtures.py: done")


if __name__ == "__main__":
    main()
