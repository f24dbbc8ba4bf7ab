"""Unimodal classifier: one modality's encoder and an MLP head with ``hidden`` units, or one linear
layer when ``hidden`` is 0 (an *intra-modality* expert).

``width`` None leaves the encoder's width to the modality's own ``encoder_options`` (the task's
per-modality architecture, e.g. MIMIC's ``MLP(5, 10, 10)`` static and ``GRU(12, 30)`` series
encoders); ``encoder_options`` adds options for this expert's encoder only (e.g. the official
MIMIC series expert's per-step linear map, ``{'step_dim': 15}``). ``head``: ``'mlp'`` (Linear,
ReLU, Linear) or ``'ln_gelu'`` (Linear, LayerNorm, GELU, Linear: the official vision-language
heads of I2M2's VQA and NLVR2 code, on frozen backbone features with the ``identity`` encoder).
``hidden`` is a number of units, or ``'<k>x:<modality>'``: ``k`` times the feature width of that
modality of the task (the official vision-language heads are twice the backbone's width,
1536 = 2 x 768: ``'2x:text'`` gives that on real features and 128 on the embedded 64-d ones)."""
from __future__ import annotations

import math
import re

from i2m2bench.encoders import build_encoder, encoder_kwargs
from i2m2bench.encoders.mlp import ln_gelu_head, mlp
from i2m2bench.fusion.base import FUSIONS, Fusion
from i2m2bench.types import Batch, TaskSpec


_RELATIVE = re.compile(r"([1-9][0-9]*)x:([A-Za-z_][A-Za-z0-9_]*)")


def resolve_hidden(hidden: int | str, spec: TaskSpec) -> int:
    """``hidden`` as a number of units: a whole number as it is; ``'<k>x:<modality>'`` as ``k``
    times the per-sample feature width of ``<modality>`` of ``spec``. A ValueError naming the
    option and the modalities otherwise."""
    if isinstance(hidden, str):
        match = _RELATIVE.fullmatch(hidden)
        names = spec.modality_names
        if match is None or match.group(2) not in names:
            raise ValueError(f"hidden {hidden!r}: expected a whole number of units or "
                             f"'<k>x:<modality>' with a modality of {spec.name} "
                             f"({', '.join(names)}), e.g. '2x:{names[0]}'")
        return int(match.group(1)) * math.prod(spec.modality(match.group(2)).shape)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"hidden {hidden!r}: expected a whole number of units >= 0 or "
                         "'<k>x:<modality>'")
    return hidden


@FUSIONS.register("unimodal")
class Unimodal(Fusion):
    """q(y | x_m). With its modality absent it can only be fed an imputed input."""

    combine = "single"
    family = "unimodal"
    missing = "impute"

    def __init__(self, spec: TaskSpec, modality: str, width: int | None = 3,
                 hidden: int | str = 100, encoder: str | None = None, impute_with: str = "zeros",
                 encoder_options: dict | None = None, head: str = "mlp") -> None:
        super().__init__(spec, impute_with)
        self.modality = modality
        hidden = resolve_hidden(hidden, spec)
        self.encoder = build_encoder(spec.modality(modality), encoder,
                                     **encoder_kwargs(width, encoder_options))
        if head == "ln_gelu":
            if not hidden:
                raise ValueError("head 'ln_gelu' needs hidden > 0 (Linear, LayerNorm, GELU, Linear)")
            self.head = ln_gelu_head(self.encoder.out_dim, hidden, spec.num_classes)
        elif head == "mlp":
            self.head = mlp(self.encoder.out_dim, (hidden,) if hidden else (), spec.num_classes)
        else:
            raise ValueError(f"unimodal head must be 'mlp' or 'ln_gelu'; got {head!r}")

    @classmethod
    def example_options(cls, spec):
        return {"modality": spec.modality_names[0]}

    def expert_modalities(self):
        return {self.modality: (self.modality,)}

    def forward(self, batch: Batch):
        x = self.imputed(batch, self.modality)  # (B, *shape)
        return {self.modality: self.head(self.encoder(x))}  # (B, C)
