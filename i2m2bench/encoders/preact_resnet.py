"""PreActResNet18 with GroupNorm: the backbone of the official FastMRI (knee MRI) code of I2M2.

Pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016) as
``divyam3897/I2M2`` builds it in ``fastMRI/models/preactresnet_knee.py`` (``PreActResNet18`` with
its default ``norm='group'``), which this module follows:

* stem: one 3×3 convolution, stride 1, no bias, input channels -> 64 (no max-pool);
* four stages of two ``PreActBlock``s (``num_blocks=[2, 2, 2, 2]``), 64, 128, 256, 512 channels,
  strides 1, 2, 2, 2; a block is GN -> ReLU -> conv3×3 (stride) -> GN -> ReLU -> conv3×3, plus
  the identity, or a 1×1 convolution (no bias) of the first activation when the stride or width
  changes;
* every norm is ``nn.GroupNorm(32, channels)`` (no BatchNorm), initialised to weight 1, bias 0;
  convolutions get Kaiming-normal weights (``mode='fan_out'``, ReLU);
* no norm after the last stage (the official one applies only in its ``shared_conv`` variant);
  then ``nn.AdaptiveAvgPool2d`` to 10×10 (``fc_layer_dim=100``) and flatten (512 × 100 features,
  read by one linear layer per knee label).

Inputs: the official model computes the magnitude (``ktoi_w_mag``) or phase (``ktoi_w_phase``,
``torch.angle``: values in [−π, π], fed without further normalisation) of the k-space-to-image
data and centre-crops it to 320×320 before the stem; here a loader stores those images and
``ModalitySpec`` normalises them (e.g. phase: ``scale=1/(2π), offset=0.5``). Any (C, H, W) size
works: the pooling is adaptive. Differences, as options: ``width`` (the stem's channels; official
64 — strategies pass their own ``width``), GroupNorm with ``gcd(groups, channels)`` groups where
``groups`` (official 32) does not divide a narrow stage's channels, and ``pool`` (the side of the
pooled map; default 1, global average pooling, 8 × ``width`` features — the official 10 gives
100 × 8 × ``width``). A ``volume`` (C, D, H, W) is read with its D slices as channels (C·D),
as the official multi-coil variant stacks coils as channels.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from i2m2bench.encoders.base import ENCODERS, Encoder, check_modality
from i2m2bench.types import ModalitySpec

OFFICIAL_GROUPS = 32  # nn.GroupNorm(32, planes) in fastMRI/models/preactresnet_knee.py
OFFICIAL_WIDTH = 64  # stem and first-stage channels
OFFICIAL_POOL = 10  # AdaptiveAvgPool2d((10, 10)): int(fc_layer_dim ** 0.5), fc_layer_dim = 100


def group_norm(channels: int, groups: int = OFFICIAL_GROUPS) -> nn.GroupNorm:
    """``GroupNorm(groups, channels)``, with ``gcd(groups, channels)`` groups when ``groups``
    does not divide ``channels`` (narrow widths)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class PreActBlock(nn.Module):
    """Pre-activation basic block (GN -> ReLU -> conv, twice) with its shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):  # (B, cin, H, W) -> (B, cout, H / stride, W / stride)
        out = F.relu(self.norm1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out)))
        return out + skip


@ENCODERS.register("preact_resnet18_gn")
class PreActResNet18GN(Encoder):
    """(B, C, H, W) -> (B, 8 × width × pool²)."""

    def __init__(self, spec: ModalitySpec, width: int = OFFICIAL_WIDTH, groups: int = OFFICIAL_GROUPS,
                 pool: int = 1, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__(spec)
        check_modality(spec, "preact_resnet18_gn", ("image", "spectrogram", "volume"),
                       "(C, H, W) (or a volume (C, D, H, W))")
        want = 4 if spec.kind == "volume" else 3
        if len(spec.shape) != want:
            raise ValueError(f"encoder 'preact_resnet18_gn' reads (C, H, W) images (or (C, D, H, "
                             f"W) volumes); modality {spec.name!r} is a {spec.kind} {spec.shape}")
        cin = math.prod(spec.shape[:-2])  # a volume's slices become channels
        self.stem = nn.Conv2d(cin, width, 3, stride=1, padding=1, bias=False)
        layers, c = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(PreActBlock(c, cout, 2 if (i > 0 and j == 0) else 1, groups))
                c = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((pool, pool))
        self.out_dim = c * pool * pool
        for m in self.modules():  # the official initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x):  # x: (B, C, H, W) or (B, C, D, H, W)
        x = x.flatten(1, -3)  # (B, C', H, W)
        return self.pool(self.stages(self.stem(x))).flatten(1)  # (B, out_dim)
