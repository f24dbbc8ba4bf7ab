"""I2M2: product of the intra-modality experts and one inter-modality expert.

Madaan, Makino, Chopra, Cho, "Jointly Modeling Inter- & Intra-Modality Dependencies for
Multi-modal Learning", NeurIPS 2024: p(y|x) ∝ q(y|x_1..x_M) * prod_m q(y|x_m). The inter expert is
any single-expert (inter-only) strategy, chosen by name in gin (``inter='late_fusion'`` with
``inter_options={'operator': 'lrtf'}``, ``'early_fusion'``, or a plugin's). When a modality is
absent its intra expert is dropped; the inter expert is dropped too (``inter_missing='drop'``) or
fed imputed inputs (``inter_missing='impute'``).
"""
from __future__ import annotations

import torch

from i2m2bench.fusion.base import FUSIONS, Fusion, build_fusion
from i2m2bench.fusion.intra_only import build_intra_experts
from i2m2bench.types import Batch, TaskSpec


@FUSIONS.register("i2m2")
class I2M2(Fusion):
    combine = "poe"
    family = "i2m2"
    missing = "drop"

    def __init__(self, spec: TaskSpec, inter: str = "late_fusion", inter_options: dict | None = None,
                 intra_options: dict | None = None, inter_missing: str = "drop",
                 weights: list[float] | None = None) -> None:
        super().__init__(spec)
        if inter_missing not in ("drop", "impute"):
            raise ValueError(f"inter_missing must be 'drop' or 'impute'; got {inter_missing!r}")
        self.intra_experts = build_intra_experts(spec, intra_options)
        self.inter_expert = build_fusion(inter, spec, **dict(inter_options or {}))
        if self.inter_expert.combine != "single":
            raise ValueError(f"I2M2's inter expert must be a single-expert strategy; {inter!r} "
                             f"combines {self.inter_expert.combine!r}")
        self.inter_missing = inter_missing
        self._weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def expert_weights(self):
        return self._weights

    def expert_modalities(self):
        mods = {m: (m,) for m in self.intra_experts}
        mods["inter"] = self.spec.modality_names
        return mods

    def expert_drops(self, name: str) -> bool:
        return name != "inter" or self.inter_missing == "drop"

    def experts(self):
        return {**self.intra_experts, "inter": self.inter_expert}

    def forward(self, batch: Batch):
        out = {}
        for expert in self.intra_experts.values():
            out.update(expert(batch))  # {m: (B, C)}
        (z,) = self.inter_expert(batch).values()
        out["inter"] = z  # (B, C)
        return out
