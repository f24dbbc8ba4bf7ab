"""``fastmri``: knee pathologies from single-coil MR k-space, the image's magnitude and phase as
two modalities (the I2M2 paper's FastMRI experiments).

Four slice-level binary labels -- ``abnormal``, ``meniscus_tear``, ``acl``, ``cartilage``
(:data:`i2m2bench.data.fastmri.processing.LABELS`; "abnormal" is *some other finding*, as the
official parser has it) -- a multilabel task scored by AUROC per label on the predicted
probability, their mean the primary metric. Modalities ``magnitude`` and ``phase``: (1, H, W)
images from the same path for real and embedded data (:mod:`i2m2bench.data.fastmri.processing`:
zero-pad k-space columns, centred orthonormal inverse FFT, centre crop, ``abs`` / ``angle``).
Shift set ``undersampled4x``: the test slices reconstructed from 4x undersampled k-space
(fastMRI's random Cartesian column mask, 8% of the centre columns kept).

Sources of data (``source``):

* ``real`` -- the fastMRI single-coil knee volumes with fastMRI+ labels, or the official I2M2
  per-slice layout, under ``<data root>/fastmri`` (:mod:`i2m2bench.data.fastmri.real`). About 42k
  slices do not fit in memory: ``python -m i2m2bench prepare fastmri --data-root DIR`` writes a
  verified, memory-mapped cache once, and training streams from it.
* ``embedded`` -- a synthetic k-space phantom of a sagittal knee (:mod:`i2m2bench.data.fastmri.embedded`),
  generated from a seed in about two seconds: labelled EMBEDDED everywhere, synthetic, not anatomy.
* ``auto`` (default) -- ``real`` when a data root is given (it must then hold ``fastmri/``),
  else ``embedded``.
"""
from __future__ import annotations

from i2m2bench.data.base import DATASETS, reads_real
from i2m2bench.data.common.family import FAMILIES, DatasetFamily, PrepareOption, verify_level
from i2m2bench.data.fastmri import real
from i2m2bench.data.fastmri.embedded import build_embedded
from i2m2bench.data.fastmri.parts import PAIRS, as_real_imag
from i2m2bench.data.fastmri.processing import PER_LABEL, REAL_HINT, SHIFT, task_spec
from i2m2bench.types import Task

load_real = real.load
real_folder = real.folder


@DATASETS.register("fastmri")
def build_fastmri(source: str = "auto", data_root: str | None = None, verify: str = "quick",
                  patients: int = 600, slices: int = 3, size: int = 32, data_seed: int = 0,
                  noise: float = 0.05, modalities: str = "magnitude_phase") -> Task:
    """FastMRI knee from ``<data_root>/fastmri`` (its prepared cache; ``verify``: ``'quick'``
    (alias ``'probe'``: probe checksums) or ``'full'`` checksums) or, with no data root under
    ``auto``, the EMBEDDED phantom (``patients`` x ``slices`` slices of ``size`` x ``size``,
    from ``data_seed``). ``modalities``: ``'magnitude_phase'`` (the official pair) or
    ``'real_imag'`` (the image's real and imaginary parts, :mod:`i2m2bench.data.fastmri.parts`)."""
    verify = verify_level(verify, "fastmri")
    if modalities not in PAIRS:
        raise ValueError(f"fastmri: modalities must be one of {', '.join(map(repr, PAIRS))}; "
                         f"got {modalities!r}")
    if reads_real("fastmri", source, data_root,
                  "EMBEDDED synthetic k-space knee phantom, not fastMRI",
                  "docs/datasets/fastmri.md"):
        task = real.load(real.folder(data_root), verify)
    else:
        task = build_embedded(patients, slices, size, data_seed, noise)
    return as_real_imag(task) if modalities == "real_imag" else task


def _prepare(folder, seed: int = 0):
    return real.prepare(folder, seed=seed)


FAMILY = DatasetFamily(
    name="fastmri", datasets=("fastmri",), folder="fastmri", holding=f"fastmri/ ({REAL_HINT})",
    verify_files=real.verify, prepare_files=_prepare, embedded="embedded phantom",
    options=(PrepareOption("seed", "the undersampling masks' seed (default 0)", int, 0),),
    description="read the fastMRI knee files (either layout) into the verified, memory-mapped "
                "cache its loader streams from (<data root>/fastmri/cache)")
FAMILIES.add(FAMILY.name, FAMILY, origin=f"{__name__}.FAMILY")

__all__ = ["FAMILY", "PER_LABEL", "SHIFT", "build_embedded", "build_fastmri", "load_real",
           "real_folder", "task_spec"]
