"""FastMRI knee: the k-space -> (magnitude, phase) path and the four slice labels, shared by the
real-file loaders (:mod:`i2m2bench.data.fastmri`) and the embedded k-space phantom
(:mod:`i2m2bench.data.fastmri.embedded`), so that both go through exactly the same code.

Sources (facts, not code; commits as read):

* divyam3897/I2M2 @ 7742765, ``fastMRI/data_processing/knee/knee_singlecoil.py`` L34-65: a
  volume whose k-space is wider than 400 columns is dropped; narrower ones are zero-padded
  symmetrically on the last (phase-encoding) axis to 640 x 400 -- the data go to columns
  ``[n // 2, 400 - ceil(n / 2))`` with ``n = 400 - width``.
* divyam3897/mri-robustness @ d12968b, ``src/data/knee_data.py`` L81-105 (the data module the
  I2M2 repository's ``.gitignore`` dropped): the complex image is ``fastmri.ifft2c`` of the padded
  k-space -- ``ifftshift`` -> orthonormal 2-D inverse FFT -> ``fftshift`` over the last two axes
  (facebookresearch/fastMRI v0.2.0, ``fastmri/fftc.py`` L41-65).
* I2M2 ``fastMRI/models/preactresnet_knee.py`` L16-23 and L221-239: magnitude ``abs``, phase
  ``angle`` (values in [-pi, pi]), each centre-cropped to 320 x 320 (rows from (640-320)//2,
  columns from (400-320)//2); no further normalisation.
* Labels ``[abnormal, meniscus_tear, acl, cartilage]`` (I2M2 ``fastMRI/module.py`` L36) from the
  fastMRI+ label strings of a slice, by mri-robustness ``parse_label`` (``knee_data.py`` L55-79):
  a string containing ``"ACL"`` is acl, else one containing ``"Meniscus Tear"`` is a meniscus
  tear, else one containing ``"cartilage"`` (any case) is cartilage, else it is "abnormal" -- so
  abnormal means *some other finding* (``artifact`` and ``Joint Effusion`` included), not any
  finding, and a slice without a box has all four at 0.
* Undersampling (the embedded board's shift set): fastMRI's ``RandomMaskFunc`` and
  ``EquiSpacedMaskFunc`` (``fastmri/data/subsample.py`` L134-136, L178-197, L240-244, L276-280):
  whole k-space columns are kept or dropped; ``round(width * center_fraction)`` centre columns
  from ``(width - n_low + 1) // 2`` are always kept; random: every other column with probability
  ``(width / acceleration - n_low) / (width - n_low)``; equispaced: every ``acceleration``-th
  column from a random offset in ``[0, acceleration)``.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from i2m2bench.types import ModalitySpec, TaskSpec

#: The four slice labels, in the official order (I2M2 ``fastMRI/module.py`` L36).
LABELS = ("abnormal", "meniscus_tear", "acl", "cartilage")
#: The official k-space size after padding, and the crop of the image (knee_singlecoil.py L124;
#: preactresnet_knee.py L16-23).
KSPACE_SHAPE = (640, 400)
CROP = (320, 320)


def parse_labels(strings: Iterable[str]) -> np.ndarray:
    """The four 0/1 labels (``uint8``, :data:`LABELS` order) of one slice from its fastMRI+
    label strings (empty: no finding). See the module docstring for the rules."""
    out = np.zeros(len(LABELS), dtype=np.uint8)
    for raw in strings:
        label = str(raw).strip()
        if not label or label == "None":
            continue
        if "ACL" in label:
            out[2] = 1
        elif "Meniscus Tear" in label:
            out[1] = 1
        elif "cartilage" in label.lower():
            out[3] = 1
        else:
            out[0] = 1
    return out


def pad_columns(kspace: np.ndarray, width: int = KSPACE_SHAPE[1]) -> np.ndarray:
    """Zero-pad the last axis of ``kspace`` (…, rows, cols) symmetrically to ``width`` columns as
    the official script does (left ``n // 2``, right ``n - n // 2``, ``n = width - cols``).
    ``ValueError`` when ``cols > width`` (the official script drops such volumes)."""
    cols = kspace.shape[-1]
    if cols > width:
        raise ValueError(f"k-space has {cols} columns, more than {width}")
    n = width - cols
    pad = [(0, 0)] * (kspace.ndim - 1) + [(n // 2, n - n // 2)]
    return np.pad(kspace, pad)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D inverse FFT over the last two axes (``fastmri.ifft2c``)."""
    axes = (-2, -1)
    x = np.fft.ifftshift(kspace, axes=axes)
    x = np.fft.ifft2(x, axes=axes, norm="ortho")
    return np.fft.fftshift(x, axes=axes)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (``fastmri.fft2c``); inverse of
    :func:`ifft2c`."""
    axes = (-2, -1)
    x = np.fft.ifftshift(image, axes=axes)
    x = np.fft.fft2(x, axes=axes, norm="ortho")
    return np.fft.fftshift(x, axes=axes)


def center_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The centre ``shape`` of the last two axes (start ``(size - crop) // 2`` on each)."""
    h, w = x.shape[-2:]
    ch, cw = shape
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {(h, w)} to {shape}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def magnitude_phase(kspace: np.ndarray, width: int = KSPACE_SHAPE[1],
                    crop: tuple[int, int] = CROP) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude, phase), float32, of k-space (…, rows, cols): padded to ``width`` columns,
    inverse-FFT'd (:func:`ifft2c`), centre-cropped to ``crop``; phase in [-pi, pi]."""
    image = center_crop(ifft2c(pad_columns(kspace, width)), crop)
    return np.abs(image).astype(np.float32), np.angle(image).astype(np.float32)


def column_mask(width: int, kind: str = "random", acceleration: int = 4,
                center_fraction: float = 0.08, rng: np.random.Generator | None = None) -> np.ndarray:
    """A bool (width,) mask of the k-space columns kept, as fastMRI's ``RandomMaskFunc``
    (``kind='random'``) or ``EquiSpacedMaskFunc`` (``'equispaced'``) with one centre fraction and
    one acceleration (see the module docstring); ``rng`` draws the random part."""
    rng = np.random.default_rng(0) if rng is None else rng
    n_low = int(round(width * center_fraction))
    mask = np.zeros(width, dtype=bool)
    start = (width - n_low + 1) // 2
    mask[start:start + n_low] = True
    if kind == "random":
        prob = (width / acceleration - n_low) / (width - n_low)
        mask |= rng.random(width) < prob
    elif kind == "equispaced":
        offset = int(rng.integers(0, acceleration))
        mask[offset::acceleration] = True
    else:
        raise ValueError(f"unknown mask kind {kind!r}; expected 'random' or 'equispaced'")
    return mask


#: Per-label AUROC columns besides the primary mean AUROC.
PER_LABEL = tuple(f"auroc/{label}" for label in LABELS)
#: The official operating-point metrics (I2M2 ``fastMRI/metrics/classification_metrics.py``
#: L16-42, logged per label by ``module.py`` L354-367), macro means here; the threshold comes
#: from the validation split (:func:`i2m2bench.metrics.operating_points`).
OPERATING = ("op_sensitivity", "op_specificity", "op_balanced_accuracy")
#: The shift set: the test slices from 4x undersampled k-space.
SHIFT = "undersampled4x"
ENCODER = "preact_resnet18_gn"
REAL_HINT = ("the fastMRI single-coil knee files with fastMRI+ labels, or the official I2M2 "
             "per-slice layout (docs/datasets/fastmri.md); then run `python -m i2m2bench prepare fastmri "
             "--data-root DIR`")


def task_spec(source: str, size: tuple[int, int], mag_scale: float, phase_scale: float,
              encoder_options: dict | None = None, description: str = "") -> TaskSpec:
    """The FastMRI TaskSpec, shared by the real and the embedded data: (1, ``size``) magnitude
    and phase images scaled by ``mag_scale`` / ``phase_scale`` on the way to the model."""
    shape = (1, *size)
    return TaskSpec(
        name="fastmri", version="1", problem="multilabel", num_classes=len(LABELS), labels=LABELS,
        metric="auroc", metrics=(*OPERATING, *PER_LABEL), source=source, description=description,
        complex_image=("polar", "magnitude", "phase"),
        modalities=(ModalitySpec("magnitude", shape, "image", ENCODER, scale=mag_scale,
                                 encoder_options=encoder_options or {}),
                    ModalitySpec("phase", shape, "image", ENCODER, scale=phase_scale,
                                 encoder_options=encoder_options or {})))


__all__ = ["CROP", "ENCODER", "KSPACE_SHAPE", "LABELS", "OPERATING", "PER_LABEL", "REAL_HINT", "SHIFT", "center_crop",
           "column_mask", "fft2c", "ifft2c", "magnitude_phase", "pad_columns", "parse_labels", "task_spec"]
