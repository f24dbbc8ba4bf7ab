"""Gated multimodal unit (GMU): Arevalo, Solorio, Montes-y-Gómez, González, "Gated Multimodal
Units for Information Fusion", ICLR 2017 workshop (arXiv:1702.01992).

Each modality's features x_m give a candidate h_m = tanh(W_m x_m); gates computed from all
modalities together decide how much of each candidate enters the fused representation. For two
modalities this is the paper's bimodal unit, z = σ(W_z [x_1; x_2]), h = z·h_1 + (1 − z)·h_2;
for more, the paper's generalisation with one gate per modality, h = Σ_m σ(W_zm [x_1; ...]) · h_m.
A linear classifier (the paper's) or a small MLP reads h. Absent modalities are imputed.
"""
from __future__ import annotations

import torch
from torch import nn

import i2m2bench
from i2m2bench import Batch, Fusion, TaskSpec


@i2m2bench.FUSIONS.register("gmu")
class GatedMultimodalUnit(Fusion):
    combine = "single"
    family = "inter"
    missing = "impute"

    def __init__(self, spec: TaskSpec, width: int = 6, hidden: int = 100, head_hidden: int = 0,
                 encoders: dict | None = None, impute_with: str = "zeros") -> None:
        super().__init__(spec, impute_with)
        self.encoders = nn.ModuleDict({
            m.name: i2m2bench.build_encoder(m, (encoders or {}).get(m.name), width=width)
            for m in spec.modalities})
        dims = [enc.out_dim for enc in self.encoders.values()]
        self.candidates = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in zip(self.encoders, dims)})
        n_gates = 1 if len(dims) == 2 else len(dims)
        self.gates = nn.Linear(sum(dims), hidden * n_gates)
        self.hidden = hidden
        self.head = (nn.Linear(hidden, spec.num_classes) if not head_hidden else
                     nn.Sequential(nn.Linear(hidden, head_hidden), nn.ReLU(),
                                   nn.Linear(head_hidden, spec.num_classes)))

    @classmethod
    def example_options(cls, spec: TaskSpec) -> dict:
        return {"width": 8, "hidden": 8}

    def expert_modalities(self):
        return {"inter": self.spec.modality_names}

    def forward(self, batch: Batch):
        xs = {m: enc(self.imputed(batch, m)) for m, enc in self.encoders.items()}  # (B, d_m)
        hs = [torch.tanh(self.candidates[m](x)) for m, x in xs.items()]  # (B, H) each
        z = torch.sigmoid(self.gates(torch.cat(list(xs.values()), dim=1)))  # (B, H * gates)
        if len(hs) == 2:
            h = z * hs[0] + (1 - z) * hs[1]
        else:
            h = sum(g * hm for g, hm in zip(z.split(self.hidden, dim=1), hs))
        return {"inter": self.head(h)}  # (B, C)

    def gate_values(self, batch: Batch) -> torch.Tensor:
        """The gates (B, H * gates) for ``batch`` — to inspect which modality the unit trusts."""
        xs = [enc(self.imputed(batch, m)) for m, enc in self.encoders.items()]
        return torch.sigmoid(self.gates(torch.cat(xs, dim=1)))
