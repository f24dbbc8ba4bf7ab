"""``toy_kinds``: a tiny synthetic task with one modality of each newer kind — a time series, a
token sequence and an image pair — that trains in seconds (tests, CLI checks).

It exercises what real tasks of these kinds need end to end (MIMIC's time series, text with
padding, NLVR2's image pairs): per-modality normalisation (per-feature mean/std of the series,
``scale`` then mean/std of the uint8 pixels), int64 token ids that stay integers, padding, and
their encoders (``gru``, ``text_gru``, ``pair``).

Each sample has a label y in {0..C-1} (C = 4 by default) and a latent ``code`` in {0..C-1}:

* ``series`` (T, F) float32: a fixed prototype of y plus half a prototype of ``code`` plus
  Gaussian noise (std ``noise``), then stored per feature as ``value × feature_std + feature_mean`` (means 10, −5,
  100, ...; stds 1, 4, 20, ...), which the spec's ``mean``/``std`` undo — an intra cue of y;
* ``text`` (T,) int64: 3..T filler words (ids C+1..vocab-1) with one key word ``1 + (y + code)
  mod C`` at a random position, right-padded with ``pad_id`` 0; with probability ``text_noise``
  the key word is drawn at random instead;
* ``pair`` (2, 1, S, S) uint8: the left image lights the quadrant ``code`` (C <= 4), the right
  one a random quadrant (a distractor: the order of the pair matters).

Alone, ``series`` predicts y (noisily), ``text`` only (y + code) and ``pair`` only ``code``:
text and pair together give y exactly (inter-modality information), so both intra- and
inter-modality dependencies exist. A ``noisier`` shift set doubles the series noise.
Generated: ``source`` must be 'auto' or 'synthetic'; there is no ``data_root``.
"""
from __future__ import annotations

import torch

from i2m2bench.data.base import DATASETS, check_count
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

PAD = 0
_PROTO_SEED = 2718  # fixed prototypes: a function of the options alone
FEATURE_MEAN = (10.0, -5.0, 100.0, 0.5, -20.0, 3.0, 7.0, -1.0)  # stored per-feature offsets
FEATURE_STD = (1.0, 4.0, 20.0, 0.25, 2.0, 8.0, 0.5, 3.0)  # and scales (undone by the spec)
PIXEL_MEAN, PIXEL_STD = 0.2, 0.35  # about the stored images' pixel statistics (after / 255)


def task_spec(classes: int, steps: int, features: int, tokens: int, vocab: int, side: int) -> TaskSpec:
    return TaskSpec(
        name="toy_kinds", version="1",
        modalities=(
            ModalitySpec("series", (steps, features), "timeseries", "gru",
                         mean=FEATURE_MEAN[:features], std=FEATURE_STD[:features]),
            ModalitySpec("text", (tokens,), "tokens", "text_gru", pad_id=PAD, vocab_size=vocab),
            ModalitySpec("pair", (2, 1, side, side), "image_pair", "pair", scale=1 / 255,
                         mean=(PIXEL_MEAN,), std=(PIXEL_STD,), encoder_options={"inner": "lenet"}),
        ),
        problem="multiclass", num_classes=classes, labels=tuple(str(i) for i in range(classes)),
        source="synthetic",
        description="synthetic task with a time series, a token sequence and an image pair")


def _quadrants(which: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 (n, 1, side, side): quadrant ``which`` (0..3) bright, the rest dim noise."""
    n, h = len(which), side // 2
    img = torch.randint(0, 40, (n, 1, side, side), generator=gen, dtype=torch.uint8)
    for q in range(4):
        rows = which == q
        r, c = divmod(q, 2)
        img[rows, :, r * h:(r + 1) * h, c * h:(c + 1) * h] = 220
    return img


def _make(n: int, o: dict, noise: float, gen: torch.Generator):
    c, steps, feats, t, vocab, side = (o[k] for k in ("classes", "steps", "features", "tokens",
                                                      "vocab", "side"))
    y = torch.randint(0, c, (n,), generator=gen)
    code = torch.randint(0, c, (n,), generator=gen)
    protos = torch.randn(2, c, steps, feats, generator=torch.Generator().manual_seed(_PROTO_SEED))
    z = protos[0, y] + 0.5 * protos[1, code] + noise * torch.randn(n, steps, feats, generator=gen)
    series = (z * torch.tensor(FEATURE_STD[:feats]) + torch.tensor(FEATURE_MEAN[:feats])).float()

    key = (y + code) % c
    flip = torch.rand(n, generator=gen) < o["text_noise"]
    key = torch.where(flip, torch.randint(0, c, (n,), generator=gen), key)
    lengths = torch.randint(3, t + 1, (n,), generator=gen)
    text = torch.randint(c + 1, vocab, (n, t), generator=gen)
    where = (torch.rand(n, generator=gen) * lengths).long()  # key position < length
    text[torch.arange(n), where] = 1 + key
    text[torch.arange(t)[None, :] >= lengths[:, None]] = PAD  # right padding
    left = _quadrants(code % 4, side, gen)
    right = _quadrants(torch.randint(0, 4, (n,), generator=gen), side, gen)
    pair = torch.stack([left, right], dim=1)  # (n, 2, 1, side, side) uint8
    return {"series": series, "text": text, "pair": pair}, y


@DATASETS.register("toy_kinds")
def build_toy_kinds(n_train: int = 384, n_eval: int = 192, classes: int = 4, steps: int = 8,
                    features: int = 3, tokens: int = 10, vocab: int = 16, side: int = 8,
                    noise: float = 2.0, text_noise: float = 0.05, data_seed: int = 0,
                    source: str = "auto") -> Task:
    """Build the task (see the module docstring); a ``noisier`` shift set (series noise × 2)."""
    if source not in ("auto", "synthetic"):
        raise ValueError(f"toy_kinds: option 'source' must be 'auto' or 'synthetic' (the data are "
                         f"generated, there are no files); got {source!r}")
    check_count("toy_kinds", "n_train", n_train)
    check_count("toy_kinds", "n_eval", n_eval)
    if classes > 4:
        raise ValueError(f"toy_kinds: option 'classes' must be <= 4 (the pair shows the code as one "
                         f"of 4 quadrants); got {classes}")
    if not 1 <= features <= len(FEATURE_MEAN):
        raise ValueError(f"toy_kinds: option 'features' must be in [1, {len(FEATURE_MEAN)}]; got "
                         f"{features}")
    if vocab < classes + 2 or tokens < 3 or side < 2 or side % 2:
        raise ValueError(f"toy_kinds: need vocab >= classes + 2, tokens >= 3 and an even side >= 2; "
                         f"got vocab={vocab}, tokens={tokens}, side={side}")
    o = dict(n_train=n_train, n_eval=n_eval, classes=classes, steps=steps, features=features,
             tokens=tokens, vocab=vocab, side=side, noise=noise, text_noise=text_noise,
             data_seed=data_seed)
    gen = torch.Generator().manual_seed(data_seed)
    splits = {}
    for name, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        inputs, y = _make(n, o, noise, gen)
        splits[name] = Split(inputs, y, name)
    inputs, y = _make(n_eval, o, 2 * noise, gen)
    spec = task_spec(classes, steps, features, tokens, vocab, side)
    return Task(spec, splits, {"noisier": Split(inputs, y, "noisier")}, options=o)
