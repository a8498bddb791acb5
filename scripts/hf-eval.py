"""Judges a trained model folder outside this project: Hugging Face transformers loads it, decodes puzzles
greedily (or by its own beam search), and a verifier written here from the rules in docs/ARCHITECTURE.md
judges each response. It shares no code with the engine, the tokenizer or the verifier of puzzle-llama, so
agreement is evidence.

usage: python scripts/hf-eval.py MODEL_DIR [PUZZLES.jsonl ...] [--limit K] [--threads T] [--beams K]
  PUZZLES default to data/id.jsonl (in-domain, never in training data); --limit spreads K puzzles evenly.
  --beams K: transformers' beam search ranked by summed log-probabilities (length_penalty 0, searching until
  no open beam can beat a finished one), the search `eval --mode free-beamK` runs.
  --out FILE: one JSON line per puzzle ({"file", "prompt", "response", "reason"}), to compare responses.
prints one JSON line per file: {"file", "count", "beams", "pass1", "failures": {reason: count}}
"""

import argparse
import json
import os
import re
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

STEP = re.compile(r"^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


def judge(numbers, target, response):
    """None when the response solves the puzzle, else the reason it fails."""
    if not response.strip():
        return "empty-response"
    parts = response.split(",")
    available = list(numbers)
    steps = []
    for part in parts:
        m = STEP.match(part)
        if not m:
            return "parse-error"
        steps.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))))
    if len(steps) > len(numbers) - 1:
        return "too-many-steps"
    for a, op, b, c in steps:
        for x in (a, b):
            if x not in available:
                return "operand-not-available"
            available.remove(x)
        if op == "/" and b == 0:
            return "division-by-zero"
        value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a // b
        if value != c:
            return "wrong-result"
        available.append(c)
    if len(steps) < len(numbers) - 1:
        return "numbers-left-unused"
    return None if steps[-1][3] == target else "final-value-differs"


def special(token):
    return len(token) > 1 and token.startswith("<") and token.endswith(">")


def spread(items, k):
    if k is None or k >= len(items):
        return items
    return [items[(i * len(items)) // k] for i in range(k)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("files", nargs="*")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.beams < 1:
        ap.error(f"--beams must be a positive integer, got {args.beams}")
    search = {} if args.beams == 1 else {"num_beams": args.beams, "length_penalty": 0.0, "early_stopping": "never"}
    torch.set_num_threads(args.threads)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = args.files or [os.path.join(here, "data", "id.jsonl")]

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.model, "tokenizer.json"))
    vocab = tok.get_vocab()
    bos, ans, eos = vocab["<bos>"], vocab["<ans>"], vocab["<eos>"]
    text = {i: t for t, i in vocab.items()}
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()

    out_file = open(args.out + ".tmp", "w") if args.out else None
    for path in files:
        with open(path) as f:
            puzzles = [json.loads(line) for line in f if line.strip()]
        puzzles = spread(puzzles, args.limit)
        ok = 0
        failures = {}
        for p in puzzles:
            prompt = ", ".join(str(x) for x in p["numbers"]) + ": " + str(p["target"])
            ids = [bos] + tok.encode(prompt, add_special_tokens=False) + [ans]
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False,
                                     eos_token_id=eos, pad_token_id=vocab["<pad>"], **search)
            new = out[0, len(ids):].tolist()
            if eos in new:
                new = new[: new.index(eos)]
            # one character per token: the text is the tokens' strings joined (special tokens dropped)
            response = "".join(text[t] for t in new if not special(text[t]))
            reason = judge(p["numbers"], p["target"], response)
            if out_file:
                out_file.write(json.dumps({"file": path, "prompt": prompt, "response": response, "reason": reason}) + "\n")
            if reason is None:
                ok += 1
            else:
                failures[reason] = failures.get(reason, 0) + 1
        print(json.dumps({"file": path, "count": len(puzzles), "beams": args.beams, "pass1": ok / max(1, len(puzzles)), "failures": failures}))
        sys.stdout.flush()
    if out_file:
        out_file.close()
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
