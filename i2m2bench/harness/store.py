"""Result rows: one JSON object per line in ``leaderboards/results/<board>.jsonl``.

A unit's rows replace its earlier rows (same unit hash and seed) by rewriting the file through a
temporary file and ``os.replace`` under an exclusive lock on ``<file>.lock``, so concurrent runs
serialise and a crash leaves the old file or the new one; a reader skips (and reports) a
malformed line rather than failing. Run directories hold per-unit artefacts (config, metrics,
best checkpoint).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

def stable_hash(obj) -> str:
    """12-hex-digit SHA-256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd or Path.cwd(),
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd or Path.cwd(), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(device: torch.device) -> dict:
    name = str(device)
    if device.type == "cuda":
        name = f"cuda:{torch.cuda.get_device_name(device)}"
    return {"git_commit": git_commit(), "date": utc_now(), "device": name, "torch_version": torch.__version__}


def read_rows(path: Path) -> list[dict]:
    """All complete rows of ``path``; malformed lines are reported on stderr and skipped."""
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                print(f"[i2m2bench] {path}:{lineno}: skipping a malformed (torn?) row", file=sys.stderr)
                continue
            rows.append(row)
    return rows


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load a state dict saved by this harness; tensors only (``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def locked(path: Path):
    """Exclusive lock on ``<path>.lock`` (held across read-modify-write of ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def upsert_unit_rows(path: Path, rows: list[dict]) -> None:
    """Replace the rows of the units in ``rows`` (same ``unit_hash`` and seed) and add the new ones.

    The file is rewritten via a temporary file and ``os.replace`` while holding the lock, so
    concurrent writers serialise and a crash (or a full disk) leaves the old file or the new one,
    never a torn one.
    """
    keys = {(r["unit_hash"], r["seed"]) for r in rows}
    with locked(path):
        kept = [r for r in read_rows(path) if (r.get("unit_hash"), r.get("seed")) not in keys]
        write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept + rows))


MIN_FREE_BYTES = 200 << 20


def check_writable(*dirs: Path) -> None:
    """Fail before any training when an output folder cannot be written or its disk is full."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=d, prefix=".i2m2bench-write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"{d}: output folder is not writable ({exc.strerror or exc}); "
                              "choose another with --out / --leaderboard-dir") from exc
        free = shutil.disk_usage(d).free
        if free < MIN_FREE_BYTES:
            raise OutputError(f"{d}: only {free / 2**20:.0f} MiB free on its disk; at least "
                              f"{MIN_FREE_BYTES >> 20} MiB are needed for checkpoints and results")


class OutputError(OSError):
    """An output location that cannot take the run's files."""
