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
import os
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


# ------------------------------------------------------------------ missing experts (a mask)
MASKED_SIZE = (3, 256, 3129) if QUICK else (3, 4096, 32768)
ABSENT = 0.3  # the share of (row, expert) pairs absent
MASKED_ROUNDS = 3 if QUICK else 9  # medians of 9: page faults on this kind of VM are erratic


def absent_mask(b: int, k: int, absent: float = ABSENT, seed: int = 1) -> torch.Tensor:
    """(B, K) availability: each (row, expert) absent with probability ``absent``; a row left
    with no expert gets its first one back (the API refuses empty rows)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, k, generator=g) >= absent
    mask[~mask.any(1), 0] = True
    return mask.to(DEV)


@pytest.mark.parametrize("backend", ["torch", "fused"] + (["triton"] if "triton" in BACKENDS else []))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_poe_masked(benchmark, roofline, mode, masked, backend):
    """The reference size with and without a mask (30% of (row, expert) absent), side by side
    in one run: what a missing-modality protocol costs on top of the full product."""
    k, b, c = MASKED_SIZE
    zs, t = _inputs(k, b, c, grad=mode == "fwdbwd")
    mask = absent_mask(b, k) if masked else None
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return poe_log_softmax(zs, mask=mask, backend=backend)
    else:
        def call():
            return torch.autograd.grad(poe_nll(zs, t, mask=mask, backend=backend), zs)
    last = {}

    def run():
        out = call()
        sync(DEV)
        last["out"] = out  # held until the next call returns, as in a training loop
        return out

    benchmark.group = f"masked {mode}"
    benchmark.pedantic(run, rounds=MASKED_ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update({
        "kind": "masked", "mode": mode, "K": k, "B": b, "C": c, "backend": backend,
        "masked": masked, "absent": ABSENT if masked else 0.0,
        "present_pairs": int(mask.sum()) if masked else k * b,
        **{f"roofline_{key}": v for key, v in roofline.items()}})


@pytest.mark.parametrize("masked", [False, True])
def test_poe_masked_fused_sum_only(benchmark, roofline, masked):
    """The fused forward's first step alone, the weighted sum of the experts' logits a chunk at a
    time, with and without the mask folded in (per-row weights): where the masked forward's extra
    time goes."""
    from i2m2bench.poe import fused

    k, b, c = MASKED_SIZE
    zs, _ = _inputs(k, b, c, grad=False)
    out = torch.empty(b, c, device=DEV)
    coefs = [1.0] * k
    rw = fused.RowWeights(absent_mask(b, k), coefs, torch.float32,
                          fused._rows_per_chunk(c)) if masked else None
    step = fused._rows_per_chunk(c)

    def run():
        for r0 in range(0, b, step):
            fused._sum_chunk(out[r0:r0 + step], zs, coefs, rw, r0, min(r0 + step, b))
        sync(DEV)

    benchmark.group = "masked fwd"
    benchmark.pedantic(run, rounds=MASKED_ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update({
        "kind": "masked", "mode": "fwd", "K": k, "B": b, "C": c, "backend": "sum_only",
        "masked": masked, "absent": ABSENT if masked else 0.0,
        "present_pairs": k * b, **{f"roofline_{key}": v for key, v in roofline.items()}})


def test_poe_masked_fresh_gradient_memory(benchmark, roofline):
    """The first touch of K fresh (B, C) float32 buffers at the masked size: what a masked
    backward's K separate gradients cost in memory before any arithmetic (the unmasked call
    reuses one buffer from the workspace)."""
    k, b, c = MASKED_SIZE
    last = {}

    def run():
        last["out"] = None  # freed first, as a training loop frees last step's gradients
        last["out"] = torch.empty((k, b, c), device=DEV).fill_(0)
        sync(DEV)

    benchmark.group = "masked fwdbwd"
    benchmark.pedantic(run, rounds=MASKED_ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update({
        "kind": "masked", "mode": "fwdbwd", "K": k, "B": b, "C": c, "backend": "first_touch",
        "masked": True, "absent": ABSENT, "present_pairs": k * b,
        **{f"roofline_{key}": v for key, v in roofline.items()}})


# ------------------------------------------------------------------ on a loaded machine
LOADS = (0, 1) if QUICK else (0, 1, 2, 4)
#: One "other training job": a small MLP trained in a loop with torch's default thread count
#: (all cores), as a second suite or a colleague's script would be. Says "ready" after its first
#: step, so timing starts only once it competes for the cores.
LOAD_JOB = r"""
import torch, torch.nn as nn
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))
opt = torch.optim.SGD(m.parameters(), lr=0.01)
x, y = torch.randn(256, 512), torch.randint(0, 10, (256,))
first = True
while True:
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    if first:
        print("ready", flush=True)
        first = False
"""


@pytest.fixture(params=LOADS, ids=lambda n: f"load{n}")
def load(request):
    """``n`` CPU-bound training jobs running on the same cores for the length of one test."""
    procs = [subprocess.Popen([sys.executable, "-c", LOAD_JOB], stdout=subprocess.PIPE, text=True)
             for _ in range(request.param)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", "a load job did not start"
        yield request.param
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


@pytest.mark.skipif(DEV.type != "cpu", reason="the load is CPU jobs sharing the cores")
@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_poe_under_load(benchmark, roofline, load, backend):
    """Forward+backward at the reference size while ``load`` other training jobs share the
    cores; fused and torch at each load level in the same run (their ratio is the figure)."""
    k, b, c = MASKED_SIZE
    zs, t = _inputs(k, b, c, grad=True)
    last = {}

    def run():
        last["out"] = torch.autograd.grad(poe_nll(zs, t, backend=backend), zs)
        return last["out"]

    benchmark.group = f"load {load}"
    benchmark.pedantic(run, rounds=3 if QUICK else 9, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update({
        "kind": "load", "mode": "fwdbwd", "K": k, "B": b, "C": c, "backend": backend,
        "load_jobs": load, "loadavg": os.getloadavg()[0],
        **{f"roofline_{key}": v for key, v in roofline.items()}})


# ------------------------------------------------------------------ the PoE's share at VQA size
#: VQA-VS at full size: 3,129 answers (the VQA v2 answer vocabulary the official baseline keeps),
#: batch 512 (gin/vqa_vs.gin), 768-d image, text and joint features with heads 768 -> 1536 ->
#: answers (the official heads are twice the feature width).
VQA = {"answers": 3129, "batch": 512, "dim": 768, "hidden": 1536}
if QUICK:
    VQA = {"answers": 50, "batch": 32, "dim": 16, "hidden": 32}


def _vqa_i2m2(poe_backend: str):
    from i2m2bench.data.vqa_vs.processing import task_spec
    from i2m2bench.fusion import build_fusion
    from i2m2bench.types import Split

    d, n = VQA["dim"], VQA["batch"]
    spec = task_spec("embedded", (d, d, d), tuple(f"answer{i}" for i in range(VQA["answers"])),
                     name="vqa_vs_full_size")
    head = {"width": None, "hidden": VQA["hidden"], "head": "ln_gelu"}
    torch.manual_seed(0)
    model = build_fusion("i2m2", spec, inter="unimodal",
                         inter_options={**head, "modality": "joint"}, intra_options=head).to(DEV)
    model.poe_backend = poe_backend
    g = torch.Generator().manual_seed(0)
    inputs = {m.name: torch.randn(n, d, generator=g).to(DEV) for m in spec.modalities}
    target = torch.zeros(n, VQA["answers"])  # VQA soft scores: up to 3 answers per question
    cols = torch.randint(0, VQA["answers"], (n, 3), generator=g)
    target.scatter_(1, cols, torch.tensor([1.0, 0.6, 0.3]).expand(n, 3))
    return model, Split(inputs, target.to(DEV), "train"), spec


@pytest.mark.parametrize("backend", ["torch", "fused"] + (["triton"] if "triton" in BACKENDS else []))
def test_poe_share_at_vqa_size(benchmark, roofline, backend):
    """The share of an I2M2 training step (forward, loss, backward, on one batch) spent in the
    product of experts, measured as the harness measures it for every board
    (:func:`i2m2bench.harness.training.poe_share`), at VQA-VS's full answer count."""
    from i2m2bench.harness.training import poe_share

    model, split, spec = _vqa_i2m2(backend)
    shares = []

    def run():
        shares.append(poe_share(model, split, spec, VQA["batch"], reps=5))

    benchmark.group = "vqa share"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({
        "kind": "share", "mode": "train-step", "backend": backend, **VQA, "shares": shares,
        "share": sorted(shares)[len(shares) // 2],  # the median round
        "parameters": sum(p.numel() for p in model.parameters()),
        **{f"roofline_{key}": v for key, v in roofline.items()}})
