"""torch.distributed's all-reduce, the peer of our communicators: `world_size` processes on this machine
(gloo on the CPU, or nccl on one GPU each), each size timed back to back after a warm-up, as our
timeAllReduce() times it. Prints {"results": [{"bytes", "seconds"}], "torchVersion", "backend"}."""

import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from peer_util import ConfigError, run_peer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, backend, port, sizes, iterations, warmup, dtype, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    sync = torch.cuda.synchronize if backend == "nccl" else (lambda: None)
    out = []
    for size in sizes:
        x = torch.zeros(size // dt.itemsize, dtype=dt, device=device)
        for _ in range(warmup):
            dist.all_reduce(x)
        sync()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iterations):
            dist.all_reduce(x)
        sync()
        out.append({"bytes": size, "seconds": (time.perf_counter() - t0) / iterations})
    if rank == 0:
        queue.put(out)
    dist.barrier()
    dist.destroy_process_group()


def body(cfg):
    backend = cfg.get("backend", "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    world = cfg.get("world_size", 2)
    if not isinstance(world, int) or world < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world!r}")
    sizes = cfg.get("sizes")
    if not isinstance(sizes, list) or not sizes or not all(isinstance(s, int) and s >= 4 for s in sizes):
        raise ConfigError(f"sizes must be a list of byte counts >= 4, got {sizes!r}")
    if backend == "nccl" and torch.cuda.device_count() < world:
        raise ConfigError(f"nccl with world_size {world} needs {world} GPUs, found {torch.cuda.device_count()}")
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    args = (world, backend, free_port(), sizes, cfg.get("iterations", 20), cfg.get("warmup", 3), cfg.get("dtype", "f32"), queue)
    mp.start_processes(worker, args=args, nprocs=world, join=True, start_method="spawn")
    return {"results": queue.get(), "torchVersion": torch.__version__, "backend": backend}


if __name__ == "__main__":
    run_peer("allreduce", body)
