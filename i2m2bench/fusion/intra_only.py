"""Intra-only model: the product of the unimodal experts, q(y|x) ∝ prod_m q(y|x_m).

The I2M2 paper's intra-modality baseline (Madaan et al., 2024). An absent modality's expert is
dropped from the product, so the model degrades to the experts that remain.
"""
from __future__ import annotations

import torch
from torch import nn

from i2m2bench.fusion.base import FUSIONS, Fusion
from i2m2bench.fusion.unimodal import Unimodal
from i2m2bench.types import Batch, TaskSpec


def build_intra_experts(spec: TaskSpec, options: dict | None) -> nn.ModuleDict:
    """One :class:`Unimodal` expert per (underived) modality with ``options``; ``options['per_modality']``
    ({modality: options}) adds or replaces options of one modality's expert (e.g. MIMIC's series
    expert ``{'timeseries': {'encoder_options': {'step_dim': 15}}}``)."""
    opts = dict(options or {})
    per = dict(opts.pop("per_modality", None) or {})
    sources = spec.source_modalities  # a derived input (a joint feature) is no modality's own
    unknown = sorted(set(per) - set(sources))
    if unknown:
        raise ValueError(f"intra_options['per_modality'] names {', '.join(map(repr, unknown))}: "
                         f"not a modality of the task ({', '.join(sources)})")
    return nn.ModuleDict({m: Unimodal(spec, modality=m, **{**opts, **dict(per.get(m) or {})})
                          for m in sources})


@FUSIONS.register("intra_only")
class IntraOnly(Fusion):
    combine = "poe"
    family = "intra"
    missing = "drop"

    def __init__(self, spec: TaskSpec, intra_options: dict | None = None,
                 weights: list[float] | None = None) -> None:
        super().__init__(spec)
        self.intra_experts = build_intra_experts(spec, intra_options)
        self._weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def expert_weights(self):
        return self._weights

    def expert_modalities(self):
        return {m: (m,) for m in self.intra_experts}

    def experts(self):
        return dict(self.intra_experts.items())

    def forward(self, batch: Batch):
        out = {}
        for m, expert in self.intra_experts.items():
            out.update(expert(batch))  # {m: (B, C)}
        return out
