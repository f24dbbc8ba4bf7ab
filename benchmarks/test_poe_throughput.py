"""Throughput of the PoE kernel: every backend, forward and forward+backward.

Grid: K in {2, 3, 5} experts, B in {256, 4096}, C in {10, 3129, 32768} classes (float32), plus
``torch.compile`` of the paper's formula. Forward = ``poe_log_softmax`` without autograd.
Forward+backward is measured as training uses it: K separate (B, C) logit tensors, as K heads
produce them, ``poe_nll`` then ``torch.autograd.grad`` with respect to them. ``extra_info``
holds the logit bytes (K*B*C*itemsize), effective GB/s, the same session's roofline and the
call's roofline time (``bound_s``, see ``i2m2bench.reporting.poe_kernel.roofline_seconds``).
``test_peak_memory`` measures the peak memory allocated during one forward+backward (beyond the
inputs), in B*C buffers, minus the distinct gradient buffers it returns; each backend runs in a
fresh process (CPU: peak RSS after resetting the kernel's high-water mark; CUDA:
max_memory_allocated).

Run through ``python -m i2m2bench bench`` (renders leaderboards/poe_kernel.md).
``I2M2BENCH_BENCH_QUICK=1`` shrinks the grid (and leaves out torch.compile) to check the code in
seconds; the tests run it that way.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
import torch

from conftest import QUICK, device, sync
from i2m2bench.poe import poe_log_softmax, poe_nll, reference, triton_backend
from i2m2bench.reporting.poe_kernel import roofline_seconds

DEV = device()
KS = (2, 3) if QUICK else (2, 3, 5)
BS = (256,) if QUICK else (256, 4096)
CS = (10, 3129) if QUICK else (10, 3129, 32768)
BACKENDS = ["reference", "torch", "fused"] + (["triton"] if triton_backend.available(DEV) else [])
if not QUICK:  # compiling takes minutes on 2 cores: measured in full runs only
    BACKENDS.append("compiled_reference")


@functools.lru_cache(maxsize=None)
def _compiled(mode: str):
    if mode == "fwd":
        return torch.compile(lambda *zs: reference.log_softmax(list(zs), None, None), dynamic=True)
    return torch.compile(lambda t, *zs: reference.nll(list(zs), t, None, None, "mean"), dynamic=True)


def _inputs(k, b, c, grad):
    g = torch.Generator(device=DEV).manual_seed(0)
    zs = [torch.randn(b, c, device=DEV, generator=g).mul_(3).requires_grad_(grad) for _ in range(k)]
    t = torch.randint(0, c, (b,), device=DEV, generator=g)
    return zs, t


def _fn(backend, mode, zs, t):
    if mode == "fwd":
        if backend == "compiled_reference":
            f = _compiled("fwd")
            return lambda: f(*zs)
        return lambda: poe_log_softmax(zs, backend=backend)
    if backend == "compiled_reference":
        f = _compiled("fwdbwd")
        return lambda: torch.autograd.grad(f(t, *zs), zs)
    return lambda: torch.autograd.grad(poe_nll(zs, t, backend=backend), zs)


def _rounds(k, b, c) -> int:
    size = k * b * c
    return 3 if size >= 1 << 28 else 5 if size >= 1 << 24 else 20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", CS)
@pytest.mark.parametrize("b", BS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_poe_throughput(benchmark, roofline, mode, k, b, c, backend):
    zs, t = _inputs(k, b, c, grad=mode == "fwdbwd")
    fn = _fn(backend, mode, zs, t)
    ctx = torch.no_grad() if mode == "fwd" else torch.enable_grad()
    last = {}

    def run():
        # Each call's result stays alive until the next call has returned, as in a loop
        # ``out = poe_log_softmax(x)`` (and as pytest-benchmark keeps a round's result), so the
        # warm-up rounds see that steady state too (the fused backend alternates two buffers).
        with ctx:
            out = fn()
        sync(DEV)
        last["out"] = out
        return out

    benchmark.group = f"{mode} K={k} B={b} C={c}"
    benchmark.pedantic(run, rounds=_rounds(k, b, c), iterations=1, warmup_rounds=2)
    nbytes = k * b * c * zs[0].element_size()
    mean = benchmark.stats.stats.mean
    bound = roofline_seconds(mode, k, b, c, zs[0].element_size(), roofline)  # for readers of the JSON;
    # the table recomputes it from the primitive values (a pure function of them)
    benchmark.extra_info.update({
        "mode": mode, "K": k, "B": b, "C": c, "backend": backend, "dtype": str(zs[0].dtype),
        "logit_bytes": nbytes, "gbps": nbytes / mean / 1e9,
        "frac_read_bw": nbytes / mean / 1e9 / roofline["read_gbps"],
        "bound_s": bound, "frac_roofline": bound / mean,
        **{f"roofline_{key}": v for key, v in roofline.items()},
    })


_MEM_SCRIPT = r"""
import json, resource, sys, torch
sys.path[:0] = {paths!r}
from i2m2bench.poe import poe_nll, reference
k, b, c, backend, dev = {k}, {b}, {c}, {backend!r}, torch.device({dev!r})
g = torch.Generator(device=dev).manual_seed(0)
zs = [torch.randn(b, c, device=dev, generator=g).requires_grad_() for _ in range(k)]
t = torch.randint(0, c, (b,), device=dev, generator=g)
if backend == "compiled_reference":
    f = torch.compile(lambda t, *zs: reference.nll(list(zs), t, None, None, "mean"), dynamic=True)
    loss_fn = lambda: f(t, *zs)
else:
    loss_fn = lambda: poe_nll(zs, t, backend=backend)
torch.autograd.grad(loss_fn(), zs)  # warm-up (compilation, allocator)
from i2m2bench.poe import fused
fused.release_workspace()  # measure a cold call: the gradient buffer is allocated inside it
if dev.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
else:
    with open("/proc/self/statm") as fh:
        base = int(fh.read().split()[1]) * 4096  # resident now: inputs + interpreter
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
grads = torch.autograd.grad(loss_fn(), zs)
held = len({{g.data_ptr() for g in grads}})  # distinct gradient buffers returned
if dev.type == "cuda":
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(dev)
else:
    with open("/proc/self/status") as fh:
        peak = [int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM")][0]
print(json.dumps({{"peak_during": peak - base, "grad_buffers": held}}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_peak_memory(benchmark, roofline, backend):
    """Peak memory of one forward+backward beyond the inputs and K gradients, in B*C buffers."""
    k, b, c = (3, 256, 3129) if QUICK else (3, 4096, 32768)
    script = _MEM_SCRIPT.format(paths=sys.path[:3], k=k, b=b, c=c, backend=backend, dev=str(DEV))
    out = {}

    def run():
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))

    benchmark.group = "peak memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    buf = b * c * 4
    during = out["peak_during"] / buf  # peak allocated during forward+backward, in B*C buffers
    benchmark.extra_info.update({"mode": "memory", "K": k, "B": b, "C": c, "backend": backend,
                                 "peak_during_buffers": during, "grad_buffers": out["grad_buffers"],
                                 "extra_beyond_grads_buffers": during - out["grad_buffers"],
                                 **{f"roofline_{key}": v for key, v in roofline.items()}})
