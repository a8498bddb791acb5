"""Reference LLaMA (Hugging Face LlamaForCausalLM semantics) and PEFT LoRA in plain PyTorch.

Shared by scripts/make-fixtures.py (golden files for parity tests) and the bench peers (train_step.py,
generate.py). Works on PyTorch 1.13 and later, CPU or CUDA, any float dtype; it has no dependency beyond
torch. Parameters live in a flat dict keyed by Hugging Face names (`model.layers.0.self_attn.q_proj.weight`)
and LoRA tensors by PEFT's saved names (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`),
so the tensors go straight into safetensors files and the engine's name table.

Semantics (Hugging Face LlamaForCausalLM, eager attention):
  RMSNorm:   x * rsqrt(mean(x^2) + eps), computed in float32 (or wider), cast back, then times weight
  RoPE:      inv_freq = theta^(-arange(0, d, 2) / d); angle[t, i] = t * inv_freq[i % (d/2)];
             x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[d/2:], x[:d/2]) (dim i pairs with i + d/2)
  attention: grouped-query, query head h reads key/value head h // (heads / kv_heads) (repeat_kv),
             causal, scale 1/sqrt(head_dim), softmax in float32 (or wider)
  MLP:       down(silu(gate(x)) * up(x)); no biases anywhere
  head:      final RMSNorm, then lm_head (or embed_tokens when tie_word_embeddings)
  loss:      mean cross-entropy over targets != -100, where targets[b, t] is the token logits[b, t]
             predicts (already shifted: Hugging Face's `labels` are these targets shifted right by one)
LoRA (PEFT): y = W x + (alpha / r) * B(A(dropout(x))), A [r, in], B [out, r].
"""

import math

import torch
import torch.nn.functional as F

CONFIG_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "max_position_embeddings",
    "tie_word_embeddings",
)
ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
ALL_TARGETS = ATTN_TARGETS + MLP_TARGETS
IGNORE_INDEX = -100
PEFT_PREFIX = "base_model.model."


def check_config(cfg):
    """Returns the config with defaults filled, or raises ValueError naming the field and value."""
    if not isinstance(cfg, dict):
        raise ValueError(f"config must be an object of LlamaConfig keys, got {cfg!r}")
    out = dict(cfg)
    out.setdefault("num_key_value_heads", out.get("num_attention_heads"))
    out.setdefault("rms_norm_eps", 1e-6)
    out.setdefault("rope_theta", 10000.0)
    out.setdefault("max_position_embeddings", 2048)
    out.setdefault("tie_word_embeddings", False)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings"):
        value = out.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.{key} must be a positive integer, got {value!r}")
    for key in ("rms_norm_eps", "rope_theta"):
        value = out[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"config.{key} must be a positive number, got {value!r}")
    if not isinstance(out["tie_word_embeddings"], bool):
        raise ValueError(f"config.tie_word_embeddings must be a boolean, got {out['tie_word_embeddings']!r}")
    h, nh, nkv = out["hidden_size"], out["num_attention_heads"], out["num_key_value_heads"]
    if h % nh != 0:
        raise ValueError(f"config.hidden_size {h} must be a multiple of num_attention_heads {nh}")
    if nh % nkv != 0:
        raise ValueError(f"config.num_attention_heads {nh} must be a multiple of num_key_value_heads {nkv}")
    if (h // nh) % 2 != 0:
        raise ValueError(f"head_dim {h // nh} (hidden_size / num_attention_heads) must be even for RoPE")
    return out


def check_lora(lora):
    """Returns the LoRA settings {r, alpha, dropout, targets} or None; raises ValueError naming the field."""
    if lora is None:
        return None
    if not isinstance(lora, dict):
        raise ValueError(f"lora must be an object {{r, alpha, dropout, targets}} or null, got {lora!r}")
    out = {"r": lora.get("r"), "alpha": lora.get("alpha"), "dropout": lora.get("dropout", 0.0),
           "targets": list(lora.get("targets", ALL_TARGETS))}
    if not isinstance(out["r"], int) or isinstance(out["r"], bool) or out["r"] < 1:
        raise ValueError(f"lora.r must be a positive integer, got {out['r']!r}")
    if not isinstance(out["alpha"], (int, float)) or isinstance(out["alpha"], bool):
        raise ValueError(f"lora.alpha must be a number, got {out['alpha']!r}")
    if not isinstance(out["dropout"], (int, float)) or not 0 <= out["dropout"] < 1:
        raise ValueError(f"lora.dropout must be in [0, 1), got {out['dropout']!r}")
    for t in out["targets"]:
        if t not in ALL_TARGETS:
            raise ValueError(f"lora.targets holds {t!r}; known: {', '.join(ALL_TARGETS)}")
    return out


def head_dim(cfg):
    return cfg["hidden_size"] // cfg["num_attention_heads"]


def module_name(layer, target):
    group = "self_attn" if target in ATTN_TARGETS else "mlp"
    return f"model.layers.{layer}.{group}.{target}"


def linear_shape(cfg, target):
    """[out, in] of a projection."""
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], head_dim(cfg)
    kv = cfg["num_key_value_heads"] * d
    return {
        "q_proj": (cfg["num_attention_heads"] * d, h),
        "k_proj": (kv, h),
        "v_proj": (kv, h),
        "o_proj": (h, cfg["num_attention_heads"] * d),
        "gate_proj": (i, h),
        "up_proj": (i, h),
        "down_proj": (h, i),
    }[target]


def param_shapes(cfg):
    """Every base parameter by its Hugging Face name, in the order Hugging Face lists them."""
    shapes = {"model.embed_tokens.weight": (cfg["vocab_size"], cfg["hidden_size"])}
    for layer in range(cfg["num_hidden_layers"]):
        for target in ALL_TARGETS:
            shapes[module_name(layer, target) + ".weight"] = linear_shape(cfg, target)
        shapes[f"model.layers.{layer}.input_layernorm.weight"] = (cfg["hidden_size"],)
        shapes[f"model.layers.{layer}.post_attention_layernorm.weight"] = (cfg["hidden_size"],)
    shapes["model.norm.weight"] = (cfg["hidden_size"],)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (cfg["vocab_size"], cfg["hidden_size"])
    return shapes


def lora_name(layer, target, which):
    """PEFT's saved name of lora_A or lora_B ('A' or 'B') of one projection."""
    return f"{PEFT_PREFIX}{module_name(layer, target)}.lora_{which}.weight"


def lora_shapes(cfg, lora):
    shapes = {}
    for layer in range(cfg["num_hidden_layers"]):
        for target in ALL_TARGETS:
            if target not in lora["targets"]:
                continue
            out_f, in_f = linear_shape(cfg, target)
            shapes[lora_name(layer, target, "A")] = (lora["r"], in_f)
            shapes[lora_name(layer, target, "B")] = (out_f, lora["r"])
    return shapes


def init_params(cfg, generator, dtype=torch.float32, device="cpu", norm_jitter=0.0, std=0.02):
    """Hugging Face's init (normal(0, initializer_range=0.02) for matrices, ones for norms); norm_jitter > 0
    draws norm weights around 1 instead, so that their gradients matter in parity tests."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            t = torch.ones(shape, dtype=torch.float32)
            if norm_jitter > 0:
                t = t + norm_jitter * torch.randn(shape, generator=generator)
        else:
            t = std * torch.randn(shape, generator=generator)
        params[name] = t.to(dtype=dtype, device=device)
    return params


def init_lora(cfg, lora, generator, dtype=torch.float32, device="cpu", b_std=0.0):
    """PEFT's init: A Kaiming-uniform (a = sqrt(5), so bound 1/sqrt(in)), B zeros; b_std > 0 draws B
    from normal(0, b_std) instead, so that A's gradients are non-zero in parity tests."""
    params = {}
    for name, shape in lora_shapes(cfg, lora).items():
        if ".lora_A." in name:
            bound = 1.0 / math.sqrt(shape[1])
            t = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        elif b_std > 0:
            t = b_std * torch.randn(shape, generator=generator)
        else:
            t = torch.zeros(shape)
        params[name] = t.to(dtype=dtype, device=device)
    return params


def _wide(dtype):
    """The dtype norms and softmax run in: float32, or the input's own when it is wider."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def rms_norm(x, weight, eps):
    wide = x.to(_wide(x.dtype))
    wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return weight * wide.to(x.dtype)


def rope_cos_sin(positions, dim, theta, dtype):
    """cos and sin [T, dim] for integer positions [T]."""
    wide = _wide(dtype)
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).to(wide) / dim))
    freqs = torch.outer(positions.to(wide), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, n_rep):
    """[B, kvH, T, D] -> [B, kvH * n_rep, T, D]; query head h reads kv head h // n_rep."""
    if n_rep == 1:
        return x
    b, kvh, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kvh, n_rep, t, d).reshape(b, kvh * n_rep, t, d)


def project(params, lora_params, lora, module, x, training=False):
    """x @ W^T, plus PEFT's LoRA term when the module is a LoRA target."""
    y = F.linear(x, params[module + ".weight"])
    if lora_params is not None:
        a = lora_params.get(PEFT_PREFIX + module + ".lora_A.weight")
        if a is not None:
            b = lora_params[PEFT_PREFIX + module + ".lora_B.weight"]
            xd = F.dropout(x, lora["dropout"], training) if lora["dropout"] > 0 else x
            y = y + (lora["alpha"] / lora["r"]) * F.linear(F.linear(xd, a), b)
    return y


def attention(q, k, v, query_offset=0, causal=True):
    """softmax(q k^T / sqrt(d) (+ causal mask)) v with q [B, H, Tq, D], k/v [B, H, Tk, D] (already repeated);
    query i sits at position query_offset + i and, when causal, sees keys 0..query_offset + i."""
    tq, tk, d = q.shape[2], k.shape[2], q.shape[3]
    scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)
    if causal:
        mask = torch.full((tq, tk), float("-inf"), device=q.device, dtype=scores.dtype).triu(1 + query_offset)
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=_wide(q.dtype)).to(q.dtype)
    return torch.matmul(probs, v)


def forward(params, cfg, tokens, lora_params=None, lora=None, cache=None, training=False):
    """Logits [B, T, V] for tokens [B, T] (int64). With `cache` (a list, one entry per layer, filled on the
    first call), tokens continue the cached sequence: positions start where the cache ends."""
    b, t = tokens.shape
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    x = F.embedding(tokens, params["model.embed_tokens.weight"])  # [B, T, h]
    offset = 0 if not cache else cache[0][0].shape[2]
    positions = torch.arange(offset, offset + t, device=tokens.device)
    cos, sin = rope_cos_sin(positions, d, cfg["rope_theta"], x.dtype)  # [T, d]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}"
        hcur = rms_norm(x, params[pre + ".input_layernorm.weight"], eps)
        q = project(params, lora_params, lora, pre + ".self_attn.q_proj", hcur, training)
        k = project(params, lora_params, lora, pre + ".self_attn.k_proj", hcur, training)
        v = project(params, lora_params, lora, pre + ".self_attn.v_proj", hcur, training)
        q = q.view(b, t, nh, d).transpose(1, 2)  # [B, H, T, d]
        k = k.view(b, t, nkv, d).transpose(1, 2)  # [B, kvH, T, d]
        v = v.view(b, t, nkv, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if len(cache) > layer:
                k = torch.cat((cache[layer][0], k), dim=2)
                v = torch.cat((cache[layer][1], v), dim=2)
                cache[layer] = (k, v)
            else:
                cache.append((k, v))
        o = attention(q, repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv), offset)  # [B, H, T, d]
        o = o.transpose(1, 2).reshape(b, t, nh * d)
        x = x + project(params, lora_params, lora, pre + ".self_attn.o_proj", o, training)
        hcur = rms_norm(x, params[pre + ".post_attention_layernorm.weight"], eps)
        gate = project(params, lora_params, lora, pre + ".mlp.gate_proj", hcur, training)
        up = project(params, lora_params, lora, pre + ".mlp.up_proj", hcur, training)
        x = x + project(params, lora_params, lora, pre + ".mlp.down_proj", F.silu(gate) * up, training)
    x = rms_norm(x, params["model.norm.weight"], eps)
    head = params["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else params["lm_head.weight"]
    return F.linear(x, head)


def loss_fn(logits, targets):
    """Mean cross-entropy over targets != -100, computed in float32 (or wider)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v).to(_wide(logits.dtype)), targets.reshape(-1).long(),
                           ignore_index=IGNORE_INDEX)


@torch.no_grad()
def generate_greedy(params, cfg, prompts, new_tokens, lora_params=None, lora=None):
    """Greedy decoding with a KV cache: prompts [B, P] -> tokens [B, new_tokens]."""
    cache = []
    logits = forward(params, cfg, prompts, lora_params, lora, cache=cache)
    out = []
    nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
    for i in range(new_tokens):
        out.append(nxt)
        if i + 1 == new_tokens:
            break
        logits = forward(params, cfg, nxt, lora_params, lora, cache=cache)
        nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
    return torch.cat(out, dim=1)


def check_adamw(hp):
    out = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "max_grad_norm": 0.0}
    out.update(hp or {})
    for key in ("lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm"):
        value = out[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"adamw.{key} must be a non-negative number, got {value!r}")
    return out


def make_adamw(tensors, hp):
    """torch.optim.AdamW over the trainable tensors, one parameter group (weight decay applies to every
    trainable tensor, norms included), the single-tensor implementation."""
    return torch.optim.AdamW(tensors, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                             weight_decay=hp["weight_decay"], foreach=False)


def train_step(loss_closure, tensors, optimizer, hp):
    """One step: loss, backward, clip the global grad norm (torch.nn.utils.clip_grad_norm_: scale by
    max_norm / (norm + 1e-6) when that is below 1), AdamW. Returns (loss, pre-clip grad norm)."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_closure()
    loss.backward()
    if hp["max_grad_norm"] > 0:
        norm = torch.nn.utils.clip_grad_norm_(tensors, hp["max_grad_norm"])
    else:
        norm = torch.norm(torch.stack([t.grad.detach().norm(2) for t in tensors]), 2)
    optimizer.step()
    return loss.detach(), norm.detach()


def hf_available():
    """(transformers module, peft module or None) when transformers imports, else None."""
    try:
        import transformers  # noqa: F401
    except Exception:  # pragma: no cover - depends on the host
        return None
    try:
        import peft  # noqa: F401
    except Exception:  # pragma: no cover
        peft = None
    return transformers, peft


def build_hf(cfg, lora=None, params=None, lora_params=None, dtype=torch.float32, device="cpu", attention="eager"):
    """A Hugging Face LlamaForCausalLM (wrapped by PEFT when lora is set), eager attention unless attention
    names another (e.g. "sdpa"), loaded with the given tensors when they are given; without params it is
    built directly on the device in dtype with transformers' own random init (fast for 3B models).
    Returns (model, {name: trainable tensor}) keyed by our names, or None when transformers (or peft, for
    LoRA) does not import."""
    found = hf_available()
    if found is None or (lora is not None and found[1] is None):
        return None
    transformers, peft = found
    # attn_implementation picks eager attention (softmax in float32, as documented above) on versions that
    # have several; older versions keep the unknown keyword as a harmless attribute.
    hf_cfg = transformers.LlamaConfig(**{k: cfg[k] for k in CONFIG_KEYS}, attention_bias=False, mlp_bias=False,
                                      attn_implementation=attention)
    if params is None:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = transformers.LlamaForCausalLM(hf_cfg)
        finally:
            torch.set_default_dtype(previous)
    else:
        model = transformers.LlamaForCausalLM(hf_cfg).to(dtype=dtype, device=device)
    if params is not None:
        missing, unexpected = model.load_state_dict(params, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and cfg["tie_word_embeddings"])
                   and "rotary_emb" not in m]
        if missing or unexpected:
            raise RuntimeError(f"Hugging Face model did not take our tensors: missing {missing}, unexpected {unexpected}")
    if lora is None:
        return model, {n: p for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    peft_cfg = peft.LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                               target_modules=list(lora["targets"]), bias="none")
    model = peft.get_peft_model(model, peft_cfg)
    trainable = {}
    for n, p in model.named_parameters():
        if ".lora_" in n:
            ours = n.replace(".default", "")
            if lora_params is not None:
                with torch.no_grad():
                    p.copy_(lora_params[ours])
            trainable[ours] = p
    return model, trainable
