"""Checkpoints: a unit's trained weights (``model.pt``), written atomically and loaded as tensors
only. The recipes load the checkpoints of the units they start from through this module.

:func:`save_checkpoint` returns the sha256 of the bytes it wrote; the unit records it in its
``unit.json`` (``checkpoint_sha256``), and :func:`load_checkpoint` of a unit's own checkpoint
or of an expert a recipe starts from (:func:`recorded_digest`) refuses a file whose digest is not
that one -- another unit's or method's ``model.pt`` copied over it -- naming both digests. A
unit trained before digests were recorded is loaded unchecked.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from i2m2bench.fileio import write_bytes_atomic


def save_checkpoint(path: Path, state: dict) -> str:
    """``torch.save`` through a unique temporary file and rename. The state is serialised in
    memory first (``torch.save`` into a file turns a full disk into an obscure RuntimeError), so
    a write that fails -- a full disk, a read-only folder -- raises a :class:`WriteError` naming
    ``path`` and the cause, and leaves neither a partial checkpoint nor a temporary file: the
    unit stays incomplete and the same command trains it again."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer(), "the checkpoint",
                       hint="rerun the same command once there is room: the unit is trained again")
    return hashlib.sha256(buf.getbuffer()).hexdigest()


def recorded_digest(path: Path) -> str | None:
    """The sha256 the unit whose checkpoint is ``path`` recorded for it (``unit.json`` beside
    it), or None when it recorded none (or its ``unit.json`` cannot be read)."""
    try:
        data = json.loads((Path(path).parent / "unit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = data.get("checkpoint_sha256") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def load_checkpoint(path: Path, expected: str | None = None) -> dict:
    """Load a state dict saved by this harness; tensors only (``weights_only=True``). With
    ``expected`` (a sha256), a file with another digest is refused (``ValueError``)."""
    data = Path(path).read_bytes()
    if expected is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise ValueError(f"it is not the checkpoint this unit trained: its sha256 is "
                             f"{digest[:16]}…, unit.json records {expected[:16]}… (another "
                             "unit's model.pt copied over it?)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
