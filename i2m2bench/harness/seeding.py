"""Seeding and device selection.

The official I2M2 code and MultiBench seed nothing; here every RNG (python, numpy, torch, CUDA)
is seeded and deterministic algorithms are on, so the same seed repeats the same numbers.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


CUBLAS_WORKSPACE = ":4096:8"


def deterministic_setup() -> None:
    """What deterministic CUDA needs before any CUDA work (probe batches included): a fixed
    cuBLAS workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS initialises; a value the
    user set is kept), cuDNN's deterministic algorithms and no benchmarking (which picks
    algorithms by timing, so differently from run to run), deterministic algorithms everywhere
    (an op without a deterministic implementation is an error naming it). Called by the runner
    before a task is built; :func:`seed_everything` repeats it per unit."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    # With deterministic algorithms on, torch also fills every fresh tensor with NaN to expose
    # reads of uninitialised memory; that costs ~13% of an AV-MNIST training step on CPU and
    # changes no result of a correct op (the determinism tests compare runs bit for bit).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy, torch (CPU and CUDA); return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        deterministic_setup()
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named device (checked)."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: CUDA is not available on this machine")
    return dev
