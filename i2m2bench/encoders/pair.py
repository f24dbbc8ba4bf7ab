"""Siamese encoder for ``image_pair`` modalities (2, C, H, W), e.g. NLVR2's two images.

One inner encoder (any registered image encoder, option ``inner``, default ``lenet``) with
shared weights reads both images; the features are the concatenation [f(left), f(right)]
(2 × the inner ``out_dim``), so the order of the pair is kept: swapping the images swaps the two
halves. Both images go through the inner encoder as one batch of 2B. The official NLVR2 code of
I2M2 does the same with its FIBER backbone (``divyam3897/I2M2``,
``vqa_nlvr/fiber/modules/objectives.py::compute_nlvr2``): the image-only expert runs the same
model on image 1 and on image 2 (``image_token_type_idx=1`` / ``2``) and concatenates the two
``cls_feats`` before its classifier.
"""
from __future__ import annotations

from i2m2bench.encoders.base import ENCODERS, Encoder, build_encoder, check_modality
from i2m2bench.types import ModalitySpec


@ENCODERS.register("pair")
class PairEncoder(Encoder):
    """(B, 2, C, H, W) -> (B, 2 × inner out_dim)."""

    def __init__(self, spec: ModalitySpec, width: int = 6, inner: str = "lenet",
                 inner_options: dict | None = None) -> None:
        super().__init__(spec)
        check_modality(spec, "pair", ("image_pair",), "(2, C, H, W)", rank=4)
        if inner == "pair":
            raise ValueError(f"encoder 'pair' for modality {spec.name!r}: the inner encoder must "
                             "read one image, not a pair")
        one = ModalitySpec(f"{spec.name}[image]", spec.shape[1:], "image", inner)
        self.inner = build_encoder(one, inner, width=width, **(inner_options or {}))
        self.out_dim = 2 * self.inner.out_dim

    def forward(self, x):  # x: (B, 2, C, H, W)
        b = x.shape[0]
        feats = self.inner(x.flatten(0, 1))  # (2B, d): left0, right0, left1, right1, ...
        return feats.view(b, self.out_dim)  # (B, 2d) = [f(left), f(right)]
