"""What AV-MNIST (:mod:`i2m2bench.data.avmnist`) and its embedded stand-in AV-Digits
(:mod:`i2m2bench.data.avmnist.embedded`) share: the labels and the two modalities.

Both family modules import these from here, so neither imports the other for them (only
``avmnist`` imports ``avdigits``, to build the stand-in).
"""
from __future__ import annotations

from i2m2bench.types import ModalitySpec

DIGITS = tuple(str(i) for i in range(10))

# The same two modalities for AV-MNIST and its embedded stand-in: uint8 stored, /255 per batch.
MODALITIES = (
    ModalitySpec("image", (1, 28, 28), "image", "lenet", scale=1 / 255),
    ModalitySpec("audio", (1, 112, 112), "spectrogram", "lenet", scale=1 / 255),
)

__all__ = ["DIGITS", "MODALITIES"]
