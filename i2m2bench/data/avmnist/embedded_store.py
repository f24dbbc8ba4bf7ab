"""Reader for the embedded AV-Digits store (``embedded/avdigits_v1.npz``).

AV-Digits is a small, offline stand-in for AV-MNIST: a handwritten digit image
paired, within class, with a spoken digit word.  The npz is produced by
``scripts/make_avdigits.py`` (see its docstring for the design).  It holds no
images, only indices into ``sklearn.datasets.load_digits()``; the audio is
eSpeak NG speech at 8 kHz stored as 8-bit mu-law in one concatenated array.

Keys (U utterances):

* ``wave_mulaw`` uint8 (total,), ``wave_offsets`` int64 (U+1,),
  ``sample_rate`` int64 scalar (8000);
* ``utt_digit`` int8, ``utt_dialect`` int8 (index into ``dialects``),
  ``utt_variant`` int16 (index into ``variants``), ``utt_rate`` /
  ``utt_pitch`` / ``utt_range`` int16, ``utt_group`` int8 (0 = training
  voices, 1 = unseen test voices, 2 = held-out shift dialects);
* per split ``s`` in :data:`SPLITS`: ``{s}_image`` int16 (index into
  ``load_digits()``), ``{s}_utt`` int16 (index into the utterances),
  ``{s}_label`` int8 (the digit);
* ``dialects``, ``variants``, ``digit_words`` (unicode arrays), ``seed``,
  ``generator_version``, ``espeak_version``.

This module needs numpy only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from i2m2bench.data.base import file_sha256

STORE_PATH: Path = Path(__file__).parents[1] / "embedded" / "avdigits_v1.npz"
SHA256_PATH: Path = STORE_PATH.with_suffix(".sha256")
SPLITS: tuple[str, ...] = ("train", "val", "test", "shift_dialects")
MU: int = 255

REQUIRED_KEYS: tuple[str, ...] = (
    "wave_mulaw",
    "wave_offsets",
    "sample_rate",
    "utt_digit",
    "utt_dialect",
    "utt_variant",
    "utt_rate",
    "utt_pitch",
    "utt_range",
    "utt_group",
    "dialects",
    "variants",
    "seed",
    "generator_version",
) + tuple(f"{s}_{k}" for s in SPLITS for k in ("image", "utt"))


def expected_sha256(sha_path: str | os.PathLike = SHA256_PATH) -> str:
    """The hex sha256 recorded for the shipped store."""
    text = Path(sha_path).read_text().split()
    if not text:
        raise ValueError(f"{sha_path} is empty")
    return text[0].lower()


def read_store(path: str | os.PathLike = STORE_PATH, verify: bool = True) -> dict[str, np.ndarray]:
    """Load the store into a dict of arrays.

    With ``verify`` the file's sha256 must equal :func:`expected_sha256`;
    otherwise (or when a required key is missing) a ``ValueError`` is raised.
    """
    path = Path(path)
    if verify:
        expected = expected_sha256()
        found = file_sha256(path)
        if found != expected:
            raise ValueError(
                f"AV-Digits store {path} failed its integrity check: expected sha256 {expected}, found {found}"
            )
    with np.load(path, allow_pickle=False) as z:
        store = {k: z[k] for k in z.files}
    for key in REQUIRED_KEYS:
        if key not in store:
            raise ValueError(f"AV-Digits store {path} lacks the required key {key!r}")
    return store


def mulaw_decode(q: np.ndarray, mu: int = MU) -> np.ndarray:
    """uint8 mu-law codes -> float32 in [-1, 1] (torchaudio convention)."""
    y = q.astype(np.float64) / mu * 2.0 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def decode_waveforms(store: dict[str, np.ndarray]) -> list[np.ndarray]:
    """All utterances as float32 arrays in [-1, 1], at ``store['sample_rate']``."""
    x = mulaw_decode(store["wave_mulaw"])
    offs = store["wave_offsets"]
    return [x[int(offs[i]) : int(offs[i + 1])] for i in range(len(offs) - 1)]


def pad_waveforms(waves: list[np.ndarray], length: int) -> np.ndarray:
    """Left-align into a zero-padded float32 array of shape (len(waves), length); longer waves are trimmed."""
    out = np.zeros((len(waves), int(length)), dtype=np.float32)
    for i, w in enumerate(waves):
        n = min(len(w), int(length))
        out[i, :n] = w[:n]
    return out
