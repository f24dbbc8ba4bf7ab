"""Test-time perturbations of one modality, at a level in [0, 1] (the ``perturb`` protocols).

A perturbation is a function ``fn(x, level, gen, modality) -> Tensor`` registered with the
:func:`perturbation` decorator, which stores a :class:`Perturbation` record (its name, the
function and the modality kinds it applies to) in ``PERTURBATIONS``: ``x`` is a batch of float
model inputs (B, *shape) of ``modality`` (a :class:`ModalitySpec`), ``gen`` a
``torch.Generator`` on ``x``'s device that is its only source of randomness, and it returns a new
tensor (never modifying ``x``). Always call it through :func:`apply_perturbation`, which enforces
the shared rules:

* level 0 is the identity (``x`` itself is returned);
* by default a perturbation applies to every kind whose inputs are values (:data:`VALUE_KINDS`),
  not to ``tokens`` (integer ids), which a suite's protocols then refuse before anything runs;
* the level must lie in [0, 1], and the modality's kind must be one the perturbation supports;
* with ``fraction < 1`` only that share of the samples (drawn from ``gen``) is perturbed — the
  others are returned bit for bit, never zeroed (MultiBench's audio-noise function zeroes the
  samples it does not perturb; this suite does not);
* the same generator state gives the same output.

Dropout-like kinds zero what they select and leave every other entry untouched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from i2m2bench.registry import Registry, origin_of
from i2m2bench.types import MODALITY_KINDS, ModalitySpec

PerturbFn = Callable[[torch.Tensor, float, torch.Generator, ModalitySpec], torch.Tensor]

ALL_KINDS = MODALITY_KINDS  # every modality kind (i2m2bench.types.MODALITY_KINDS)
#: The kinds whose inputs are values (floats): every kind but ``tokens``, whose integer ids noise,
#: zeroing or blurring would turn into other words or invalid ids. The default of
#: :func:`perturbation`, so a perturbation applies to token ids only when it says so.
VALUE_KINDS = tuple(k for k in MODALITY_KINDS if k != "tokens")
SPATIAL = ("image", "spectrogram")


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation: its ``name``, the function ``fn`` and the modality ``kinds`` it
    applies to (:func:`check_applicable` refuses any other kind)."""

    name: str
    fn: PerturbFn
    kinds: tuple[str, ...] = VALUE_KINDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = [k for k in self.kinds if k not in ALL_KINDS]
        if unknown:
            raise ValueError(f"perturbation {self.name!r}: unknown modality kinds {unknown}; "
                             f"the kinds are {', '.join(ALL_KINDS)}")


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")


class PerturbationError(ValueError):
    """A perturbation asked for something it cannot do (level, modality kind)."""


def perturbation(name: str, kinds: tuple[str, ...] = VALUE_KINDS):
    """Register ``fn`` under ``name`` for modalities of the given ``kinds``.

    The registry holds a :class:`Perturbation` record; ``fn`` itself is returned unchanged, and
    ``list perturbations`` names ``fn`` (its module and name) as the origin."""
    def decorator(fn: PerturbFn) -> PerturbFn:
        PERTURBATIONS.add(name, Perturbation(name, fn, tuple(kinds)), origin=origin_of(fn))
        return fn
    return decorator


def check_applicable(name: str, modality: ModalitySpec) -> Perturbation:
    """The perturbation ``name``, after checking that it applies to ``modality``'s kind."""
    p = PERTURBATIONS.get(name)
    if not isinstance(p, Perturbation):
        raise PerturbationError(f"perturbation {name!r} ({PERTURBATIONS.origin(name)}) is "
                                f"registered as a bare {type(p).__name__}; register perturbations "
                                "with @i2m2bench.perturbation(name, kinds=...)")
    if modality.kind not in p.kinds:
        hint = (" (token ids are not values: noise or zeroing would turn them into other or "
                "invalid ids)" if modality.kind == "tokens" else "")
        raise PerturbationError(f"perturbation {name!r} applies to {', '.join(p.kinds)} "
                                f"modalities; {modality.name!r} is a {modality.kind} "
                                f"{modality.shape}{hint}")
    return p


def apply_perturbation(name: str, x: torch.Tensor, level: float, gen: torch.Generator,
                       modality: ModalitySpec, fraction: float = 1.0) -> torch.Tensor:
    """Perturb the batch ``x`` (B, *shape) of ``modality`` at ``level`` (see module docstring)."""
    p = check_applicable(name, modality)
    level = float(level)
    if not 0.0 <= level <= 1.0:
        raise PerturbationError(f"perturbation {name!r}: level must be in [0, 1]; got {level}")
    if not 0.0 <= fraction <= 1.0:
        raise PerturbationError(f"perturbation {name!r}: fraction must be in [0, 1]; got {fraction}")
    if level == 0.0 or fraction == 0.0:
        return x
    out = p.fn(x, level, gen, modality)
    if tuple(out.shape) != tuple(x.shape):
        raise PerturbationError(f"perturbation {name!r} returned shape {tuple(out.shape)} for "
                                f"input {tuple(x.shape)}")
    if fraction < 1.0:
        chosen = torch.rand(x.shape[0], generator=gen, device=x.device) < fraction
        out = torch.where(chosen.view(-1, *([1] * (x.dim() - 1))), out, x)
    return out


def _uniform(shape, gen, x):
    return torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- noise
GAUSSIAN_SIGMA = 1.0  # noise std at level 1, in model-input units (AV-MNIST inputs lie in [0, 1])


@perturbation("gaussian")
def gaussian(x, level, gen, modality):
    """Additive Gaussian noise, std = level × 1.0 in model-input units."""
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x + (level * GAUSSIAN_SIGMA) * noise


SNR_DB_AT_0, SNR_DB_AT_1 = 20.0, -20.0  # the SNR scale: level ↦ 20 dB − 40 dB × level


def snr_db(level: float) -> float:
    """The target signal-to-noise ratio (dB) of level > 0: 20 dB just above 0, −20 dB at 1."""
    return SNR_DB_AT_0 + (SNR_DB_AT_1 - SNR_DB_AT_0) * level


@perturbation("snr")
def snr(x, level, gen, modality):
    """White Gaussian noise at a target SNR per sample: noise power = mean(x²) / 10^(SNR/10).

    The SNR is that of the model input as given (for AV-MNIST's audio: the pixels of the scaled
    log-mel image), not an acoustic SNR of the waveform."""
    power = x.flatten(1).pow(2).mean(1).clamp_min(1e-12)  # (B,)
    std = (power / 10 ** (snr_db(level) / 10)).sqrt().view(-1, *([1] * (x.dim() - 1)))
    return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- dropout
@perturbation("dropout")
def dropout(x, level, gen, modality):
    """Each entry zeroed independently with probability ``level`` (no rescaling)."""
    return torch.where(_uniform(x.shape, gen, x) < level, torch.zeros_like(x), x)


def _time_axis(modality: ModalitySpec) -> int:
    """Sample axis (batch excluded) that holds time: the last for spectrograms/images (columns),
    the first for sequences (T, d) and time series (T, F)."""
    return 0 if modality.kind in ("sequence", "timeseries") else len(modality.shape) - 1


@perturbation("frames", kinds=("spectrogram", "image", "sequence", "timeseries"))
def frames(x, level, gen, modality):
    """Whole time frames (spectrogram/image columns, sequence and time-series steps) zeroed with
    probability ``level``."""
    axis = 1 + _time_axis(modality)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return torch.where(_uniform(shape, gen, x) < level, torch.zeros_like(x), x)


PATCH = 4  # side of the square patches (pixels) dropped by ``patches``


@perturbation("patches", kinds=SPATIAL)
def patches(x, level, gen, modality):
    """Square 4×4-pixel patches on a grid, each zeroed with probability ``level`` (all channels)."""
    h, w = x.shape[-2:]
    gh, gw = math.ceil(h / PATCH), math.ceil(w / PATCH)
    drop = _uniform((x.shape[0], 1, gh, gw), gen, x) < level
    drop = drop.repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)[..., :h, :w]
    return torch.where(drop, torch.zeros_like(x), x)


# --------------------------------------------------------------------------- image corruptions
BLUR_MAX_SIGMA = 2.0  # Gaussian-blur sigma (pixels) at level 1


@perturbation("blur", kinds=SPATIAL)
def blur(x, level, gen, modality):
    """Gaussian blur with sigma = level × 2 px (zero padding at the border); deterministic."""
    sigma = level * BLUR_MAX_SIGMA
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-t.pow(2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    y = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


@perturbation("contrast", kinds=SPATIAL)
def contrast(x, level, gen, modality):
    """Contrast reduced towards each sample's per-channel mean: m + (1 − level)(x − m)."""
    m = x.mean(dim=(-2, -1), keepdim=True)
    return m + (1.0 - level) * (x - m)


@perturbation("occlusion", kinds=SPATIAL)
def occlusion(x, level, gen, modality):
    """One zeroed square covering ``level`` of the image area, at a random position per sample."""
    h, w = x.shape[-2:]
    side_h = min(h, round(math.sqrt(level) * h))
    side_w = min(w, round(math.sqrt(level) * w))
    b = x.shape[0]
    top = (_uniform((b,), gen, x) * (h - side_h + 1)).long().clamp_max(h - side_h)
    left = (_uniform((b,), gen, x) * (w - side_w + 1)).long().clamp_max(w - side_w)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + side_h).view(b, 1, 1))
              & (cols >= left.view(b, 1, 1)) & (cols < (left + side_w).view(b, 1, 1)))
    return torch.where(inside.unsqueeze(1), torch.zeros_like(x), x)
