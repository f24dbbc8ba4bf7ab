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


#: The paths of the suite's checkout whose changes change what a run records: the package (its
#: code, and the installed suites under i2m2bench/gin/) and the ``gin`` link at the root. Other
#: tracked files -- docs, scripts, the leaderboards/ a run itself writes -- produce no row.
CODE_PATHS = ("i2m2bench", "gin")


def suite_checkout() -> Path | None:
    """The git work tree the running ``i2m2bench`` package comes from, or None for an install
    outside one (a wheel in site-packages)."""
    where = _suite_repo()
    return where if (where / ".git").exists() else None


def dirty_files(checkout: Path, paths: tuple[str, ...] = CODE_PATHS) -> list[str] | None:
    """Tracked files under :data:`CODE_PATHS` of the work tree ``checkout`` that differ from its
    commit (modified, staged, deleted or renamed; untracked files are not counted, as git's own
    ``describe --dirty``), sorted; None when git cannot tell (no git, not a work tree)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain=v1", "-z", "--untracked-files=no",
                              "--", *paths], cwd=checkout, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    entries, files = out.stdout.decode(errors="replace").split("\0"), []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) > 3:
            files.append(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                i += 1  # a rename's or copy's old path follows; the new one counts
    return sorted(set(files))


def git_commit(cwd: Path | None = None) -> str:
    """Commit of the suite's own repository (not the current directory's), ``+dirty`` when
    tracked files of its code (:data:`CODE_PATHS`) differ; ``unknown`` for an install outside a
    git work tree."""
    where = cwd or suite_checkout()
    if where is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty_files(where) != [] else "")


def published_folder(results_dir: Path | str, checkout: Path | None) -> bool:
    """Whether the leaderboard folder ``results_dir`` is published: the checkout's own
    ``leaderboards/`` or a folder inside it (``machines/<name>/``, ``gpu/``). Any other folder
    is a scratch board (tests, CI, your own runs); an install has no published folder."""
    if checkout is None:
        return False
    home = (checkout / "leaderboards").resolve()
    here = Path(results_dir).expanduser().resolve()
    return here == home or home in here.parents


def dirty_tree_problem(results_dir: Path | str, paths: tuple[str, ...] = CODE_PATHS,
                       made: str = "rows") -> str | None:
    """Why a run may not write rows (``made``: or figures) into ``results_dir`` from this tree
    -- the folder is published (:func:`published_folder`) and the code under ``paths`` differs
    from its commit (:func:`dirty_files`), or git cannot tell -- as one line naming a few files
    and ``--allow-dirty``; None when it may."""
    checkout = suite_checkout()
    if not published_folder(results_dir, checkout):
        return None
    dirty = dirty_files(checkout, paths)
    if dirty == []:
        return None
    if dirty is None:
        what = f"git cannot tell whether the code in {checkout} matches its commit"
    else:
        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        what = f"{checkout} has uncommitted changes to {shown}"
    then = ("the board then says which rows are uncommitted" if made == "rows" else
            "each figure then records its commit as +dirty")
    return (f"{results_dir}: the published leaderboards; {what}, so its {made} would come from "
            "code that is in no commit. Commit (or stash) the changes, write to another "
            f"--leaderboard-dir, or pass --allow-dirty ({then})")


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
