"""What MIMIC-III's real file and the embedded cohort share: the layout, the checks, the
processing, the official split, the labels and the task spec (one path for both sources).

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

import hashlib
import os
import random

import numpy as np
import torch

from i2m2bench.data.base import DataError
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

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
SHIFT = "hospital_b"
#: The official encoders (mimic_main.py lines 81-83, 119-121; MultiBench unimodals/common_models.py):
#: static ``MLP(5, 10, 10)`` (Linear, ReLU, Linear) and series ``GRU(12, 30, flatten=True)``.
STATIC_ENCODER = {"width": 10, "depth": 2, "linear_out": True}
SERIES_ENCODER = {"width": 30, "readout": "steps"}
BINARY_LABELS = ("absent", "present")
REAL_HINT = ("MultiBench's preprocessed MIMIC-III file as mimic/im.pk (or mimic/mimic.npz from "
             "`python -m i2m2bench prepare mimic --data-root DIR`; docs/datasets/mimic.md)")



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


def task_spec(task: str, source: str, description: str = "") -> TaskSpec:
    """The TaskSpec of ``task`` (a key of :data:`TASKS`)."""
    _, column, classes = TASKS[task]
    binary = column is not None
    return TaskSpec(
        name=f"mimic_{task}", version="1", problem="multiclass", num_classes=classes,
        labels=BINARY_LABELS if binary else (),
        metric="auprc/present" if binary else "accuracy",
        metrics=("accuracy", "auroc") if binary else ("auroc",),
        source=source, description=description,
        modalities=(ModalitySpec("static", LAYOUT["adm_features_all"], "vector", "mlp",
                                 encoder_options=STATIC_ENCODER),
                    ModalitySpec("timeseries", LAYOUT["ep_tdata"], "timeseries", "gru",
                                 encoder_options=SERIES_ENCODER)))


def _split(name: str, static: np.ndarray, series: np.ndarray, target: np.ndarray) -> Split:
    return Split({"static": torch.from_numpy(static), "timeseries": torch.from_numpy(series)},
                 torch.from_numpy(target), name)


def digest(arrays: dict[str, np.ndarray]) -> str:
    """A short sha256 over ``arrays`` (sorted by key: name, dtype, shape, bytes): the data checksum."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def make_task(arrays: dict[str, np.ndarray], task: str, stats: str, source: str,
              description: str, shifts: dict[str, dict[str, np.ndarray]] | None = None,
              options: dict | None = None) -> Task:
    """The task from checked arrays (:func:`check_arrays`): labels,
    the official split, z-scoring with the statistics of ``stats`` ('train' or 'all'); each
    of ``shifts`` (arrays in the same layout) is z-scored with the same statistics."""
    n = len(arrays["ep_tdata"])
    if n < 10:
        raise DataError(f"mimic: {n} samples; the official split needs at least 10 (validation "
                        "and test are N // 10 each)")
    index = official_split(n)
    stats_rows = index["train"] if stats == "train" else None
    z = zscore_stats(arrays["adm_features_all"], arrays["ep_tdata"], stats_rows)
    static, series = process(arrays["adm_features_all"], arrays["ep_tdata"], z)
    target = labels(arrays, task)
    splits = {k: _split(k, static[i], series[i], target[i]) for k, i in index.items()}
    shift_splits = {}
    for name, other in (shifts or {}).items():
        s, t = process(other["adm_features_all"], other["ep_tdata"], z)
        shift_splits[name] = _split(name, s, t, labels(other, task))
    return Task(task_spec(task, source, description), splits, shift_splits,
                options={**(options or {}), "task": task, "stats": stats})


__all__ = ["BINARY_LABELS", "LAYOUT", "LABEL_KEYS", "REAL_HINT", "SERIES_ENCODER", "SHIFT", "SPLIT_SEED",
           "STATIC_ENCODER", "TASKS", "check_arrays", "digest", "labels", "make_task", "official_split",
           "process", "task_spec", "zero_nonfinite", "zscore_stats"]
