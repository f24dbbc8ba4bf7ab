"""What decides a run's floating-point numbers, recorded in every row's provenance.

A unit hash names a unit's *settings* (data, model, schedule, seed); it does not name the
numbers training produces from them. Those also depend on the machine: which vectorised kernels
PyTorch picks on this CPU (``torch.backends.cpu.get_cpu_capability()``: AVX-512, AVX2, ...;
``ATEN_CPU_CAPABILITY`` forces a lower one), how many threads split each reduction, the GPU and
its library versions, and whether deterministic algorithms are on. The same settings on the same
machine with the same numerics give bit-identical rows (``tests/reliability/test_faults.py``: the smoke suite twice, row by row); change
any of these and the numbers may move — on the embedded AV-MNIST suite, by several points for a
weak baseline. So every run records them (:func:`numerics`, stored in the provenance record each
row points to), boards name the machine(s) their rows came from (:func:`numerics_label`), and a
store that replaces rows made with other numerics says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

#: What the harness enforces for every unit (``i2m2bench.harness.seeding.seed_everything``).
DETERMINISTIC = True


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``; else ``"cpu"``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip() or "cpu"
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def numerics(device: torch.device) -> dict:
    """The settings that decide a run's numbers on ``device`` (JSON-ready)."""
    out = {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "deterministic": DETERMINISTIC,
           "torch": torch.__version__}
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out["world_size"] = dist.get_world_size()  # data-parallel: the gradient reduction order
    if device.type == "cuda":
        out.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_benchmark=False,
                   cublas_workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    return out


def numerics_label(n: dict | None, device: str = "") -> str:
    """A short line naming a machine's numerics, e.g. ``cpu: AMD EPYC, AVX512, 2 threads``;
    ``device`` alone when ``n`` is None (rows made before numerics were recorded)."""
    if not n:
        return device
    where = f"{n['gpu']} (CUDA {n.get('cuda')})" if n.get("gpu") else f"cpu: {n.get('cpu', '?')}"
    det = "" if n.get("deterministic", True) else ", non-deterministic"
    ranks = f", {n['world_size']} data-parallel ranks" if n.get("world_size", 1) > 1 else ""
    return f"{where}, {n.get('cpu_capability', '?')}, {n.get('threads', '?')} threads{ranks}{det}"


__all__ = ["DETERMINISTIC", "cpu_model", "numerics", "numerics_label"]
