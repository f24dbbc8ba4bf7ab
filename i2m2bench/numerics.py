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


#: The CPU features the math libraries dispatch on (``/proc/cpuinfo`` flags): PyTorch's own
#: kernels follow ``cpu_capability``, but MKL and oneDNN pick their code from these features
#: themselves -- forcing ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU leaves their AVX-512
#: code in place, so such a run is not what a genuine AVX2 CPU computes.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
             "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8")
#: Environment variables that change which kernels run (recorded only when set).
DISPATCH_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "MKL_DEBUG_CPU_TYPE",
                "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE")


def cpu_features() -> dict:
    """Vendor, family/model and :data:`ISA_FLAGS` of the first CPU in ``/proc/cpuinfo``
    ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                break  # the first processor only
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        return {}
    out = {}
    if "vendor_id" in fields:
        out["cpu_vendor"] = fields["vendor_id"]
    if "cpu family" in fields and "model" in fields:
        out["cpu_family_model"] = f"{fields['cpu family']}/{fields['model']}"
    if "flags" in fields:
        have = set(fields["flags"].split())
        out["isa"] = [f for f in ISA_FLAGS if f in have]
    return out


def math_libraries() -> dict:
    """The BLAS and oneDNN builds PyTorch runs (from ``torch.__config__.show()``)."""
    import re

    text = torch.__config__.show()
    out = {}
    for key, pattern in (("mkl", r"Math Kernel Library Version ([\d.]+)"),
                         ("onednn", r"MKL-DNN (v[\w.]+)"), ("blas", r"BLAS_INFO=(\w+)"),
                         ("openmp", r"OpenMP (\d+)")):
        m = re.search(pattern, text)
        if m:
            out[key] = m.group(1)
    return out


def numerics(device: torch.device) -> dict:
    """The settings that decide a run's numbers on ``device`` (JSON-ready): the CPU and the
    features its math libraries dispatch on, PyTorch's kernel capability (and any environment
    variable forcing a kernel choice), threads, determinism, library versions; on CUDA the GPU
    and its libraries."""
    out = {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "deterministic": DETERMINISTIC,
           "torch": torch.__version__, **cpu_features(), "math": math_libraries()}
    forced = {k: os.environ[k] for k in DISPATCH_ENV if os.environ.get(k)}
    if forced:
        out["dispatch_env"] = forced
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
    cap = n.get("cpu_capability", "?")
    forced = (n.get("dispatch_env") or {})
    if forced:
        cap += " (forced: " + ", ".join(f"{k}={v}" for k, v in sorted(forced.items())) + ")"
    return f"{where}, {cap}, {n.get('threads', '?')} threads{ranks}{det}"


__all__ = ["DETERMINISTIC", "DISPATCH_ENV", "ISA_FLAGS", "cpu_features", "cpu_model",
           "math_libraries", "numerics", "numerics_label"]
