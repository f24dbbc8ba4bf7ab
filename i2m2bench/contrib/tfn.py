"""Tensor fusion (TFN): Zadeh, Chen, Poria, Cambria, Morency, "Tensor Fusion Network for
Multimodal Sentiment Analysis", EMNLP 2017.

Each modality's encoder features are projected to a small embedding ``z_m`` (the paper's
"modality embedding subnetworks"), a constant 1 is appended, and the outer product
``[z_1, 1] ⊗ [z_2, 1] ⊗ ...`` — which holds every unimodal term and every cross-modal
product — is flattened and read by a post-fusion MLP. The embedding size is kept small because the
fused tensor grows as the product of the sizes; 32 is the size of TFN's acoustic and visual
subnetworks (Zadeh et al. 2017, Sec. 4). Absent modalities are imputed (zeros or training mean).
"""
from __future__ import annotations

import torch
from torch import nn

import i2m2bench
from i2m2bench import Batch, Fusion, TaskSpec


@i2m2bench.FUSIONS.register("tfn")
class TensorFusion(Fusion):
    combine = "single"
    family = "inter"
    missing = "impute"

    def __init__(self, spec: TaskSpec, width: int = 6, embed_dim: int = 32, hidden: int = 100,
                 encoders: dict | None = None, impute_with: str = "zeros") -> None:
        super().__init__(spec, impute_with)
        if embed_dim < 1:
            raise ValueError(f"tfn: embed_dim must be >= 1; got {embed_dim!r}")
        self.encoders = nn.ModuleDict({
            m.name: i2m2bench.build_encoder(m, (encoders or {}).get(m.name), width=width)
            for m in spec.modalities})
        self.embed = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(enc.out_dim, embed_dim), nn.ReLU())
            for m, enc in self.encoders.items()})
        fused = (embed_dim + 1) ** len(spec.modalities)
        self.head = nn.Sequential(nn.Linear(fused, hidden), nn.ReLU(), nn.Linear(hidden, spec.num_classes))

    @classmethod
    def example_options(cls, spec: TaskSpec) -> dict:
        return {"width": 8, "embed_dim": 4, "hidden": 8}

    def expert_modalities(self):
        return {"inter": self.spec.modality_names}

    def forward(self, batch: Batch):
        fused = None
        for m, enc in self.encoders.items():
            z = self.embed[m](enc(self.imputed(batch, m)))  # (B, d)
            z = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)  # (B, d + 1)
            # outer product with what is fused so far, flattened: (B, prod (d_k + 1))
            fused = z if fused is None else torch.einsum("bi,bj->bij", fused, z).flatten(1)
        return {"inter": self.head(fused)}  # (B, C)
