"""Small text encoders for ``tokens`` modalities (T,) of integer ids padded with ``pad_id``.

Both embed the ids (``nn.Embedding(vocab_size, width, padding_idx=pad_id)``: the padding id's
vector is zero and never trained) and read only the real tokens — the padding mask is
``x != pad_id`` (:func:`i2m2bench.types.padding_mask`) — so padding never changes the features:
the same text padded to any length gives the same output (up to float rounding). A sample with no
tokens at all (an empty text, or a missing modality imputed with padding) gives zero features.

* ``text_gru``: embedding + GRU over the tokens up to the last real one (packed with
  ``pack_padded_sequence``; padding is expected at the end — pads inside a text are read as the
  zero vector); features: the final hidden state (bidirectional: both directions' final states).
* ``text_transformer``: embedding + learned positions + a pre-norm ``nn.TransformerEncoder``
  whose attention ignores padded keys, then the mean over the real tokens.

The vocabulary size comes from the modality (``ModalitySpec.vocab_size``, the dataset knows it);
the ``vocab_size`` option overrides it, and an error says so when neither is given. Both accept
inputs shorter or longer than ``spec.shape`` (any T; the transformer up to ``max_len``, default
the spec's T).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from i2m2bench.encoders.base import ENCODERS, Encoder, check_modality
from i2m2bench.types import ModalitySpec, padding_mask


def _vocab(spec: ModalitySpec, encoder: str, vocab_size: int | None) -> int:
    v = vocab_size if vocab_size is not None else spec.vocab_size
    if v is None:
        raise ValueError(f"encoder {encoder!r} for modality {spec.name!r}: the vocabulary size is "
                         "unknown; set ModalitySpec.vocab_size (or pass the encoder option "
                         "vocab_size)")
    if not 0 <= spec.pad_id < v:
        raise ValueError(f"encoder {encoder!r} for modality {spec.name!r}: pad_id {spec.pad_id} is "
                         f"outside the vocabulary [0, {v})")
    return int(v)


class _TextEncoder(Encoder):
    name = "text"

    def __init__(self, spec: ModalitySpec, width: int, vocab_size: int | None) -> None:
        super().__init__(spec)
        check_modality(spec, self.name, ("tokens",), "(T,)", rank=1)
        self.vocab_size = _vocab(spec, self.name, vocab_size)
        self.embed = nn.Embedding(self.vocab_size, width, padding_idx=spec.pad_id)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or torch.is_floating_point(x):
            raise ValueError(f"encoder {self.name!r} for modality {self.spec.name!r}: expected "
                             f"integer token ids (B, T); got {x.dtype} {tuple(x.shape)}")
        return padding_mask(x, self.spec)  # (B, T) True at real tokens


@ENCODERS.register("text_gru")
class TextGRU(_TextEncoder):
    """(B, T) ids -> (B, width) (× 2 when bidirectional)."""

    name = "text_gru"

    def __init__(self, spec: ModalitySpec, width: int = 64, vocab_size: int | None = None,
                 bidirectional: bool = False) -> None:
        super().__init__(spec, width, vocab_size)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.out_dim = width * self.directions

    def forward(self, x):  # x: (B, T) int64
        real = self._mask(x)  # (B, T)
        if x.shape[1] == 0:
            return self.embed.weight.new_zeros((x.shape[0], self.out_dim))
        steps = torch.arange(1, x.shape[1] + 1, device=x.device)
        lengths = (real * steps).amax(1)  # (B,) position of the last real token + 1 (0: none)
        packed = pack_padded_sequence(self.embed(x), lengths.clamp_min(1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.gru(packed)  # (layers * directions, B, width)
        h = torch.cat(list(h[-self.directions:]), dim=1)  # (B, out_dim): the last layer's states
        return h * (lengths > 0).unsqueeze(1).to(h.dtype)  # no tokens: zero features


@ENCODERS.register("text_transformer")
class TextTransformer(_TextEncoder):
    """(B, T) ids -> (B, width): masked mean of a small transformer's token features."""

    name = "text_transformer"

    def __init__(self, spec: ModalitySpec, width: int = 64, vocab_size: int | None = None,
                 layers: int = 2, heads: int = 4, max_len: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__(spec, width, vocab_size)
        if width % heads:
            raise ValueError(f"encoder 'text_transformer' for modality {spec.name!r}: width "
                             f"{width} must be divisible by heads {heads}")
        self.max_len = int(max_len if max_len is not None else spec.shape[0])
        self.pos = nn.Parameter(torch.zeros(self.max_len, width))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(self, x):  # x: (B, T) int64
        real = self._mask(x)  # (B, T)
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"encoder 'text_transformer' for modality {self.spec.name!r}: "
                             f"{t} tokens exceed max_len {self.max_len}")
        empty = ~real.any(1)  # (B,) samples without tokens
        ignore = ~real
        if t:  # let an empty sample attend to its first position (softmax over nothing is NaN)
            ignore[:, 0] &= ~empty
        h = self.embed(x) + self.pos[:t]  # (B, T, width)
        h = self.norm(self.body(h, src_key_padding_mask=ignore))  # (B, T, width)
        w = real.to(h.dtype).unsqueeze(2)  # (B, T, 1)
        return (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, width); no tokens: zeros
