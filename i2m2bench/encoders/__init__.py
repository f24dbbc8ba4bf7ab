"""Per-modality feature extractors. Each is an ``Encoder`` built from a ``ModalitySpec``."""
from i2m2bench.encoders.base import ENCODERS, Encoder, build_encoder
from i2m2bench.encoders import lenet, mlp  # noqa: F401  (registers the encoders)

__all__ = ["ENCODERS", "Encoder", "build_encoder"]
