"""The shared contracts: what a task is, what a batch is, what a fusion strategy returns.

Modalities are addressed by name everywhere. Splits keep whole datasets as tensors in the compact
dtype they are stored in (uint8 for AV-MNIST-style data); a batch is normalised to float when it
is drawn (``ModalitySpec.scale``), so the hot loop never collates per-sample Python objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

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
    name: str
    version: str
    modalities: tuple[ModalitySpec, ...]
    problem: ProblemType
    num_classes: int
    labels: tuple[str, ...] = ()
    metric: str = "accuracy"
    higher_is_better: bool = True
    source: Literal["real", "embedded", "synthetic"] = "real"  # synthetic: generated, no real counterpart
    description: str = ""

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
    target: torch.Tensor  # (B,) int64 for multiclass
    present: dict[str, torch.Tensor] | None = None  # modality -> bool (B,); None = all present

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def availability(self, modality: str) -> torch.Tensor:
        """Bool (B,) mask of samples where ``modality`` is present."""
        if self.present is None or modality not in self.present:
            return torch.ones(len(self), dtype=torch.bool, device=self.target.device)
        return self.present[modality]


@dataclass
class Split:
    """A whole split as tensors: ``inputs[m]`` is (N, *shape) in its stored dtype."""

    inputs: dict[str, torch.Tensor]
    target: torch.Tensor
    name: str = ""

    def __post_init__(self) -> None:
        n = int(self.target.shape[0])
        for m, x in self.inputs.items():
            if int(x.shape[0]) != n:
                raise ValueError(
                    f"split {self.name!r}: modality {m!r} has {x.shape[0]} samples but there are "
                    f"{n} targets"
                )

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split({m: x.to(device) for m, x in self.inputs.items()}, self.target.to(device),
                     self.name)

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Gather rows ``index`` and normalise to float model inputs."""
        inputs = {}
        for m in spec.modalities:
            x = self.inputs[m.name].index_select(0, index)
            inputs[m.name] = x.float().mul_(m.scale) if m.scale != 1.0 else x.float()
        return Batch(inputs, self.target.index_select(0, index))


@dataclass
class Task:
    """What a dataset builder returns: the spec, the standard splits and named shift test sets."""

    spec: TaskSpec
    splits: Mapping[str, Split]  # "train", "val", "test"
    shifts: Mapping[str, Split] = field(default_factory=dict)  # name -> distribution-shift test set
    options: dict = field(default_factory=dict)  # the resolved builder options (for provenance)
