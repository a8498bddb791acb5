"""What every bench peer shares: a JSON config from stdin, checked fields, device and dtype, timing, and
exactly one JSON line on stdout (diagnostics go to stderr; a bad config exits 2, any other failure 1)."""

import json
import os
import resource
import sys
import time
import traceback

import torch


class ConfigError(ValueError):
    """A config field is missing or out of range; the message names the field and the value."""


def run_peer(name, body):
    """Reads the config, calls body(config) -> dict, prints the dict as one JSON line."""
    raw = sys.stdin.read()
    try:
        cfg = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as err:
        print(f"{name}: stdin is not JSON ({err}): {raw[:200]!r}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(cfg, dict):
        print(f"{name}: stdin must hold a JSON object, got {raw[:200]!r}", file=sys.stderr)
        sys.exit(2)
    try:
        result = body(cfg)
    except (ConfigError, ValueError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # report, never hang or print a partial line
        traceback.print_exc(file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def get_int(cfg, key, default=None, minimum=1):
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"config.{key} is required (an integer >= {minimum})")
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"config.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def get_bool(cfg, key, default):
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config.{key} must be true or false, got {value!r}")
    return value


DTYPES = {"fp32": torch.float32, "f32": torch.float32, "float32": torch.float32,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "f16": torch.float16, "float16": torch.float16}


def setup(cfg):
    """Applies config.threads and resolves config.device ('cpu' default, 'cuda') and config.dtype
    ('fp32' default, 'bf16', 'fp16'); returns (device, dtype, description)."""
    threads = get_int(cfg, "threads", default=max(1, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    limit_blas_threads(threads)
    device_name = cfg.get("device", "cpu")
    if device_name not in ("cpu", "cuda"):
        raise ConfigError(f"config.device must be 'cpu' or 'cuda', got {device_name!r}")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config.device is 'cuda' but torch.cuda.is_available() is False "
                          f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    dtype_name = cfg.get("dtype", "fp32")
    if dtype_name not in DTYPES:
        raise ConfigError(f"config.dtype must be one of {', '.join(DTYPES)}, got {dtype_name!r}")
    device = torch.device(device_name)
    dtype = DTYPES[dtype_name]
    label = f"{device_name} {torch.cuda.get_device_name(device) if device_name == 'cuda' else ''}".strip()
    return device, dtype, {"torch": torch.__version__, "device": label, "dtype": str(dtype).replace("torch.", ""),
                           "threads": threads, "blas": blas_in_use()}


def limit_blas_threads(threads):
    """torch.set_num_threads does not reach an external OpenBLAS (a distribution torch built with
    BLAS_INFO=generic), which starts one thread per core: tell it directly."""
    import ctypes
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_set_num_threads(ctypes.c_int(threads))
        except (OSError, AttributeError):
            continue


def blas_in_use():
    """Which BLAS serves torch's CPU matmuls: MKL, or the library actually mapped into this process (a
    distribution torch built with BLAS_INFO=generic gets whatever libblas.so.3 points at, which may be the
    slow reference BLAS), else torch's build setting."""
    if torch.backends.mkl.is_available():
        return "mkl"
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line}
        found = sorted({os.path.realpath(p) for p in paths if "lapack" not in os.path.basename(p)})
        if found:
            return ", ".join(found)
    except OSError:
        pass
    config = torch.__config__.show()
    marker = "BLAS_INFO="
    return config.split(marker, 1)[1].split(",", 1)[0] if marker in config else "unknown"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, repeats, warmup):
    """Runs fn warmup times, then repeats times; returns each timed call's milliseconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def peak_rss_mb():
    """The process's peak resident set (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def log(name, message):
    print(f"{name}: {message}", file=sys.stderr)
