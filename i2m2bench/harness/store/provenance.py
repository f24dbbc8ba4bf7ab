"""Provenance: what produced a unit's records (the suite's commit, device, torch, Python,
plugin versions and the numerics settings), written once per results file and referenced by id
(:mod:`i2m2bench.harness.store.records`); plus the stable hash every id and unit hash uses."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from pathlib import Path

import torch

from i2m2bench._version import __version__


def stable_hash(obj) -> str:
    """12-hex-digit SHA-256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _suite_repo() -> Path:
    """The folder above the installed ``i2m2bench`` package (its git work tree, if any)."""
    return Path(__file__).resolve().parents[3]


def git_commit(cwd: Path | None = None) -> str:
    """Commit of the suite's own repository (not the current directory's), ``+dirty`` when
    tracked files differ; ``unknown`` for an install outside a git work tree."""
    where = cwd or _suite_repo()
    if not (where / ".git").exists() and cwd is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    """The current UTC time, ISO format to the second (a record's date)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def plugin_versions() -> dict[str, str]:
    """Distribution name -> version of every plugin loaded in this process (none when plugins
    are switched off)."""
    from i2m2bench.registry import loaded_plugins

    return dict(sorted(loaded_plugins().items()))


def provenance(device: torch.device) -> dict:
    """What produced a run: the suite's commit, device, torch, Python and plugin versions, and
    the settings that decide its floating-point numbers (:mod:`i2m2bench.numerics`)."""
    from i2m2bench.numerics import numerics

    name = str(device)
    if device.type == "cuda":
        name = f"cuda:{torch.cuda.get_device_name(device)}"
    return {"git_commit": git_commit(), "device": name, "torch_version": torch.__version__,
            "i2m2bench_version": __version__, "python_version": platform.python_version(),
            "plugins": plugin_versions(), "numerics": numerics(device)}
