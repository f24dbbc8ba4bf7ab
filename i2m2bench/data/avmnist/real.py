"""AV-MNIST's real files (MultiBench layout), read in place: checks, values, the splits.

The layout, the split and the checks are described in :mod:`i2m2bench.data.avmnist`. AV-MNIST has
nothing to prepare: :func:`load` streams the files as they are (memory-mapped row ranges), and
:func:`verify` runs the same checks without building the task.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from i2m2bench.data.avmnist.processing import DIGITS, MODALITIES
from i2m2bench.data.base import DataError, path_problem
from i2m2bench.data.common.disk import DiskSplit, NpyColumn, iter_chunks, open_npy
from i2m2bench.types import Split, Task, TaskSpec

N_TRAIN, N_VAL, N_TEST = 55_000, 5_000, 10_000
REAL_HINT = ("get AV-MNIST from MultiBench (https://github.com/pliang279/MultiBench, "
                 "'AV-MNIST' data link) and unpack it so that <data_root>/avmnist/image/ exists")


#: dtype kinds a data file may hold (signed, unsigned integers, floats); labels: see _labels.
_NUMERIC = "iuf"
_KIND_NAMES = {"U": "strings", "S": "byte strings", "O": "Python objects", "V": "structured records",
               "c": "complex numbers", "b": "booleans", "M": "datetimes", "m": "timedeltas"}


def _load_npy(path: Path, per_sample: tuple[int, ...], rows: int, what: str) -> np.ndarray:
    """Load ``path`` and check it holds ``rows`` samples of ``prod(per_sample)`` numeric values
    each."""
    shape = f"({rows}, {', '.join(map(str, per_sample))})" if per_sample else f"({rows},)"
    problem = path_problem(path, "file")
    if problem == "not found":
        raise DataError(f"{path}: file not found; expected {what} with shape {shape}. To use the "
                        f"real data, {REAL_HINT}.")
    if problem is not None:
        raise DataError(f"{path}: {problem}; expected a .npy file of {what} with shape {shape}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated, not an .npy, object array, ...
        if any(k in str(exc) for k in ("Object arrays", "Python objects", "pickle")):
            raise DataError(f"{path}: cannot read as a .npy array: an object array (dtype object), "
                            f"expected numeric {what} (loading it would need pickle, which is "
                            "never used on data files)") from exc
        raise DataError(f"{path}: cannot read as a .npy array ({type(exc).__name__}: {exc}); "
                        f"expected {what}") from exc
    if isinstance(arr, np.lib.npyio.NpzFile):  # np.load opens a zip archive whatever its name
        names = ", ".join(arr.files[:6]) or "none"
        arr.close()
        raise DataError(f"{path}: an .npz archive (arrays: {names}) named .npy, not an .npy "
                        f"array; expected a .npy file of {what} with shape {shape}")
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: not a .npy array; expected {what}")
    if arr.dtype.kind not in _NUMERIC:
        kind = _KIND_NAMES.get(arr.dtype.kind, f"dtype kind {arr.dtype.kind!r}")
        raise DataError(f"{path}: dtype {arr.dtype} ({kind}), expected numeric {what}")
    n_values = int(np.prod(per_sample))
    per = int(np.prod(arr.shape[1:])) if arr.ndim >= 1 else -1
    if arr.ndim < 1 or arr.shape[0] != rows or (per_sample and per != n_values):
        raise DataError(f"{path}: found shape {tuple(arr.shape)}, expected ({rows}, "
                        f"{', '.join(map(str, per_sample))}) ({what}; {n_values} values per sample)"
                        if per_sample else
                        f"{path}: found shape {tuple(arr.shape)}, expected ({rows},) ({what})")
    return arr


#: Above this maximum a file is taken to hold pixel-scale values (MultiBench divides by 255); at
#: or below it, every value lies in [.., 1]: the file was already divided by 255.
ALREADY_DIVIDED_MAX = 1.0


def _check_values(arr: np.ndarray, path: Path, shape: tuple[int, ...]) -> tuple[NpyColumn | None, bool]:
    """Check a data file's values chunk by chunk (never holding a float copy of the file): every
    value finite, and pixel-scale. MultiBench's ``get_dataloader`` divides both arrays by 255 in
    place and applies nothing else, so any finite value is accepted as stored (the images, MNIST
    with 75% of the energy removed by PCA, may be negative or above 255) and the model sees
    value / 255 (``ModalitySpec.scale``). Refused: NaN/Inf, and a file whose values all lie at or
    below 1 -- already divided by 255, which dividing again would silently wreck.

    Returns (the file as a column whose rows are viewed as ``shape``, or None for a
    Fortran-order file, which cannot be streamed by rows; whether the values are integers in
    0..255, which are then read as uint8)."""
    try:
        col = open_npy(path, shape)
    except ValueError:  # Fortran order: read whole below
        col = None
    chunks = iter_chunks(col) if col is not None else (np.asarray(arr),)
    n_bad, lo, hi, integral = 0, math.inf, -math.inf, True
    for chunk in chunks:
        if chunk.dtype == np.uint8:
            if chunk.size:
                lo, hi = min(lo, int(chunk.min())), max(hi, int(chunk.max()))
            continue
        xf = np.asarray(chunk).astype(np.float32, copy=False)  # as the model will see them
        bad = int(xf.size - np.count_nonzero(np.isfinite(xf)))
        n_bad += bad
        if bad or n_bad or xf.size == 0:
            continue
        lo, hi = min(lo, float(xf.min())), max(hi, float(xf.max()))
        integral = integral and bool(np.array_equal(np.round(xf), xf))
    if n_bad:
        raise DataError(f"{path}: {n_bad} NaN/Inf values; expected finite pixel-scale values "
                        "(MultiBench divides them by 255)")
    if hi <= ALREADY_DIVIDED_MAX:
        raise DataError(f"{path}: every value lies in [{lo:g}, {hi:g}], at or below 1: the file "
                        "looks already divided by 255, and the loader divides by 255 as "
                        "MultiBench does (it would divide twice). Use the files as MultiBench "
                        "ships them (pixel-scale values).")
    as_uint8 = integral and lo >= 0 and hi <= 255
    if as_uint8 and col is not None and arr.dtype != np.uint8:  # integers 0..255 stored wider
        col = replace(col, cast="u1")
    return col, as_uint8


def _in_memory(arr: np.ndarray, shape: tuple[int, ...], integral: bool) -> torch.Tensor:
    """(N, *shape) tensor copied into memory: uint8 when every value is an integer in 0..255,
    else float32. Only for files that cannot be read by rows (Fortran order)."""
    x = np.asarray(arr).reshape(arr.shape[0], *shape)
    if x.dtype != np.uint8:
        x = x.astype(np.float32, copy=False)  # checked (and converted) as float32
    return torch.from_numpy(np.array(x.astype(np.uint8, copy=False) if integral else x, copy=True))


def _labels(path: Path, rows: int) -> torch.Tensor:
    y = np.asarray(_load_npy(path, (), rows, "integer digit labels 0..9"))
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
        raise DataError(f"{path}: found {y.dtype} {tuple(y.shape)}, expected ({rows},) integer labels")
    if y.min() < 0 or y.max() > 9:
        raise DataError(f"{path}: labels span [{y.min()}, {y.max()}]; expected 0..9")
    return torch.from_numpy(y.astype(np.int64))


def load(root: Path, split_sizes: tuple[int, int, int] = (N_TRAIN, N_VAL, N_TEST)) -> Task:
    """Read MultiBench's AV-MNIST files from ``root`` (the ``avmnist`` folder).

    ``split_sizes`` = (train, val, test) rows; the train file holds train + val rows. Only
    fixture-sized copies (tests) change it.
    """
    n_train, n_val, n_test = split_sizes
    files, labels = {}, {}
    for split, rows in (("train", n_train + n_val), ("test", n_test)):
        img = _load_npy(root / "image" / f"{split}_data.npy", (784,), rows, "MNIST images, 784 values")
        aud = _load_npy(root / "audio" / f"{split}_data.npy", (112, 112), rows,
                        "audio spectrograms, 112x112 values")
        labels[split] = _labels(root / f"{split}_labels.npy", rows)
        for m, arr, shape in (("image", img, (1, 28, 28)), ("audio", aud, (1, 112, 112))):
            path = root / m / f"{split}_data.npy"
            files[split, m] = (arr, shape, *_check_values(arr, path, shape))
    spec = TaskSpec("avmnist", "multibench-1", MODALITIES, "multiclass", 10, DIGITS,
                    source="real", description="AV-MNIST (MultiBench files)")
    ty, sy = labels["train"], labels["test"]
    if all(col is not None for _, _, col, _ in files.values()):
        # Memory-mapped: train and validation are row ranges of the same train files.
        col = {key: c for key, (_, _, c, _) in files.items()}
        train_cols = {m: col["train", m] for m in ("image", "audio")}
        splits = {
            "train": DiskSplit({m: c.subset(0, n_train) for m, c in train_cols.items()},
                               ty[:n_train], "train"),
            "val": DiskSplit({m: c.subset(n_train, n_val) for m, c in train_cols.items()},
                             ty[n_train:], "val"),
            "test": DiskSplit({m: col["test", m] for m in ("image", "audio")}, sy, "test"),
        }
    else:  # a Fortran-order file: everything in memory, as stored values (uint8 when integers)
        x = {key: _in_memory(arr, shape, integral) for key, (arr, shape, _, integral) in files.items()}
        (ti, ta), (si, sa) = (x["train", "image"], x["train", "audio"]), (x["test", "image"], x["test", "audio"])
        splits = {
            "train": Split({"image": ti[:n_train], "audio": ta[:n_train]}, ty[:n_train], "train"),
            "val": Split({"image": ti[n_train:], "audio": ta[n_train:]}, ty[n_train:], "val"),
            "test": Split({"image": si, "audio": sa}, sy, "test"),
        }
    return Task(spec, splits, {}, options={"source": "real", "data_root": str(root),
                                           "split_sizes": list(split_sizes)})


def verify(root: Path, level: str = "quick") -> str:
    """Check the AV-MNIST files under ``root`` (the ``avmnist`` folder) as :func:`load` does:
    every file's type, shape and labels, and every value (finite, pixel-scale) -- both levels
    read every byte, there being no manifest to compare with; a one-line report."""
    task = load(root)
    return (f"avmnist: the files under {root} are well formed ({level}): "
            + ", ".join(f"{k} {len(s)}" for k, s in task.splits.items()) + " rows")

__all__ = ["ALREADY_DIVIDED_MAX", "N_TEST", "N_TRAIN", "N_VAL", "REAL_HINT", "load", "verify"]
