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

import hashlib
from pathlib import Path

import numpy as np
import torch

from i2m2bench.data.base import DATASETS, dataset_folder, reads_real
from i2m2bench.data.fastmri.processing import LABELS
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

#: Per-label AUROC columns besides the primary mean AUROC.
PER_LABEL = tuple(f"auroc/{label}" for label in LABELS)
SHIFT = "undersampled4x"
ENCODER = "preact_resnet18_gn"
REAL_HINT = ("the fastMRI single-coil knee files with fastMRI+ labels, or the official I2M2 "
             "per-slice layout (README: 'FastMRI'); then run `python -m i2m2bench prepare fastmri "
             "--data-root DIR`")


def task_spec(source: str, size: tuple[int, int], mag_scale: float, phase_scale: float,
          encoder_options: dict | None = None, description: str = "") -> TaskSpec:
    shape = (1, *size)
    return TaskSpec(
        name="fastmri", version="1", problem="multilabel", num_classes=len(LABELS), labels=LABELS,
        metric="auroc", metrics=PER_LABEL, source=source, description=description,
        modalities=(ModalitySpec("magnitude", shape, "image", ENCODER, scale=mag_scale,
                                 encoder_options=encoder_options or {}),
                    ModalitySpec("phase", shape, "image", ENCODER, scale=phase_scale,
                                 encoder_options=encoder_options or {})))


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
    return h.hexdigest()[:16]


def build_embedded(patients: int = 600, slices: int = 3, size: int = 32, data_seed: int = 0,
                   noise: float = 0.05) -> Task:
    """The EMBEDDED k-space knee phantom as a task: patients split 70/15/15 in order (the
    generator draws them independently), every slice of a patient in one split. The default,
    many patients with few slices each (1,800 slices), gives the networks anatomical variety:
    with 100 patients of 18 slices they memorised the 70 training anatomies and stayed at
    chance on held-out patients."""
    from i2m2bench.data.fastmri import embedded as kp

    for name, value, low in (("patients", patients, 7), ("slices", slices, 1), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"fastmri: {name} must be a whole number >= {low}; got {value!r}")
    data = kp.generate(patients=patients, slices=slices, size=size, seed=data_seed, noise=noise)
    n_train, n_val = round(0.7 * patients), round(0.15 * patients)
    cut = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, patients)}
    target = torch.from_numpy(data.labels.astype(np.float32))  # multilabel: 0/1 floats

    def split(name, lo, hi, mag, phase):
        rows = torch.from_numpy(np.flatnonzero((data.patient >= lo) & (data.patient < hi)))
        return Split({"magnitude": torch.from_numpy(mag)[rows], "phase": torch.from_numpy(phase)[rows]},
                     target[rows], name)

    splits = {k: split(k, lo, hi, data.magnitude, data.phase) for k, (lo, hi) in cut.items()}
    shifts = {SHIFT: split(SHIFT, *cut["test"], data.magnitude_us, data.phase_us)}
    spec = task_spec("embedded", (size, size), kp.MAG_SCALE, kp.PHASE_SCALE,
                 description="EMBEDDED synthetic k-space knee phantom (not anatomy)")
    checksum = _digest(data.magnitude, data.phase, data.magnitude_us, data.phase_us, data.labels,
                       data.patient)
    return Task(spec, splits, shifts, options=dict(
        source="embedded", patients=patients, slices=slices, size=size, data_seed=data_seed,
        noise=noise, checksum=checksum))


def load_real(folder, verify: str = "probe") -> Task:
    """The prepared cache of the real data under ``folder`` (``<data root>/fastmri``)."""
    from i2m2bench.data.fastmri import real as fr

    cached = fr.load_cache(fr.default_cache(folder), verify=verify)
    spec = task_spec("real", cached.crop, cached.mag_ref, 1.0, encoder_options={"pool": 10},
                 description=f"fastMRI single-coil knee + fastMRI+ labels ({cached.layout} layout)")
    return Task(spec, dict(cached.splits), dict(cached.shifts), options=dict(
        # not ``verify``: it checks the data, never changes them
        source="real", layout=cached.layout, checksum=cached.fingerprint))


def real_folder(data_root: str | None = None) -> Path:
    """``<data root>/fastmri`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``); a missing
    root, or a root without that folder, is a DataError saying what belongs there."""
    return dataset_folder(data_root, "fastmri", "fastmri", f"fastmri/ ({REAL_HINT})",
                          "embedded phantom")


@DATASETS.register("fastmri")
def build_fastmri(source: str = "auto", data_root: str | None = None, verify: str = "probe",
                  patients: int = 600, slices: int = 3, size: int = 32, data_seed: int = 0,
                  noise: float = 0.05) -> Task:
    """FastMRI knee from ``<data_root>/fastmri`` (its prepared cache; ``verify``: ``'probe'``
    or ``'full'`` checksums) or, with no data root under ``auto``, the EMBEDDED phantom
    (``patients`` x ``slices`` slices of ``size`` x ``size``, from ``data_seed``)."""
    if verify not in ("probe", "full"):
        raise ValueError(f"fastmri: verify must be 'probe' or 'full'; got {verify!r}")
    if reads_real("fastmri", source, data_root,
                  "EMBEDDED synthetic k-space knee phantom, not fastMRI", "FastMRI"):
        return load_real(real_folder(data_root), verify)
    return build_embedded(patients, slices, size, data_seed, noise)


__all__ = ["PER_LABEL", "SHIFT", "build_embedded", "build_fastmri", "load_real", "real_folder",
           "task_spec"]
