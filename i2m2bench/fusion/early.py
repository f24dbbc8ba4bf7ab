"""Early fusion (inter-modality model): inputs fused before a single network.

Image-like modalities (C, H, W) are resized (nearest) to the largest spatial size among them and
stacked along channels, then one network reads them (``encoder``, default LeNet; the inputs'
``encoder_options`` when they all share them, e.g. the pooled size of a ResNet); vector-like
modalities are flattened and concatenated into one MLP input. Mixing both kinds is refused (no
single network fits both). The head is an MLP with ``hidden`` units, or one linear layer when
``hidden`` is 0 (the official FastMRI heads).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from i2m2bench.encoders import build_encoder
from i2m2bench.encoders.mlp import mlp
from i2m2bench.fusion.base import FUSIONS, Fusion
from i2m2bench.types import Batch, ModalitySpec, TaskSpec


@FUSIONS.register("early_fusion")
class EarlyFusion(Fusion):
    combine = "single"
    family = "inter"
    missing = "impute"

    def __init__(self, spec: TaskSpec, width: int = 6, hidden: int = 100,
                 encoder: str | None = None, impute_with: str = "zeros") -> None:
        super().__init__(spec, impute_with)
        spatial = [m for m in spec.modalities if len(m.shape) == 3]
        if spatial and len(spatial) != len(spec.modalities):
            raise ValueError("early_fusion needs all modalities image-like (C, H, W) or none; "
                             f"got shapes {[m.shape for m in spec.modalities]}")
        if spatial:
            self.size = max((m.shape[1], m.shape[2]) for m in spatial)
            channels = sum(m.shape[0] for m in spatial)
            options = {m.encoder_options for m in spatial}  # the inputs' own encoder options,
            fused = ModalitySpec("fused", (channels, *self.size), "image", encoder or "lenet",
                                 encoder_options=options.pop() if len(options) == 1 else ())  # when shared
        else:
            self.size = None
            dim = sum(int(torch.Size(m.shape).numel()) for m in spec.modalities)
            fused = ModalitySpec("fused", (dim,), "vector", encoder or "mlp")
        self.encoder = build_encoder(fused, width=width)
        self.head = mlp(self.encoder.out_dim, (hidden,) if hidden else (), spec.num_classes)

    def expert_modalities(self):
        return {"inter": self.spec.modality_names}

    def forward(self, batch: Batch):
        xs = [self.imputed(batch, m) for m in self.spec.modality_names]
        if self.size is not None:
            xs = [x if tuple(x.shape[-2:]) == self.size else F.interpolate(x, size=self.size)
                  for x in xs]  # each (B, C_m, H, W)
            x = torch.cat(xs, dim=1)  # (B, sum C_m, H, W)
        else:
            x = torch.cat([x.flatten(1) for x in xs], dim=1)  # (B, sum d_m)
        return {"inter": self.head(self.encoder(x))}
