"""Bench peer: greedy decoding with a KV cache in PyTorch (bench/peers/llama_ref.py), the reference for our
engine's generation tokens/s. Random weights and prompts; the work, not the text, is what is measured.

stdin:  {"config": {LlamaConfig keys}, "batch": 4, "promptLen": 32, "newTokens": 64, "threads": 2, "seed": 0,
         "device": "cpu" | "cuda", "dtype": "fp32" | "bf16" | "fp16", "reorder": false}
        reorder: before each new token, the rows of the KV cache are gathered by a random index (beam search's
        work between tokens), as our engine's decodeReorder() does.
stdout: {"tokensPerSecond" (new tokens of the whole batch over prefill + decode), "decodeTokensPerSecond",
         "msPrefill", "msDecode", "torch", "device", "dtype", "threads", ...}
"""

import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from peer_util import ConfigError, get_int, log, run_peer, setup, sync  # noqa: E402


def body(cfg):
    try:
        config = ref.check_config(cfg.get("config"))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    batch, prompt_len, new_tokens = get_int(cfg, "batch"), get_int(cfg, "promptLen"), get_int(cfg, "newTokens")
    seed = get_int(cfg, "seed", default=0, minimum=0)
    if prompt_len + new_tokens > config["max_position_embeddings"]:
        raise ConfigError(f"config.promptLen + config.newTokens = {prompt_len + new_tokens} exceeds "
                          f"config.config.max_position_embeddings {config['max_position_embeddings']}")
    device, dtype, info = setup(cfg)
    gen = torch.Generator().manual_seed(seed)
    params = ref.init_params(config, gen, dtype=dtype, device=device)
    prompts = torch.randint(0, config["vocab_size"], (batch, prompt_len), generator=gen).to(device)
    reorder = cfg.get("reorder", False)
    if not isinstance(reorder, bool):
        raise ConfigError(f"config.reorder must be true or false, got {reorder!r}")
    perms = [torch.randint(0, batch, (batch,), generator=gen).to(device) for _ in range(new_tokens)] if reorder else []

    def run():
        cache = []
        with torch.no_grad():
            start = time.perf_counter()
            logits = ref.forward(params, config, prompts, cache=cache)
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            sync(device)
            prefill = time.perf_counter()
            out = [nxt]
            for step in range(new_tokens - 1):
                if reorder:
                    rows = perms[step]
                    for layer, (k, v) in enumerate(cache):
                        cache[layer] = (k.index_select(0, rows), v.index_select(0, rows))
                    nxt = nxt.index_select(0, rows)
                logits = ref.forward(params, config, nxt, cache=cache)
                nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
                out.append(nxt)
            tokens = torch.cat(out, dim=1)
            sync(device)
            end = time.perf_counter()
        return tokens, (prefill - start) * 1e3, (end - prefill) * 1e3

    run()  # warm-up: allocator, kernels, thread pool
    tokens, ms_prefill, ms_decode = run()
    # The cached decode must pick what a full, cache-free forward over prompt + output picks (greedy, so
    # exact up to near-ties in low precision, hence a warning rather than a failure). Reordered rows are no
    # longer one prompt's continuation, so they are not checked.
    if not reorder:
        n_check = min(new_tokens, 4)
        with torch.no_grad():
            full = ref.forward(params, config, torch.cat((prompts, tokens[:, : n_check - 1]), dim=1))
        check = full[:, prompt_len - 1:, :].argmax(dim=-1)
        if not torch.equal(check, tokens[:, :n_check]):
            log("generate", "warning: the KV-cache decode differs from a cache-free forward in its first tokens")
    total = ms_prefill + ms_decode
    return {"tokensPerSecond": batch * new_tokens / (total * 1e-3),
            "decodeTokensPerSecond": batch * (new_tokens - 1) / (ms_decode * 1e-3) if new_tokens > 1 else None,
            "msPrefill": ms_prefill, "msDecode": ms_decode, **info,
            "batch": batch, "promptLen": prompt_len, "newTokens": new_tokens, "reorder": reorder}


if __name__ == "__main__":
    run_peer("generate", body)
