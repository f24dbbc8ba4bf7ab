"""The prepared FastMRI cache: its format, and opening it verified (:func:`load_cache`).

:func:`~i2m2bench.data.fastmri.real_prepare.prepare` writes the cache; this module reads it: it
checks that ``manifest.json`` parses and that every file matches its entry
(:func:`i2m2bench.data.common.manifest.npy_problem`) before handing out the splits. The format
is described in :mod:`i2m2bench.data.fastmri.real`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i2m2bench.data.base import DataError, path_problem
from i2m2bench.data.common import chain
from i2m2bench.data.common import manifest as mf
from i2m2bench.data.common.disk import DiskSplit
from i2m2bench.data.common.manifest import one_line
from i2m2bench.data.fastmri.processing import LABELS, SHIFT

FORMAT = "i2m2bench-fastmri-cache"
#: 2: the manifest records the inputs and is sealed (content_sha256; data/common/chain.py)
FORMAT_VERSION = 2
SPLITS = ("train", "val", "test")
PREPARE_HINT = "run `python -m i2m2bench prepare fastmri --data-root DIR` (DIR holding fastmri/)"


def cache_file_names() -> list[str]:
    """The files of a cache, as its manifest lists them (every split's magnitude, phase and
    labels, and the shift set's magnitude and phase)."""
    names = [f"{s}_{m}.npy" for s in SPLITS for m in ("magnitude", "phase", "labels")]
    return names + [f"test_{SHIFT}_magnitude.npy", f"test_{SHIFT}_phase.npy"]


def default_cache(folder: str | os.PathLike) -> Path:
    """Where :func:`prepare` writes the cache of ``folder`` by default: ``folder/cache``."""
    return Path(folder).expanduser() / "cache"


@dataclass
class CachedFastMRI:
    """An opened cache: ``splits`` (train/val/test) and ``shifts`` (``undersampled4x``: the
    undersampled test set) as :class:`DiskSplit` s with modalities ``magnitude`` and ``phase``
    (per sample (1, H, W) float16: magnitude / ``mag_ref``, phase in radians) and float32 (N, 4)
    0/1 targets in :data:`LABELS` order; ``manifest``: the parsed manifest.json."""

    path: Path
    layout: str
    width: int
    crop: tuple[int, int]
    mag_ref: float
    counts: dict[str, int]
    manifest: dict
    splits: dict[str, DiskSplit]
    shifts: dict[str, DiskSplit]

    #: recorded inputs no longer on disk (not checked; the raw files may be deleted once prepared)
    inputs_gone: int = 0

    @property
    def fingerprint(self) -> str:
        """The cache's content identity: its manifest's seal (``content_sha256``: the recorded
        inputs' sha256, the geometry, ``mag_ref``, the settings and every file's sha256; not
        where or when it was written), so the same data prepared twice give the same one."""
        return self.manifest["content_sha256"]

    def rows(self, split: str) -> list[tuple[str, int]]:
        """(volume id, slice index) of each row of ``split`` (a shift: that of its split)."""
        split = self.manifest["shifts"][split]["split"] if split in self.shifts else split
        entry = self.manifest["splits"][split]
        ids = entry.get("slice_ids") or [list(range(n)) for n in entry["slices"]]
        return [(v, s) for v, slices in zip(entry["volumes"], ids) for s in slices]


def _stale(path: Path, manifest: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}; the cache no longer matches its manifest {manifest}: "
                     f"re-run prepare ({PREPARE_HINT})")


def _check_file(path: Path, entry: dict, manifest: Path, verify: str,
                probe: tuple[int, int]) -> None:
    problem = mf.npy_problem(path, entry, verify, manifest, probe)
    if problem is not None:
        raise _stale(path, manifest, problem)


def load_cache(cache: str | os.PathLike, verify: str = "quick",
               root: str | os.PathLike | None = None) -> CachedFastMRI:
    """Open a cache written by :func:`prepare`: check that ``manifest.json`` parses and that every
    file exists with the recorded size, shape and dtype, and its probe sha256 (``verify='quick'``, alias ``'probe'``,
    the default: milliseconds), its full sha256 (``'full'``: reads every byte) or nothing more
    (``'none'``). The manifest's seal and the inputs it records (under ``root``, the data root;
    default: the parent of the folder it was prepared from) are checked too
    (:func:`i2m2bench.data.common.chain.check_manifest`). A missing or unreadable manifest, an
    edited one, a changed input, or a file that no longer matches it, is a DataError naming the
    file and saying to re-run prepare."""
    verify = "quick" if verify == "probe" else verify  # the older spelling
    if verify not in ("quick", "full", "none"):
        raise ValueError(f"fastmri: verify must be 'quick', 'full' or 'none'; got {verify!r}")
    cache = Path(cache).expanduser()
    problem = path_problem(cache, "folder")
    if problem is not None:
        raise DataError(f"{cache}: {problem}; expected the fastMRI cache folder: {PREPARE_HINT}")
    mpath = cache / "manifest.json"
    problem = path_problem(mpath, "file")
    if problem is not None:
        raise DataError(f"{mpath}: {problem}; expected the manifest of a complete fastMRI cache: "
                        f"{PREPARE_HINT}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{mpath}: cannot read it as JSON ({one_line(exc)}); expected the "
                        f"manifest of a fastMRI cache: {PREPARE_HINT}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mpath}: not an i2m2bench fastMRI cache manifest (format "
                        f"{manifest.get('format') if isinstance(manifest, dict) else None!r}); "
                        f"{PREPARE_HINT}")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataError(f"{mpath}: cache format version {manifest.get('version')!r}; this "
                        f"i2m2bench reads version {FORMAT_VERSION}: {PREPARE_HINT}")
    try:
        source_root = Path(manifest["source"]).parent if root is None else Path(root)
        gone = chain.check_manifest(manifest, mpath, source_root, verify, PREPARE_HINT)
        files = manifest["files"]
        probe = (int(manifest["probe"]["blocks"]), int(manifest["probe"]["block_bytes"]))
        for name in cache_file_names():
            if name not in files:
                raise DataError(f"{mpath}: lists no {name}; the manifest is incomplete: "
                                f"{PREPARE_HINT}")
            _check_file(cache / name, files[name], mpath, verify, probe)
        splits, counts = {}, {}
        for split in SPLITS:
            labels = np.load(cache / f"{split}_labels.npy", allow_pickle=False)
            counts[split] = int(manifest["splits"][split]["count"])
            splits[split] = DiskSplit.from_npy(
                {m: cache / f"{split}_{m}.npy" for m in ("magnitude", "phase")},
                torch.from_numpy(labels.astype(np.float32)), split)
        shifts = {SHIFT: DiskSplit.from_npy(
            {m: cache / f"test_{SHIFT}_{m}.npy" for m in ("magnitude", "phase")},
            splits["test"].target.clone(), SHIFT)}
        return CachedFastMRI(cache, str(manifest["layout"]), int(manifest["width"]),
                             tuple(int(c) for c in manifest["crop"]), float(manifest["mag_ref"]),
                             counts, manifest, splits, shifts, gone)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{mpath}: malformed manifest ({one_line(exc)}); {PREPARE_HINT}") from exc


__all__ = ["CachedFastMRI", "FORMAT", "FORMAT_VERSION", "PREPARE_HINT", "SHIFT", "SPLITS", "cache_file_names", "default_cache", "load_cache"]
