"""The shared contracts: what a task is, what a batch is, what a fusion strategy returns.

Modalities are addressed by name everywhere. A split comes in two kinds behind one interface
(:class:`DataSplit`): in memory (:class:`Split`, whole tensors in the compact dtype they are stored
in, uint8 for AV-MNIST-style data) and on disk (:class:`i2m2bench.data.disk.DiskSplit`,
``.npy`` files read in place, streamed by a DataLoader in index batches). Either way a batch is
normalised to float when it is drawn (``ModalitySpec.scale``), so the hot loop never collates
per-sample Python objects, and the loop never knows which kind it iterates.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping

import torch

ProblemType = Literal["multiclass", "multilabel", "soft-score"]
ExpertLogits = dict[str, torch.Tensor]  # expert name -> logits (B, C)


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality: ``shape`` is per sample (no batch dim), ``kind`` guides encoders."""

    name: str
    shape: tuple[int, ...]
    kind: Literal["image", "spectrogram", "vector", "sequence"]
    encoder: str = "mlp"  # default encoder registry name for this modality
    scale: float = 1.0  # multiply stored values by this to get model inputs (1/255 for uint8)


@dataclass(frozen=True)
class TaskSpec:
    """What a task is. ``problem``: ``multiclass`` (one of ``num_classes`` classes), ``multilabel``
    (``num_classes`` = L independent binary labels) or ``soft-score`` (a target score in [0, 1]
    per class, as VQA's answers). ``metric`` is the primary metric (checkpoint selection by
    default, robustness tables) and ``metrics`` the others the task declares; every one is a name
    in ``i2m2bench.metrics.METRICS`` (or ``<metric>/<label>``), and boards show them all.
    ``higher_is_better`` comes from the primary metric's registry entry; the field is kept for
    old callers (None: the metric's direction; when set, it must agree)."""

    name: str
    version: str
    modalities: tuple[ModalitySpec, ...]
    problem: ProblemType
    num_classes: int
    labels: tuple[str, ...] = ()
    metric: str = "accuracy"
    higher_is_better: bool | None = None
    source: Literal["real", "embedded", "synthetic"] = "real"  # synthetic: generated, no real counterpart
    description: str = ""
    metrics: tuple[str, ...] = ()  # declared metrics besides ``metric``

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(
            f"task {self.name!r} has no modality {name!r}; its modalities are "
            f"{', '.join(self.modality_names)}"
        )


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # modality -> float tensor (B, *shape)
    target: torch.Tensor  # (B,) int64 multiclass; (B, L) 0/1 multilabel; (B, C) in [0, 1] soft-score
    present: dict[str, torch.Tensor] | None = None  # modality -> bool (B,); None = all present

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def availability(self, modality: str) -> torch.Tensor:
        """Bool (B,) mask of samples where ``modality`` is present."""
        if self.present is None or modality not in self.present:
            return torch.ones(len(self), dtype=torch.bool, device=self.target.device)
        return self.present[modality]


class DataSplit(ABC):
    """What the harness needs of a split, whatever holds its data.

    ``target`` (N, ...) lives in memory on the split's device (metrics need it without reading
    inputs); inputs are read only as batches: :meth:`batch` (any rows) and :meth:`batches` (a
    whole pass in index batches, the hot loop). Batches hold float model inputs on the split's
    device, normalised exactly as :meth:`Split.batch` does, so both kinds give bit-identical
    batches for the same rows.
    """

    name: str
    target: torch.Tensor
    groups: torch.Tensor | None = None  # (N,) int64 sample groups (NLVR2's consistency); None: none

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def device(self) -> torch.device:
        return self.target.device

    @abstractmethod
    def to(self, device: torch.device | str) -> "DataSplit":
        """The same split with batches (and ``target``) on ``device``."""

    @abstractmethod
    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Rows ``index`` (int64, any device) as one normalised batch."""

    @abstractmethod
    def batches(self, spec: TaskSpec, batch_size: int,
                order: torch.Tensor | None = None) -> Iterator[Batch]:
        """One pass: batches of ``batch_size`` consecutive entries of ``order`` (a CPU int64
        tensor of row indices; None: rows 0..N-1 in turn), in that order; the last may be
        shorter."""

    @abstractmethod
    def mean(self, modality: str) -> torch.Tensor:
        """Mean stored value of ``modality`` per input position (float64, on the split's device;
        before ``ModalitySpec.scale``), summed in float64 without a float copy of the data."""


@dataclass
class Split(DataSplit):
    """A whole split in memory: ``inputs[m]`` is (N, *shape) in its stored dtype."""

    inputs: dict[str, torch.Tensor]
    target: torch.Tensor
    name: str = ""
    groups: torch.Tensor | None = None  # (N,) sample groups, kept on the CPU (metrics only)

    def __post_init__(self) -> None:
        n = int(self.target.shape[0])
        for m, x in self.inputs.items():
            if int(x.shape[0]) != n:
                raise ValueError(
                    f"split {self.name!r}: modality {m!r} has {x.shape[0]} samples but there are "
                    f"{n} targets"
                )
        if self.groups is not None and tuple(self.groups.shape) != (n,):
            raise ValueError(f"split {self.name!r}: groups have shape {tuple(self.groups.shape)}; "
                             f"expected ({n},), one group id per sample")

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split({m: x.to(device) for m, x in self.inputs.items()}, self.target.to(device),
                     self.name, self.groups)

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Gather rows ``index`` and normalise to float model inputs."""
        inputs = {}
        for m in spec.modalities:
            x = self.inputs[m.name].index_select(0, index)
            inputs[m.name] = x.float().mul_(m.scale) if m.scale != 1.0 else x.float()
        return Batch(inputs, self.target.index_select(0, index))

    def batches(self, spec: TaskSpec, batch_size: int,
                order: torch.Tensor | None = None) -> Iterator[Batch]:
        """Gathered on the split's device, one ``index_select`` per modality (no DataLoader)."""
        device = self.target.device
        if order is None:
            n = len(self)
            for start in range(0, n, batch_size):
                yield self.batch(torch.arange(start, min(start + batch_size, n), device=device), spec)
            return
        order = order.to(device)
        for start in range(0, int(order.shape[0]), batch_size):
            yield self.batch(order[start:start + batch_size], spec)

    def mean(self, modality: str) -> torch.Tensor:
        return self.inputs[modality].sum(0, dtype=torch.float64) / len(self)


@dataclass
class Task:
    """What a dataset builder returns: the spec, the standard splits and named shift test sets."""

    spec: TaskSpec
    splits: Mapping[str, DataSplit]  # "train", "val", "test"
    shifts: Mapping[str, DataSplit] = field(default_factory=dict)  # name -> distribution-shift test set
    options: dict = field(default_factory=dict)  # the resolved builder options (for provenance)
