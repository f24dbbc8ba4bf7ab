"""``mimic``: ICU stays from MIMIC-III as MultiBench preprocessed them -- static admission
features and 24 hours of 12 variables as two modalities, three tasks (the I2M2 paper's MIMIC-III
experiments).

Tasks (option ``task``; also registered as the datasets ``mimic_mortality``,
``mimic_icd9_140_239`` and ``mimic_icd9_460_519``), as the official code defines them
(:mod:`i2m2bench.data.mimic.real`):

* ``mortality`` -- six classes (the first positive of ``adm_labels_all[:, 1..5]``, else 0),
  primary metric accuracy (the official checkpoint selection, ``auprc=False``); AUROC (macro,
  one-vs-rest) reported too.
* ``icd9_140_239`` / ``icd9_460_519`` -- binary (``y_icd9[:, 1]`` / ``y_icd9[:, 7]``), primary
  metric AUPRC of the positive class (the official selection, ``auprc=True``: scikit-learn's
  average precision of the positive class's probability); accuracy and AUROC reported too.

Modalities: ``static`` (5,) and ``timeseries`` (24, 12), z-scored when the task is built (NaN and
Inf to 0 first, as the official code); their encoders default to the official ones (the static
``MLP(5, 10, 10)``, the series ``GRU(12, 30)`` read out at every hour, flattened: 720 features;
``mimic_main.py`` lines 81-83).

Sources of data (``source``):

* ``real`` -- ``<data root>/mimic/mimic.npz`` or ``im.pk`` (MultiBench's file; credentialed,
  never downloaded). No shift set: the official "robust" test set is eleven identical copies of
  the clean one (docs/fidelity.md), so none is made.
* ``embedded`` -- the synthetic ICU cohort of :mod:`i2m2bench.data.mimic.embedded` in the same layout,
  through the same processing and split; shift set ``hospital_b`` (another hospital's
  population and measurement practice). Labelled EMBEDDED everywhere: synthetic, not patients.
* ``auto`` (default) -- ``real`` when a data root is given (it must then hold ``mimic/``), else
  ``embedded``.

``stats``: ``'train'`` (default) z-scores with the training split's statistics; ``'all'`` with
those of every sample, test included, as the official code does.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch

from i2m2bench.data.mimic import real as mr
from i2m2bench.data.base import DATASETS, DataError, check_count, dataset_folder, reads_real
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

SHIFT = "hospital_b"
#: The official encoders (mimic_main.py lines 81-83, 119-121; MultiBench unimodals/common_models.py):
#: static ``MLP(5, 10, 10)`` (Linear, ReLU, Linear) and series ``GRU(12, 30, flatten=True)``.
STATIC_ENCODER = {"width": 10, "depth": 2, "linear_out": True}
SERIES_ENCODER = {"width": 30, "readout": "steps"}
BINARY_LABELS = ("absent", "present")
REAL_HINT = ("MultiBench's preprocessed MIMIC-III file as mimic/im.pk (or mimic/mimic.npz from "
             "`python -m i2m2bench prepare mimic --data-root DIR`; README: 'MIMIC-III')")


def task_spec(task: str, source: str, description: str = "") -> TaskSpec:
    """The TaskSpec of ``task`` (a key of :data:`i2m2bench.data.mimic.real.TASKS`)."""
    _, column, classes = mr.TASKS[task]
    binary = column is not None
    return TaskSpec(
        name=f"mimic_{task}", version="1", problem="multiclass", num_classes=classes,
        labels=BINARY_LABELS if binary else (),
        metric="auprc/present" if binary else "accuracy",
        metrics=("accuracy", "auroc") if binary else ("auroc",),
        source=source, description=description,
        modalities=(ModalitySpec("static", mr.LAYOUT["adm_features_all"], "vector", "mlp",
                                 encoder_options=STATIC_ENCODER),
                    ModalitySpec("timeseries", mr.LAYOUT["ep_tdata"], "timeseries", "gru",
                                 encoder_options=SERIES_ENCODER)))


def _split(name: str, static: np.ndarray, series: np.ndarray, target: np.ndarray) -> Split:
    return Split({"static": torch.from_numpy(static), "timeseries": torch.from_numpy(series)},
                 torch.from_numpy(target), name)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def make_task(arrays: dict[str, np.ndarray], task: str, stats: str, source: str,
              description: str, shifts: dict[str, dict[str, np.ndarray]] | None = None,
              options: dict | None = None) -> Task:
    """The task from checked arrays (:func:`~i2m2bench.data.mimic.real.check_arrays`): labels,
    the official split, z-scoring with the statistics of ``stats`` ('train' or 'all'); each
    of ``shifts`` (arrays in the same layout) is z-scored with the same statistics."""
    n = len(arrays["ep_tdata"])
    if n < 10:
        raise DataError(f"mimic: {n} samples; the official split needs at least 10 (validation "
                        "and test are N // 10 each)")
    index = mr.official_split(n)
    stats_rows = index["train"] if stats == "train" else None
    z = mr.zscore_stats(arrays["adm_features_all"], arrays["ep_tdata"], stats_rows)
    static, series = mr.process(arrays["adm_features_all"], arrays["ep_tdata"], z)
    target = mr.labels(arrays, task)
    splits = {k: _split(k, static[i], series[i], target[i]) for k, i in index.items()}
    shift_splits = {}
    for name, other in (shifts or {}).items():
        s, t = mr.process(other["adm_features_all"], other["ep_tdata"], z)
        shift_splits[name] = _split(name, s, t, mr.labels(other, task))
    return Task(task_spec(task, source, description), splits, shift_splits,
                options={**(options or {}), "task": task, "stats": stats})


def build_embedded(task: str = "mortality", patients: int = 5000, shift_patients: int | None = None,
                   data_seed: int = 0, stats: str = "train") -> Task:
    """The EMBEDDED synthetic cohort (:mod:`i2m2bench.data.mimic.embedded`): ``patients`` stays of
    hospital A split officially, and ``shift_patients`` (default: the test size) of hospital B."""
    from i2m2bench.data.mimic import embedded as ic

    check_count("mimic", "patients", patients, low=10)
    check_count("mimic", "shift_patients", shift_patients, optional=True)
    shift_n = patients // 10 if shift_patients is None else shift_patients
    arrays = mr.check_arrays(ic.generate(patients, data_seed), "the embedded cohort")
    other = mr.check_arrays(ic.generate(shift_n, data_seed + 1, ic.HOSPITAL_B),
                            "the embedded cohort (hospital B)")
    return make_task(arrays, task, stats, "embedded",
                     "EMBEDDED synthetic ICU cohort (not patients)", {SHIFT: other},
                     options=dict(source="embedded", patients=patients, shift_patients=shift_n,
                                  data_seed=data_seed,
                                  checksum=_digest({**arrays, **{f"b_{k}": v for k, v in other.items()}})))


def real_folder(data_root: str | None = None) -> Path:
    """``<data root>/mimic`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``); a missing root,
    or one without that folder, is a DataError saying what belongs there."""
    return dataset_folder(data_root, "mimic", "mimic", REAL_HINT, "embedded cohort")


def load_real(folder: Path, task: str = "mortality", stats: str = "train") -> Task:
    arrays, path = mr.read(folder)
    return make_task(arrays, task, stats, "real",
                     f"MIMIC-III via MultiBench ({path.name})",
                     options=dict(source="real", checksum=_digest(arrays)))


@DATASETS.register("mimic")
def build_mimic(task: str = "mortality", source: str = "auto", data_root: str | None = None,
                stats: str = "train", patients: int = 5000, shift_patients: int | None = None,
                data_seed: int = 0) -> Task:
    """MIMIC-III ``task`` from ``<data_root>/mimic`` or, with no data root under ``auto``, the
    EMBEDDED synthetic cohort (``patients`` stays from ``data_seed``; ``shift_patients`` of
    hospital B). ``stats``: z-score with the 'train' split's statistics or 'all' (official)."""
    if task not in mr.TASKS:
        raise ValueError(f"mimic: task must be one of {', '.join(map(repr, mr.TASKS))}; "
                         f"got {task!r}")
    if stats not in ("train", "all"):
        raise ValueError(f"mimic: stats must be 'train' (the training split's statistics) or "
                         f"'all' (every sample's, as the official code); got {stats!r}")
    if reads_real("mimic", source, data_root, "EMBEDDED synthetic ICU cohort, not MIMIC-III",
                  "MIMIC-III"):
        return load_real(real_folder(data_root), task, stats)
    return build_embedded(task, patients, shift_patients, data_seed, stats)


def _fixed_task(task: str):
    def build(**options) -> Task:
        return build_mimic(task=task, **options)

    params = [p for p in inspect.signature(build_mimic).parameters.values() if p.name != "task"]
    build.__signature__ = inspect.Signature(params, return_annotation=Task)
    build.__name__ = build.__qualname__ = f"build_mimic_{task}"
    build.__doc__ = f"MIMIC-III task {task!r} (:func:`build_mimic` with ``task={task!r}``)."
    return build


for _task in mr.TASKS:
    DATASETS.add(f"mimic_{_task}", _fixed_task(_task), origin=f"{__name__}.build_mimic")

__all__ = ["SHIFT", "build_embedded", "build_mimic", "load_real", "make_task", "real_folder",
           "task_spec"]
