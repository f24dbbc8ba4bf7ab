"""Late fusion (inter-modality model): per-modality encoders, fused features, an MLP head.

Operators: ``concat`` (features concatenated; MultiBench's AV-MNIST late-fusion model) and
``lrtf``, low-rank tensor fusion (Liu et al., ACL 2018, "Efficient Low-rank Multimodal Fusion
with Modality-Specific Factors"). Defaults follow the official I2M2 AV-MNIST model,
``LowRankTensorFusion([48, 192], 120, 40)`` then ``MLP(120, 100, 10)`` (divyam3897/I2M2 @ 7742765,
``avmnist_and_mimic/avmnist_main.py`` lines 46-53): rank 40, fused dimension 120, xavier-normal
factors and rank weights, zero bias.

**Deviation, deliberate.** The official ``LowRankTensorFusion`` (``avmnist_and_mimic/
common_fusions.py`` lines 305-317, as in MultiBench) keeps its factors in a plain Python list, so
they are never registered as parameters and never trained; on CUDA, ``nn.Parameter(...).to(device)``
also leaves its rank weights and bias unregistered, so nothing of the fusion trains there. This
module trains all of them — the method as Liu et al. publish it. To approximate the official
behaviour, freeze ``fuse.factors`` (and, for the CUDA behaviour, ``fuse.rank_weights`` and
``fuse.bias``). Listed in docs/fidelity.md.
"""
from __future__ import annotations

import torch
from torch import nn

from i2m2bench.encoders import build_encoder, encoder_kwargs
from i2m2bench.encoders.mlp import mlp
from i2m2bench.fusion.base import FUSIONS, Fusion
from i2m2bench.types import Batch, TaskSpec


class LowRankTensorFusion(nn.Module):
    """h = sum_r w_r * prod_m ([f_m, 1] @ W_m^(r)) + b: the outer-product tensor, never built."""

    def __init__(self, in_dims: list[int], out_dim: int, rank: int) -> None:
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(torch.empty(rank, d + 1, out_dim)) for d in in_dims
        )
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        self.bias = nn.Parameter(torch.zeros(1, out_dim))
        for f in self.factors:
            nn.init.xavier_normal_(f)
        nn.init.xavier_normal_(self.rank_weights)
        self.out_dim = out_dim

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        prod = None
        for f, w in zip(feats, self.factors):
            ones = torch.ones(f.shape[0], 1, dtype=f.dtype, device=f.device)
            z = torch.matmul(torch.cat([f, ones], dim=1), w)  # (R, B, out)
            prod = z if prod is None else prod * z
        out = torch.matmul(self.rank_weights, prod.permute(1, 0, 2)).squeeze(1)  # (B, out)
        return out + self.bias


@FUSIONS.register("late_fusion")
class LateFusion(Fusion):
    """q(y | x_1..x_M) from fused encoder features; absent modalities are imputed."""

    combine = "single"
    family = "inter"
    missing = "impute"

    def __init__(self, spec: TaskSpec, operator: str = "concat", width: int | None = 6,
                 hidden: int = 100, rank: int = 40, fused_dim: int = 120,
                 encoders: dict | None = None, impute_with: str = "zeros") -> None:
        super().__init__(spec, impute_with)
        self.encoders = nn.ModuleDict({
            m.name: build_encoder(m, (encoders or {}).get(m.name), **encoder_kwargs(width))
            for m in spec.modalities
        })
        dims = [e.out_dim for e in self.encoders.values()]
        if operator == "concat":
            self.fuse = None
            head_in = sum(dims)
        elif operator == "lrtf":
            self.fuse = LowRankTensorFusion(dims, fused_dim, rank)
            head_in = fused_dim
        else:
            raise ValueError(f"late_fusion operator must be 'concat' or 'lrtf'; got {operator!r}")
        self.operator = operator
        self.head = mlp(head_in, (hidden,), spec.num_classes)

    def expert_modalities(self):
        return {"inter": self.spec.modality_names}

    def forward(self, batch: Batch):
        feats = [enc(self.imputed(batch, m)) for m, enc in self.encoders.items()]  # (B, d_m)
        h = torch.cat(feats, dim=1) if self.fuse is None else self.fuse(feats)
        return {"inter": self.head(h)}  # (B, C)
