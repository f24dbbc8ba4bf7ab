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

import inspect

from i2m2bench.data.base import DATASETS, reads_real
from i2m2bench.data.common.family import FAMILIES, DatasetFamily
from i2m2bench.data.mimic import real
from i2m2bench.data.mimic.embedded import build_embedded
from i2m2bench.data.mimic.processing import REAL_HINT, SHIFT, TASKS, make_task, task_spec
from i2m2bench.types import Task

load_real = real.load
real_folder = real.folder


@DATASETS.register("mimic")
def build_mimic(task: str = "mortality", source: str = "auto", data_root: str | None = None,
                stats: str = "train", patients: int = 5000, shift_patients: int | None = None,
                data_seed: int = 0) -> Task:
    """MIMIC-III ``task`` from ``<data_root>/mimic`` or, with no data root under ``auto``, the
    EMBEDDED synthetic cohort (``patients`` stays from ``data_seed``; ``shift_patients`` of
    hospital B). ``stats``: z-score with the 'train' split's statistics or 'all' (official)."""
    if task not in TASKS:
        raise ValueError(f"mimic: task must be one of {', '.join(map(repr, TASKS))}; "
                         f"got {task!r}")
    if stats not in ("train", "all"):
        raise ValueError(f"mimic: stats must be 'train' (the training split's statistics) or "
                         f"'all' (every sample's, as the official code); got {stats!r}")
    if reads_real("mimic", source, data_root, "EMBEDDED synthetic ICU cohort, not MIMIC-III",
                  "docs/datasets/mimic.md"):
        return real.load(real.folder(data_root), task, stats)
    return build_embedded(task, patients, shift_patients, data_seed, stats)


def _fixed_task(task: str):
    def build(**options) -> Task:
        return build_mimic(task=task, **options)

    params = [p for p in inspect.signature(build_mimic).parameters.values() if p.name != "task"]
    build.__signature__ = inspect.Signature(params, return_annotation=Task)
    build.__name__ = build.__qualname__ = f"build_mimic_{task}"
    build.__doc__ = f"MIMIC-III task {task!r} (:func:`build_mimic` with ``task={task!r}``)."
    return build


for _task in TASKS:
    DATASETS.add(f"mimic_{_task}", _fixed_task(_task), origin=f"{__name__}.build_mimic")

FAMILY = DatasetFamily(
    name="mimic", datasets=("mimic", *(f"mimic_{t}" for t in TASKS)), folder="mimic",
    holding=REAL_HINT, verify_files=real.verify, prepare_files=real.prepare,
    embedded="embedded cohort",
    description="convert MultiBench's mimic/im.pk (read through the allow-list unpickler) into "
                "mimic.npz, read without pickle from then on")
FAMILIES.add(FAMILY.name, FAMILY, origin=f"{__name__}.FAMILY")

__all__ = ["FAMILY", "SHIFT", "build_embedded", "build_mimic", "load_real", "make_task",
           "real_folder", "task_spec"]
