"""MIMIC-III as MultiBench preprocessed it: reading, checking and processing ``im.pk`` /
``mimic.npz`` exactly as the official I2M2 code does, where it is right.

**The file** (MultiBench ``datasets/mimic/get_data.py``; the copy in the official I2M2 code,
divyam3897/I2M2 @ 7742765, ``avmnist_and_mimic/datasets/mimic/get_data.py`` lines 30-34, 57, 74):
a pickled dict of NumPy arrays,

============================  ============  =============================================
key                           shape         meaning
============================  ============  =============================================
``ep_tdata``                  (N, 24, 12)   hourly values of 12 variables (time series)
``adm_features_all``          (N, 5)        static features of the admission
``adm_labels_all``            (N, 6)        mortality indicators (columns 1..5 used)
``y_icd9``                    (N, 20)       ICD-9 group indicators (columns 1 and 7 used)
============================  ============  =============================================

Read from ``<data root>/mimic/``: ``mimic.npz`` (the same arrays, written once by ``python -m
i2m2bench prepare mimic``, read with ``allow_pickle=False``) when present, else ``im.pk`` through
the allow-list unpickler (:mod:`i2m2bench.data.common.safe_pickle`: a pickle that names anything but
NumPy array reconstruction and plain containers is refused before anything in it runs).

**Processing** (:func:`process`), as ``get_data.py``: NaN and Inf become 0 (lines 36-39); each
static feature and each series variable (over samples and hours) is z-scored with NumPy's
population mean and standard deviation (lines 41-49). The official code takes these statistics
over the *whole* file, test included; the default here is the training split's, and
``stats='all'`` restores the official choice (docs/fidelity.md). A variable with no spread in
the statistics' rows is centred and left unscaled (the official division would give NaN).

**Split** (:func:`official_split`, lines 78-84): the samples are shuffled with Python's
``random.seed(10); random.shuffle(...)``; validation is the first ``N // 10``, test the next
``N // 10`` (up to ``N // 5``), training the rest. :func:`random.shuffle`'s permutation depends
only on the list's length and the generator's state, so shuffling the indices reproduces the
official order exactly.

**Labels** (:func:`labels`): mortality, six classes, the first column among
``adm_labels_all[:, 1..5]`` that is positive, else 0 (lines 56-72); ICD-9 140-239 is
``y_icd9[:, 1]`` and 460-519 ``y_icd9[:, 7]`` (``mimic_main.py`` lines 37-42: tasks ``mimic_1``
and ``mimic_7``), binary.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from i2m2bench.data.base import DataError, file_sha256, path_problem

PICKLE, NPZ = "im.pk", "mimic.npz"
#: key -> per-sample shape (the official layout).
LAYOUT: dict[str, tuple[int, ...]] = {"ep_tdata": (24, 12), "adm_features_all": (5,),
                                      "adm_labels_all": (6,), "y_icd9": (20,)}
LABEL_KEYS = ("adm_labels_all", "y_icd9")
#: task -> (label key, column or None for the six-class mortality rule, number of classes)
TASKS: dict[str, tuple[str, int | None, int]] = {
    "mortality": ("adm_labels_all", None, 6),
    "icd9_140_239": ("y_icd9", 1, 2),
    "icd9_460_519": ("y_icd9", 7, 2),
}
SPLIT_SEED = 10  # random.seed(10) in get_data.py, line 78
_SOURCE_KEY = "source_sha256"


def check_arrays(arrays, source: str | os.PathLike) -> dict[str, np.ndarray]:
    """The four arrays of ``arrays`` (a dict), checked: every key present, numeric arrays of the
    official per-sample shapes, one sample count, labels 0 or 1 -- else a DataError naming
    ``source`` and the field. Other keys are ignored."""
    if not isinstance(arrays, dict):
        raise DataError(f"{source}: expected a dict of NumPy arrays with keys "
                        f"{', '.join(LAYOUT)}; got a {type(arrays).__name__}")
    missing = [k for k in LAYOUT if k not in arrays]
    if missing:
        found = ", ".join(sorted(map(str, arrays))) or "none"
        raise DataError(f"{source}: missing key(s) {', '.join(missing)} (found: {found}); MultiBench's "
                        f"MIMIC file holds {', '.join(LAYOUT)}")
    out, n = {}, None
    for key, shape in LAYOUT.items():
        a = arrays[key]
        if not isinstance(a, np.ndarray) or not (np.issubdtype(a.dtype, np.number)
                                                 or a.dtype == np.bool_):
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise DataError(f"{source}: field {key!r} must be a numeric NumPy array; got {kind}")
        if a.ndim != len(shape) + 1 or a.shape[1:] != shape:
            raise DataError(f"{source}: field {key!r} has shape {a.shape}; expected (N, "
                            f"{', '.join(map(str, shape))})")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise DataError(f"{source}: field {key!r} has {a.shape[0]} samples but "
                            f"'ep_tdata' has {n}; every field holds one row per admission")
        out[key] = a
    if n == 0:
        raise DataError(f"{source}: the arrays hold no samples")
    for key in LABEL_KEYS:
        a = out[key]
        bad = ~np.isin(a, (0, 1))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{source}: field {key!r} holds {a[row, col]!r} at row {row}, column "
                            f"{col} ({int(bad.sum())} value(s) in all); labels must be 0 or 1")
    return out


def read(folder: Path) -> tuple[dict[str, np.ndarray], Path]:
    """(the checked arrays, the file read) from ``folder`` (``<data root>/mimic``):
    ``mimic.npz`` when present, else ``im.pk``. A ``mimic.npz`` prepared from another ``im.pk``
    than the one beside it is refused."""
    npz, pk = folder / NPZ, folder / PICKLE
    if path_problem(npz) is None:
        try:
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{npz}: not a readable .npz of NumPy arrays ({exc}); rerun "
                            "`python -m i2m2bench prepare mimic --data-root DIR`") from exc
        recorded = arrays.pop(_SOURCE_KEY, None)
        if recorded is not None and path_problem(pk) is None and str(recorded) != file_sha256(pk):
            raise DataError(f"{npz} was prepared from another {PICKLE} than {pk} (sha256 "
                            f"{str(recorded)[:12]}...); rerun `python -m i2m2bench prepare mimic "
                            "--data-root DIR`, or remove one of them")
        return check_arrays(arrays, npz), npz
    problem = path_problem(pk)
    if problem is not None:
        raise DataError(f"{folder}: neither {NPZ} nor {PICKLE} is readable ({pk}: {problem}); put "
                        f"MultiBench's MIMIC-III file there as {PICKLE} (README: 'MIMIC-III')")
    from i2m2bench.data.common import safe_pickle as safe_pickle

    return check_arrays(safe_pickle.load(pk), pk), pk


def prepare(folder: Path) -> Path:
    """Convert ``folder/im.pk`` (read through the allow-list unpickler, checked) into
    ``folder/mimic.npz``, written atomically with the pickle's sha256; returns its path.
    Nothing is written when the pickle is refused or malformed."""
    pk = folder / PICKLE
    problem = path_problem(pk)
    if problem is not None:
        raise DataError(f"{pk}: {problem}; `prepare mimic` converts MultiBench's {PICKLE} "
                        f"(README: 'MIMIC-III')")
    from i2m2bench.data.common import safe_pickle as safe_pickle

    arrays = check_arrays(safe_pickle.load(pk), pk)
    target = folder / NPZ
    tmp = folder / f".{NPZ}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **{_SOURCE_KEY: np.array(file_sha256(pk))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def official_split(n: int) -> dict[str, np.ndarray]:
    """The official split of ``n`` samples: indices of ``val`` (first ``n // 10`` of the
    shuffled order), ``test`` (next, up to ``n // 5``) and ``train`` (the rest)."""
    order = list(range(n))
    random.Random(SPLIT_SEED).shuffle(order)  # = random.seed(10); random.shuffle(datasets)
    order = np.asarray(order, dtype=np.int64)
    return {"train": order[n // 5:], "val": order[:n // 10], "test": order[n // 10:n // 5]}


def labels(arrays: dict[str, np.ndarray], task: str) -> np.ndarray:
    """(N,) int64 class indices of ``task`` (a key of :data:`TASKS`)."""
    key, column, _ = TASKS[task]
    if column is not None:
        return arrays[key][:, column].astype(np.int64)
    pos = arrays[key][:, 1:6] > 0
    return np.where(pos.any(1), pos.argmax(1) + 1, 0).astype(np.int64)


def zero_nonfinite(a: np.ndarray) -> np.ndarray:
    """float64 copy of ``a`` with NaN and Inf set to 0 (get_data.py lines 36-39)."""
    out = np.array(a, dtype=np.float64)
    out[~np.isfinite(out)] = 0.0
    return out


def zscore_stats(static: np.ndarray, series: np.ndarray, rows: np.ndarray | None):
    """((mean, std) of each static feature, (mean, std) of each series variable over samples
    and hours) of the NaN/Inf-zeroed values over ``rows`` (None: all), population statistics as
    ``np.std``; a std of 0 becomes 1."""
    s = zero_nonfinite(static if rows is None else static[rows])
    t = zero_nonfinite(series if rows is None else series[rows])
    stats = (s.mean(0), s.std(0)), (t.mean((0, 1)), t.std((0, 1)))
    return tuple((m, np.where(sd > 0, sd, 1.0)) for m, sd in stats)


def process(static: np.ndarray, series: np.ndarray, stats) -> tuple[np.ndarray, np.ndarray]:
    """float32 (static, series) z-scored with ``stats`` (:func:`zscore_stats`) in float64 after
    NaN/Inf -> 0, as the official code normalises."""
    (sm, ss), (tm, ts) = stats
    return (((zero_nonfinite(static) - sm) / ss).astype(np.float32),
            ((zero_nonfinite(series) - tm) / ts).astype(np.float32))


__all__ = ["LAYOUT", "NPZ", "PICKLE", "TASKS", "check_arrays", "labels", "official_split",
           "prepare", "process", "read", "zero_nonfinite", "zscore_stats"]
