"""FiLM fusion: Perez, Strub, de Vries, Dumoulin, Courville, "FiLM: Visual Reasoning with a
General Conditioning Layer", AAAI 2018.

The first modality's features are modulated feature-wise by the others:
h = γ(x_rest) ⊙ f(x_first) + β(x_rest), then an MLP head. It is an inter-modality model (one
expert reading every modality), so it can stand alone or be I2M2's inter expert. Written only
against i2m2bench's public API, as any plugin would be.
"""
from __future__ import annotations

import torch
from torch import nn

import i2m2bench


@i2m2bench.FUSIONS.register("film")
class FiLMFusion(i2m2bench.Fusion):
    combine = "single"     # one expert; I2M2 can use it as its inter expert
    family = "inter"       # leaderboard grouping
    missing = "impute"     # absent inputs are imputed (zeros or training mean), never dropped

    def __init__(self, spec: i2m2bench.TaskSpec, width: int = 32, hidden: int = 64,
                 impute_with: str = "zeros") -> None:
        super().__init__(spec, impute_with)
        self.encoders = nn.ModuleDict({m.name: i2m2bench.build_encoder(m, width=width)
                                       for m in spec.modalities})
        first, *rest = self.encoders.values()
        self.film = nn.Linear(sum(e.out_dim for e in rest), 2 * first.out_dim)  # -> (γ, β)
        self.head = nn.Sequential(nn.Linear(first.out_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, spec.num_classes))

    @classmethod
    def example_options(cls, spec):
        return {"width": 8, "hidden": 8}  # small, for i2m2bench.testing.check_fusion

    def expert_modalities(self):
        return {"inter": self.spec.modality_names}

    def forward(self, batch: i2m2bench.Batch):
        feats = [enc(self.imputed(batch, m)) for m, enc in self.encoders.items()]  # (B, d_m)
        gamma, beta = self.film(torch.cat(feats[1:], dim=1)).chunk(2, dim=1)  # (B, d_0) each
        return {"inter": self.head((1 + gamma) * feats[0] + beta)}  # (B, C)
