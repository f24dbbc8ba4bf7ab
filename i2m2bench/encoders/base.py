"""The encoder contract and registry."""
from __future__ import annotations

from torch import nn

from i2m2bench.registry import Registry
from i2m2bench.types import ModalitySpec


class Encoder(nn.Module):
    """Maps a batch of one modality (B, *spec.shape) to features (B, out_dim)."""

    out_dim: int

    def __init__(self, spec: ModalitySpec) -> None:
        super().__init__()
        self.spec = spec


ENCODERS: Registry[type[Encoder]] = Registry("encoder", Encoder)


def build_encoder(spec: ModalitySpec, name: str | None = None, **options) -> Encoder:
    """Build the encoder ``name`` (default: the modality's own) for ``spec``."""
    cls = ENCODERS.get(name or spec.encoder)
    try:
        return cls(spec, **options)
    except TypeError as exc:
        raise TypeError(f"encoder {name or spec.encoder!r} for modality {spec.name!r}: {exc}") from exc
