"""Bench peer: the paper's Algorithm 1 as a plain, idiomatic Python generator (no torch, no numpy), the
reference for the synthesis rows of the puzzle suite; the same JSONL records as `puzzle-llama synth`.

stdin:  {"mode": "memory" (build the puzzles) | "file" (write them as JSONL, atomically), "n": [5, 6, 7],
         "maxValue": 60, "count": 200000, "seed": 1, "out": PATH (file mode), "rng": "python" (the random
         module: the timed peer) | "xoshiro" (our generator's stream, lib/puzzle/rng.ts, so the output is
         the same puzzles as ours, byte for byte: a check, not a speed)}
stdout: {"puzzlesPerSecond", "seconds", "count", "bytes" (file mode), "python", "rng", "mode"}
"""

import json
import os
import platform
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the sources

OPS = "+-*/"
MAX_SAFE = 2**53 - 1


class ConfigError(ValueError):
    """A config field is missing or out of range; the message names the field and the value."""


class Xoshiro128:
    """xoshiro128** seeded through splitmix32, exactly as lib/puzzle/rng.ts: the same seed, the same draws."""

    def __init__(self, seed):
        low = seed & 0xFFFFFFFF
        high = (seed // 2**32) & 0xFFFFFFFF
        s = (low ^ ((high * 0x27D4EB2D) & 0xFFFFFFFF)) & 0xFFFFFFFF

        def mix():
            nonlocal s
            s = (s + 0x9E3779B9) & 0xFFFFFFFF
            z = s
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
            return z ^ (z >> 16)

        self.s = [mix() ^ high, mix(), mix(), mix()]
        if not any(self.s):
            self.s[0] = 1

    def next_u32(self):
        s0, s1, s2, s3 = self.s
        result = (rotl((s1 * 5) & 0xFFFFFFFF, 7) * 9) & 0xFFFFFFFF
        t = (s1 << 9) & 0xFFFFFFFF
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self.s = [s0, s1, s2, rotl(s3, 11)]
        return result

    def below(self, n):
        limit = 2**32 - 2**32 % n
        while True:
            x = self.next_u32()
            if x < limit:
                return x % n


def rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def synthesize_one(below, n, max_value):
    """N candidates in [1, V]; random ordered pairs and operators until one number is left. below(m) is a
    uniform integer in [0, m): random.Random.randrange itself, or Xoshiro128.below."""
    numbers = [1 + below(max_value) for _ in range(n)]
    pool = list(numbers)
    steps = []
    while len(pool) > 1:
        m = len(pool)
        i = below(m)
        j = below(m - 1)
        if j >= i:
            j += 1
        op = OPS[below(4)]
        a, b = pool[i], pool[j]
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif b == 0:
            continue  # a division by zero: draw the step again
        else:
            result = a // b
        steps.append((a, op, b, result))
        del pool[max(i, j)]
        del pool[min(i, j)]
        pool.append(result)
    return numbers, pool[0], steps


def synthesize(ns, max_value, count, below):
    for k in range(count):
        yield synthesize_one(below, ns[k % len(ns)], max_value)


def json_int(x):
    """Integers beyond ±(2^53−1) are written as decimal strings, as our JSONL does."""
    return x if -MAX_SAFE <= x <= MAX_SAFE else str(x)


def to_json_line(puzzle):
    numbers, target, steps = puzzle
    prompt = ", ".join(str(x) for x in numbers) + f": {target}"
    response = ", ".join(f"{a}{op}{b}={r}" for a, op, b, r in steps)
    record = {"numbers": [json_int(x) for x in numbers], "target": json_int(target), "prompt": prompt, "response": response}
    return json.dumps(record, separators=(",", ":"))


def get_int(cfg, key, default, minimum):
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"config.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def body(cfg):
    mode = cfg.get("mode", "memory")
    if mode not in ("memory", "file"):
        raise ConfigError(f"config.mode must be 'memory' or 'file', got {mode!r}")
    rng_kind = cfg.get("rng", "python")
    if rng_kind not in ("python", "xoshiro"):
        raise ConfigError(f"config.rng must be 'python' or 'xoshiro', got {rng_kind!r}")
    ns = cfg.get("n", [5, 6, 7])
    if isinstance(ns, int):
        ns = [ns]
    if not isinstance(ns, list) or not ns or not all(isinstance(x, int) and 2 <= x <= 64 for x in ns):
        raise ConfigError(f"config.n must be a list of integers in [2, 64], got {ns!r}")
    max_value = get_int(cfg, "maxValue", 60, 1)
    count = get_int(cfg, "count", 100_000, 0)
    seed = get_int(cfg, "seed", 1, -(2**53 - 1))
    out = cfg.get("out")
    if mode == "file" and not isinstance(out, str):
        raise ConfigError(f"config.out must be a file path in file mode, got {out!r}")
    below = Xoshiro128(seed).below if rng_kind == "xoshiro" else random.Random(seed).randrange

    start = time.perf_counter()
    size = None
    if mode == "memory":
        made = sum(1 for _ in synthesize(ns, max_value, count, below))
    else:
        tmp = f"{out}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            made = 0
            for puzzle in synthesize(ns, max_value, count, below):
                f.write(to_json_line(puzzle) + "\n")
                made += 1
        os.replace(tmp, out)
        size = os.path.getsize(out)
    seconds = time.perf_counter() - start
    result = {"mode": mode, "rng": rng_kind, "count": made, "seconds": seconds,
              "puzzlesPerSecond": made / seconds if seconds > 0 else None,
              "python": f"{platform.python_implementation()} {platform.python_version()}"}
    if size is not None:
        result["bytes"] = size
    return result


def main():
    raw = sys.stdin.read()
    try:
        cfg = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as err:
        print(f"synthesize: stdin is not JSON ({err}): {raw[:200]!r}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(cfg, dict):
        print(f"synthesize: stdin must hold a JSON object, got {raw[:200]!r}", file=sys.stderr)
        sys.exit(2)
    try:
        result = body(cfg)
    except ConfigError as err:
        print(f"synthesize: {err}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
