"""Unimodal classifier: one modality's encoder and an MLP head with ``hidden`` units, or one linear
layer when ``hidden`` is 0 (an *intra-modality* expert).

``width`` None leaves the encoder's width to the modality's own ``encoder_options`` (the task's
per-modality architecture, e.g. MIMIC's ``MLP(5, 10, 10)`` static and ``GRU(12, 30)`` series
encoders); ``encoder_options`` adds options for this expert's encoder only (e.g. the official
MIMIC series expert's per-step linear map, ``{'step_dim': 15}``). ``head``: ``'mlp'`` (Linear,
ReLU, Linear) or ``'ln_gelu'`` (Linear, LayerNorm, GELU, Linear: the official vision-language
heads of I2M2's VQA and NLVR2 code, on frozen backbone features with the ``identity`` encoder)."""
from __future__ import annotations

from i2m2bench.encoders import build_encoder, encoder_kwargs
from i2m2bench.encoders.mlp import ln_gelu_head, mlp
from i2m2bench.fusion.base import FUSIONS, Fusion
from i2m2bench.types import Batch, TaskSpec


@FUSIONS.register("unimodal")
class Unimodal(Fusion):
    """q(y | x_m). With its modality absent it can only be fed an imputed input."""

    combine = "single"
    family = "unimodal"
    missing = "impute"

    def __init__(self, spec: TaskSpec, modality: str, width: int | None = 3, hidden: int = 100,
                 encoder: str | None = None, impute_with: str = "zeros",
                 encoder_options: dict | None = None, head: str = "mlp") -> None:
        super().__init__(spec, impute_with)
        self.modality = modality
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
