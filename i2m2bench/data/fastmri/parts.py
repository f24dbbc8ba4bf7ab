"""FastMRI's other modality pair: the real and the imaginary part of the image
(``modalities='real_imag'``), beside the magnitude and phase of the official experiments.

The official code names this pair -- learning rates and weight decays for ``ktoi_w_real`` and
``ktoi_w_imag`` (I2M2 ``fastMRI/classifier.py`` L109) and a ``--data_space`` default of
``ktoi_w_realimag`` (L195) -- but its network reads only ``ktoi_w_mag``, ``ktoi_w_phase``,
``ktoi_w_magphase`` and ``ktoi_w_rss`` (``fastMRI/models/preactresnet_knee.py`` L216-245), so
the pair cannot run there. Here it is the same complex image, centre-cropped, as the magnitude
and phase (:mod:`i2m2bench.data.fastmri.processing`): ``real = m cos(phi)``, ``imag = m sin(phi)``
from the model inputs ``m`` (the scaled magnitude) and ``phi`` (radians), computed per batch from
the stored magnitude and phase, so the prepared cache and the embedded phantom serve both pairs
unchanged.
"""
from __future__ import annotations

from typing import Iterator

import torch

from i2m2bench.data.fastmri.processing import ENCODER
from i2m2bench.types import Batch, DataSplit, ModalitySpec, Task, TaskSpec

#: The dataset option's values: the official pair, and the real and imaginary parts.
PAIRS = ("magnitude_phase", "real_imag")


class ComplexPartsSplit(DataSplit):
    """A magnitude/phase split read as real and imaginary parts: batches of the ``inner`` split
    (under ``inner_spec``) turned into ``{"real", "imag"}`` model inputs, float32."""

    def __init__(self, inner: DataSplit, inner_spec: TaskSpec) -> None:
        self.inner, self.inner_spec = inner, inner_spec
        self.name, self.target, self.groups = inner.name, inner.target, inner.groups
        self._means: dict[str, torch.Tensor] = {}

    def _convert(self, batch: Batch) -> Batch:
        z = torch.polar(batch.inputs["magnitude"].float(), batch.inputs["phase"].float())
        present = None if batch.present is None else {
            "real": batch.present["magnitude"], "imag": batch.present["phase"]}
        return Batch({"real": z.real.contiguous(), "imag": z.imag.contiguous()}, batch.target,
                     present)

    def to(self, device: torch.device | str) -> "ComplexPartsSplit":
        return ComplexPartsSplit(self.inner.to(device), self.inner_spec)

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        return self._convert(self.inner.batch(index, self.inner_spec))

    def batches(self, spec: TaskSpec, batch_size: int, order: torch.Tensor | None = None,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        for batch in self.inner.batches(self.inner_spec, batch_size, order, shard):
            yield self._convert(batch)

    def mean(self, modality: str) -> torch.Tensor:
        """The mean of the real or imaginary part per pixel (float64), from one pass over the
        split (the parts are not stored, so there is no cheaper sum)."""
        if modality not in self._means:
            sums = {m: torch.zeros(self.inner_spec.modality("magnitude").shape, dtype=torch.float64,
                                   device=self.device) for m in ("real", "imag")}
            for batch in self.batches(self.inner_spec, 256):
                for m in sums:
                    sums[m] += batch.inputs[m].sum(0, dtype=torch.float64)
            self._means.update({m: s / len(self) for m, s in sums.items()})
        return self._means[modality]


def as_real_imag(task: Task) -> Task:
    """``task`` (magnitude and phase) with its modalities read as the real and imaginary parts of
    the same image; labels, splits and shift sets unchanged."""
    spec = task.spec
    shape = spec.modality("magnitude").shape
    options = spec.modality("magnitude").encoder_options
    parts = tuple(ModalitySpec(name, shape, "image", ENCODER, encoder_options=options)
                  for name in ("real", "imag"))
    new = TaskSpec(name=spec.name, version=spec.version, modalities=parts, problem=spec.problem,
                   num_classes=spec.num_classes, labels=spec.labels, metric=spec.metric,
                   source=spec.source, description=f"{spec.description}; real and imaginary parts",
                   metrics=spec.metrics, complex_image=("cartesian", "real", "imag"))
    return Task(new, {k: ComplexPartsSplit(s, spec) for k, s in task.splits.items()},
                {k: ComplexPartsSplit(s, spec) for k, s in task.shifts.items()},
                options={**task.options, "modalities": "real_imag"})


__all__ = ["PAIRS", "ComplexPartsSplit", "as_real_imag"]
