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


def check_modality(spec: ModalitySpec, encoder: str, kinds: tuple[str, ...], shape: str,
                   rank: int | None = None) -> None:
    """Refuse a modality ``encoder`` cannot read: a ``ValueError`` naming the modality, its kind
    and shape, and what the encoder expects (``kinds``, a ``shape`` such as ``"(T, F)"`` of
    ``rank`` dimensions)."""
    if spec.kind not in kinds or (rank is not None and len(spec.shape) != rank):
        raise ValueError(f"encoder {encoder!r} reads {' or '.join(kinds)} modalities of shape "
                         f"{shape}; modality {spec.name!r} is a {spec.kind} {spec.shape}")


def encoder_kwargs(width: int | None, options: dict | None = None) -> dict:
    """The options a strategy passes to its encoders: ``options`` and ``width`` (left out when
    None, so that the modality's own ``encoder_options`` give it)."""
    out = dict(options or {})
    if width is not None:
        out["width"] = width
    return out


def build_encoder(spec: ModalitySpec, name: str | None = None, **options) -> Encoder:
    """Build the encoder ``name`` (default: the modality's own) for ``spec``. When that is the
    modality's own ``encoder``, its ``encoder_options`` are passed too (``options`` win)."""
    name = name or spec.encoder
    cls = ENCODERS.get(name)
    if name == spec.encoder and spec.encoder_options:
        options = {**spec.options, **options}
    try:
        return cls(spec, **options)
    except TypeError as exc:
        raise TypeError(f"encoder {name!r} for modality {spec.name!r}: {exc}") from exc
