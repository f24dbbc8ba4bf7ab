"""Checkpoints: a unit's trained weights (``model.pt``), written atomically and loaded as tensors
only. The recipes load the checkpoints of the units they start from through this module."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from i2m2bench.fileio import write_bytes_atomic


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` through a unique temporary file and rename. The state is serialised in
    memory first (``torch.save`` into a file turns a full disk into an obscure RuntimeError), so
    a write that fails -- a full disk, a read-only folder -- raises a :class:`WriteError` naming
    ``path`` and the cause, and leaves neither a partial checkpoint nor a temporary file: the
    unit stays incomplete and the same command trains it again."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer(), "the checkpoint",
                       hint="rerun the same command once there is room: the unit is trained again")


def load_checkpoint(path: Path) -> dict:
    """Load a state dict saved by this harness; tensors only (``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)
