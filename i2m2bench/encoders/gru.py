"""GRU encoder for time series (T, F), as the official I2M2 code uses for MIMIC-III.

The official MIMIC code of I2M2 (``divyam3897/I2M2``, ``avmnist_and_mimic/mimic_main.py``, which
builds on MultiBench's ``unimodals/common_models.py``) encodes the 24 hourly steps × 12 features of
the MIMIC time series with a one-layer, batch-first ``GRU(12, 30)`` (hidden size 30) and
``flatten=True``: the per-step outputs of all 24 steps are flattened (24 × 30 = 720 features; the
inter model's head is ``MLP(730, 40, ...)`` over them and the 10 static features). Its unimodal
expert is ``GRUWithLinear(12, 30, 15, flatten=True)``: the same GRU, a linear map 30 → 15 on every
step, flattened (360 features). The series are z-scored per feature over samples and steps
(``avmnist_and_mimic/datasets/mimic/get_data.py``) — here ``ModalitySpec.mean`` / ``std`` of a
``timeseries`` modality (channels are its last axis).

``readout='last'`` (default): the final hidden state of the last layer, ``width`` features — what
a sequence classifier usually reads, and independent of T. ``readout='steps'``: the official
MIMIC readout (every step's output, flattened; T × ``width`` features); ``step_dim`` adds
``GRUWithLinear``'s per-step linear map (15 in the official unimodal expert). Choose them per
modality with ``ModalitySpec(..., encoder='gru', encoder_options={'readout': 'steps'})``.
"""
from __future__ import annotations

from torch import nn

from i2m2bench.encoders.base import ENCODERS, Encoder, check_modality
from i2m2bench.types import ModalitySpec

MIMIC_HIDDEN = 30  # GRU(12, 30) in the official MIMIC code


@ENCODERS.register("gru")
class GRUEncoder(Encoder):
    """(B, T, F) -> (B, width) (``readout='last'``) or (B, T × width or T × step_dim)."""

    def __init__(self, spec: ModalitySpec, width: int = MIMIC_HIDDEN, layers: int = 1,
                 readout: str = "last", step_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(spec)
        check_modality(spec, "gru", ("timeseries", "sequence"), "(T, F)", rank=2)
        if readout not in ("last", "steps"):
            raise ValueError(f"encoder 'gru' for modality {spec.name!r}: readout must be 'last' "
                             f"or 'steps'; got {readout!r}")
        if step_dim is not None and readout != "steps":
            raise ValueError(f"encoder 'gru' for modality {spec.name!r}: step_dim applies to "
                             "readout='steps' only")
        steps, features = spec.shape
        self.readout = readout
        self.gru = nn.GRU(features, width, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.step = nn.Linear(width, step_dim) if step_dim is not None else None
        per_step = step_dim if step_dim is not None else width
        self.out_dim = width if readout == "last" else steps * per_step

    def forward(self, x):  # x: (B, T, F)
        out, h = self.gru(x)  # out (B, T, width), h (layers, B, width)
        if self.readout == "last":
            return h[-1]  # (B, width)
        if self.step is not None:
            out = self.step(out)  # (B, T, step_dim)
        return out.flatten(1)  # (B, T * per_step)
