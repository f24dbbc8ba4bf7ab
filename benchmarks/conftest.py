"""Shared fixtures: the machine's own roofline, measured once per session.

Every throughput figure is reported beside the read bandwidth, copy bandwidth and ``exp``
throughput of the same machine measured in the same run, so it can be read as a fraction of
what the hardware does (nanoGPT's bench.py habit: warm up, synchronise, record the environment).
"""
from __future__ import annotations

import os
import platform
import time

import pytest
import torch

QUICK = os.environ.get("I2M2BENCH_BENCH_QUICK") == "1"  # tiny grid: checks the code, not the machine


def device() -> torch.device:
    name = os.environ.get("I2M2BENCH_BENCH_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_time(fn, dev, repeats: int = 5) -> float:
    fn()
    sync(dev)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@pytest.fixture(scope="session")
def roofline() -> dict:
    dev = device()
    n = (1 << 24) if QUICK else (1 << 28)  # 64 MiB / 1 GiB of float32
    x = torch.rand(n, device=dev)
    y = torch.empty_like(x)
    read = best_time(lambda: x.sum(), dev)
    copy = best_time(lambda: y.copy_(x), dev)
    # exp throughput: compute-bound, on a 256 KiB slice that stays in cache, many times over
    m, reps = 1 << 16, 2000 if dev.type == "cpu" else 20000
    xs, ys = x[:m].clone(), y[:m]

    def exps():
        for _ in range(reps):
            torch.exp(xs, out=ys)

    exp = best_time(exps, dev, repeats=3) / reps
    info = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "device_type": dev.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "read_gbps": x.numel() * 4 / read / 1e9,
        "copy_gbps": 2 * x.numel() * 4 / copy / 1e9,  # bytes read + bytes written
        "exp_gelems": m / exp / 1e9,  # elements/s of torch.exp on cache-resident data
        "quick": QUICK,
    }
    return info
