"""LeNet-style convolutional encoder, as in MultiBench's AV-MNIST models used by I2M2.

MultiBench (Liang et al., NeurIPS 2021 datasets track), ``unimodals/common_models.py::LeNet``:
one 5x5 conv block, then ``additional_layers`` 3x3 conv blocks that double the width; each block
is conv (no bias) + BatchNorm + ReLU + 2x2 max-pool. The I2M2 paper (Madaan et al., 2024, App. on
AV-MNIST) uses width c = 6 in the inter model and c = 3 in unimodal experts, with 3 extra blocks
for 28x28 images and 5 for 112x112 spectrograms, so both end at 1x1 with 8c and 32c features.

Initialisation as the official code: every convolution weight gets ``nn.init.kaiming_uniform_``
with its default arguments (a = 0, fan_in, leaky_relu gain), BatchNorm PyTorch's default
(MultiBench ``unimodals/common_models.py`` lines 432-434, copied unchanged into
divyam3897/I2M2 @ 7742765 ``avmnist_and_mimic/unimodals/common_models.py``).
"""
from __future__ import annotations

from torch import nn

from i2m2bench.encoders.base import ENCODERS, Encoder
from i2m2bench.types import ModalitySpec


def _block(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def lenet_extra_blocks(size: int) -> int:
    """Number of 3x3 blocks after the 5x5 one that takes a ``size``-pixel side down to 1."""
    n, s = 0, size // 2
    while s > 1:
        s //= 2
        n += 1
    return n


@ENCODERS.register("lenet")
class LeNet(Encoder):
    def __init__(self, spec: ModalitySpec, width: int = 6, extra_blocks: int | None = None) -> None:
        super().__init__(spec)
        if len(spec.shape) != 3:
            raise ValueError(f"lenet needs (C, H, W) inputs; modality {spec.name!r} has {spec.shape}")
        cin, h, w = spec.shape
        n = lenet_extra_blocks(min(h, w)) if extra_blocks is None else extra_blocks
        layers = [_block(cin, width, 5)]
        c = width
        for _ in range(n):
            layers.append(_block(c, 2 * c, 3))
            c *= 2
        self.net = nn.Sequential(*layers)
        side_h, side_w = h, w
        for _ in range(n + 1):
            side_h, side_w = side_h // 2, side_w // 2
        self.out_dim = c * max(side_h, 1) * max(side_w, 1)
        self.extra_blocks = n
        for mod in self.modules():  # the official LeNet's initialisation
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_uniform_(mod.weight)

    def forward(self, x):  # x: (B, C, H, W)
        return self.net(x).flatten(1)  # (B, out_dim)


