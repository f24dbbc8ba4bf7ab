"""Per-modality feature extractors. Each is an ``Encoder`` built from a ``ModalitySpec``.

Built in: ``mlp`` and ``identity`` (vectors, precomputed features), ``lenet`` (images,
spectrograms), ``preact_resnet18_gn`` (images, volumes; the official FastMRI backbone), ``gru``
(time series), ``text_gru`` and ``text_transformer`` (token ids) and ``pair`` (image pairs).
"""
from i2m2bench.encoders.base import ENCODERS, Encoder, build_encoder, encoder_kwargs
from i2m2bench.encoders import gru, lenet, mlp, pair, preact_resnet, text  # noqa: F401  (registers the encoders)

__all__ = ["ENCODERS", "Encoder", "build_encoder", "encoder_kwargs"]
