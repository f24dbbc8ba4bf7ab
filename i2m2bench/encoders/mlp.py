"""Multi-layer perceptron encoder for vector inputs (anything is flattened first), and the
identity encoder for precomputed features. Both read float values of any kind and shape except
``tokens`` (integer ids mean nothing as numbers: use ``text_gru`` or ``text_transformer``)."""
from __future__ import annotations

import math

from torch import nn

from i2m2bench.encoders.base import ENCODERS, Encoder
from i2m2bench.types import ModalitySpec


def _not_tokens(spec: ModalitySpec, encoder: str) -> None:
    if spec.kind == "tokens":
        raise ValueError(f"encoder {encoder!r} reads float features; modality {spec.name!r} holds "
                         f"token ids {spec.shape} (use 'text_gru' or 'text_transformer')")


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int | None, dropout: float = 0.0) -> nn.Sequential:
    """Linear/ReLU stack; ``out_dim`` None ends on the last hidden layer (with its ReLU)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = h
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def ln_gelu_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear, LayerNorm, GELU, Linear: the classifier head of the official I2M2 vision-language
    code (FIBER's VQA and NLVR2 heads; ``hidden`` is twice the feature size there)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                         nn.Linear(hidden, out_dim))


@ENCODERS.register("mlp")
class MLPEncoder(Encoder):
    """``depth`` Linear/ReLU layers of ``width`` units. ``linear_out``: the last layer has no
    activation -- MultiBench's two-layer ``MLP(indim, hiddim, outdim)`` (``fc``, ReLU, ``fc2``),
    which the official MIMIC code uses as its static encoder ``MLP(5, 10, 10)``: ``width=10,
    depth=2, linear_out=True``."""

    def __init__(self, spec: ModalitySpec, width: int = 64, depth: int = 2,
                 linear_out: bool = False) -> None:
        super().__init__(spec)
        _not_tokens(spec, "mlp")
        if linear_out and depth < 1:
            raise ValueError(f"encoder 'mlp' for modality {spec.name!r}: linear_out needs depth >= 1")
        hidden = (width,) * (depth - 1 if linear_out else depth)
        self.net = mlp(math.prod(spec.shape), hidden, width if linear_out else None)
        self.out_dim = width

    def forward(self, x):  # x: (B, *shape)
        return self.net(x.flatten(1))  # (B, width)


@ENCODERS.register("identity")
class IdentityEncoder(Encoder):
    """Flattened raw input as features (for already-extracted features)."""

    def __init__(self, spec: ModalitySpec, width: int = 0) -> None:
        super().__init__(spec)
        _not_tokens(spec, "identity")
        self.out_dim = math.prod(spec.shape)

    def forward(self, x):
        return x.flatten(1)
