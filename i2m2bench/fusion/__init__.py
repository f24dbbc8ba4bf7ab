"""Fusion strategies: unimodal, early fusion, late fusion (concat / LRTF), intra-only, I2M2."""
from i2m2bench.fusion.base import FUSIONS, Fusion, build_fusion
from i2m2bench.fusion import unimodal, late, early, intra_only, i2m2  # noqa: F401  (registers)

__all__ = ["FUSIONS", "Fusion", "build_fusion"]
