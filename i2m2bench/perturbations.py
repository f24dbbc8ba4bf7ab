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

**Corruptions of a complex image** (kind :data:`COMPLEX`; FastMRI). Some tasks read two
modalities from one complex MR image (``TaskSpec.complex_image``: magnitude and phase, or real
and imaginary part). A corruption registered for :data:`COMPLEX` receives that image, ``z``
(B, 1, H, W) complex64, and returns the corrupted one, so both modalities see one consistent
corruption; the protocol ``perturb:complex:<kind>`` splits it again
(:mod:`i2m2bench.harness.protocols`). They follow the official FastMRI data module's test-time
corruptions (divyam3897/mri-robustness @ d12968b, ``src/data/knee_data.py`` L95-130: complex
Gaussian noise scaled to the image maximum; Rician, motion, ghosting, spike and bias field through
TorchIO 0.20, read at commit 9051dbc, ``src/torchio/transforms/augmentation/intensity/``), with
these differences, each stated in the FastMRI fidelity table:

* the official code applies Rician noise and the TorchIO artefacts to the magnitude
  reconstruction (``recon_rss``), a different input from the k-space its magnitude/phase
  models read; here each acts on the complex image, so the phase sees it too;
* TorchIO returns the real part of its inverse FFT; here the complex result is kept;
* TorchIO's motion segments k-space along the third axis, which has size 1 for a 2-D slice (so
  its 2-D "motion" is one rigid move); here the segments run along the phase-encoding axis
  (columns);
* the level scale: ``level`` in (0, 1] maps to each corruption's strength as its function says
  (the official ``--noise_percent`` is an integer per run).
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
#: The kind of the corruptions of a task's complex image (``TaskSpec.complex_image``), which no
#: modality has: see the module docstring.
COMPLEX = "complex_image"
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
        unknown = [k for k in self.kinds if k not in (*ALL_KINDS, COMPLEX)]
        if unknown:
            raise ValueError(f"perturbation {self.name!r}: unknown modality kinds {unknown}; "
                             f"the kinds are {', '.join((*ALL_KINDS, COMPLEX))}")


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


# --------------------------------------------------------------------------- complex image
def apply_complex_corruption(name: str, z: torch.Tensor, level: float,
                             gen: torch.Generator) -> torch.Tensor:
    """Corrupt the complex images ``z`` (B, 1, H, W) with the :data:`COMPLEX` corruption
    ``name`` at ``level`` in [0, 1] (0: ``z`` itself); the same generator state gives the same
    output."""
    p = PERTURBATIONS.get(name)
    if not isinstance(p, Perturbation) or COMPLEX not in p.kinds:
        raise PerturbationError(f"perturbation {name!r} is no corruption of a complex image; "
                                f"those are {', '.join(complex_corruptions())}")
    level = float(level)
    if not 0.0 <= level <= 1.0:
        raise PerturbationError(f"perturbation {name!r}: level must be in [0, 1]; got {level}")
    if level == 0.0:
        return z
    out = p.fn(z, level, gen, None)
    if tuple(out.shape) != tuple(z.shape) or not out.is_complex():
        raise PerturbationError(f"corruption {name!r} returned {tuple(out.shape)} {out.dtype} "
                                f"for complex input {tuple(z.shape)}")
    return out


def complex_corruptions() -> list[str]:
    """The registered corruptions of a complex image."""
    return [n for n in PERTURBATIONS.names()
            if isinstance(PERTURBATIONS.get(n), Perturbation) and COMPLEX in PERTURBATIONS.get(n).kinds]


def fft2c(z: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT of the last two axes (``fastmri.fft2c``)."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"),
                              dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT of the last two axes (``fastmri.ifft2c``)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"),
                              dim=(-2, -1))


def _per_sample_max(x: torch.Tensor) -> torch.Tensor:
    return x.abs().flatten(1).amax(1).view(-1, *([1] * (x.dim() - 1)))


def _normal(z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(z.shape, generator=gen, device=z.device, dtype=z.real.dtype)


#: Noise std at level 1 as a share of each image's maximum magnitude: 10%, i.e. level 0.1 is
#: the official ``--noise_percent 1`` (std = max|image| x percent / 100, knee_data.py L98-103).
NOISE_SHARE_AT_1 = 0.10


@perturbation("complex_noise", kinds=(COMPLEX,))
def complex_noise(z, level, gen, modality):
    """Complex Gaussian noise on the image: std (per part) = level x 10% of its max magnitude
    (the official noise, knee_data.py L94-105)."""
    std = level * NOISE_SHARE_AT_1 * _per_sample_max(z)
    return z + torch.complex(std * _normal(z, gen), std * _normal(z, gen))


@perturbation("rician", kinds=(COMPLEX,))
def rician(z, level, gen, modality):
    """Rician magnitude: |z| -> sqrt((|z| + s n1)^2 + (s n2)^2), s = level x 10% of the max
    magnitude (the official ``rice``, knee_data.py L108-113), the phase kept."""
    mag = z.abs()
    s = level * NOISE_SHARE_AT_1 * _per_sample_max(mag)
    new = torch.sqrt((mag + s * _normal(mag, gen)).square() + (s * _normal(mag, gen)).square())
    return torch.polar(new, z.angle())


#: TorchIO ``RandomGhosting`` (random_ghosting.py L233-253), with the official ``num_ghosts=7``
#: (knee_data.py L120): every 7th k-space column scaled by (1 - intensity), the centre column
#: restored; intensity = level.
GHOSTS = 7


@perturbation("ghosting", kinds=(COMPLEX,))
def ghosting(z, level, gen, modality):
    """Ghosts along the phase-encoding axis: k-space columns 0, 7, 14, ... x (1 - level), the
    centre column kept (TorchIO ``RandomGhosting``)."""
    k = fft2c(z)
    mid = k.shape[-1] // 2
    centre = k[..., mid].clone()
    k[..., ::GHOSTS] *= 1.0 - level
    k[..., mid] = centre
    return ifft2c(k)


#: Spike intensity at level 1, as a multiple of the k-space maximum (TorchIO's default intensity
#: range is 1 to 3, random_spike.py L45-46).
SPIKE_AT_1 = 1.0


@perturbation("spike", kinds=(COMPLEX,))
def spike(z, level, gen, modality):
    """One k-space spike at a uniform random position, of value +/- level x max|k| (TorchIO
    ``RandomSpike``, random_spike.py L148-169, which draws its intensity from U(-d, d): here the
    size is the level and only the sign is drawn, so that a level is one strength)."""
    k = fft2c(z)
    b, h, w = k.shape[0], k.shape[-2], k.shape[-1]
    pos = torch.rand((b, 2), generator=gen, device=z.device)
    sign = torch.where(torch.rand(b, generator=gen, device=z.device) < 0.5, -1.0, 1.0)
    rows = (pos[:, 0] * h).long().clamp_max(h - 1)
    cols = (pos[:, 1] * w).long().clamp_max(w - 1)
    value = (sign * level * SPIKE_AT_1).to(k.real.dtype) * k.abs().flatten(1).amax(1)
    k = k.clone()
    k[torch.arange(b, device=z.device), 0, rows, cols] += value.to(k.dtype)
    return ifft2c(k)


#: Bias-field coefficients drawn from U(-c, c), c = level x 0.5 (TorchIO's default 0.5), order 3
#: (random_bias_field.py L39-40, L136-163).
BIAS_AT_1, BIAS_ORDER = 0.5, 3


@perturbation("bias_field", kinds=(COMPLEX,))
def bias_field(z, level, gen, modality):
    """A smooth multiplicative field exp(sum c_ab x^a y^b), a + b <= 3, x and y in [-1, 1],
    coefficients U(-c, c) with c = level x 0.5 (TorchIO ``RandomBiasField``): the magnitude is
    scaled, the phase unchanged."""
    b, h, w = z.shape[0], z.shape[-2], z.shape[-1]

    def axis(n):
        t = torch.arange(n, device=z.device, dtype=z.real.dtype) - n / 2 + 0.5
        return t / t.max() if n > 1 and t.max() > 0 else torch.zeros_like(t)

    y, x = torch.meshgrid(axis(h), axis(w), indexing="ij")
    powers = [(i, j) for i in range(BIAS_ORDER + 1) for j in range(BIAS_ORDER + 1 - i)]
    c = (torch.rand((b, len(powers)), generator=gen, device=z.device, dtype=z.real.dtype) * 2 - 1)
    c = c * (level * BIAS_AT_1)
    basis = torch.stack([y ** i * x ** j for i, j in powers])  # (P, H, W)
    field = torch.exp(torch.einsum("bp,phw->bhw", c, basis)).unsqueeze(1)
    return z * field


#: Motion at level 1: rotations up to 10 degrees and shifts up to 10% of the side, two moves
#: (TorchIO ``RandomMotion`` defaults: 10 degrees, 10 mm, ``num_transforms=2``, random_motion.py
#: L52-55); the official scales degrees and mm with its percent (knee_data.py L116).
MOTION_DEGREES_AT_1, MOTION_SHIFT_AT_1, MOTION_MOVES = 10.0, 0.10, 2


@perturbation("motion", kinds=(COMPLEX,))
def motion(z, level, gen, modality):
    """Motion during the acquisition: the image moved rigidly (rotation U(+/-10 deg x level),
    shift U(+/-10% x level) of the side, bilinear) twice; k-space is put together from column
    segments of the unmoved and moved images' spectra, split at times 1/3 and 2/3 (jittered by
    +/- 0.3 of a step), the centre segment from the unmoved image (TorchIO ``RandomMotion``'s
    sort, random_motion.py L115-120, L265-296; segments along columns, not TorchIO's third axis)."""
    b, h, w = z.shape[0], z.shape[-2], z.shape[-1]
    n = MOTION_MOVES

    def r(*shape):  # uniform in [-1, 1)
        return torch.rand(shape, generator=gen, device=z.device, dtype=z.real.dtype) * 2 - 1

    angles = r(b, n) * math.radians(MOTION_DEGREES_AT_1) * level
    shifts = r(b, n, 2) * (2 * MOTION_SHIFT_AT_1) * level  # affine_grid units: the side is 2
    step = 1.0 / (n + 1)
    times = (torch.arange(1, n + 1, device=z.device, dtype=z.real.dtype) * step
             + r(b, n) * 0.3 * step)  # (b, n)
    parts = torch.view_as_real(z.squeeze(1)).permute(0, 3, 1, 2)  # (b, 2, h, w): real, imag
    spectra = [fft2c(z)]
    for i in range(n):
        cos, sin = torch.cos(angles[:, i]), torch.sin(angles[:, i])
        theta = torch.stack([torch.stack([cos, -sin, shifts[:, i, 0]], 1),
                             torch.stack([sin, cos, shifts[:, i, 1]], 1)], 1)
        grid = F.affine_grid(theta, [b, 2, h, w], align_corners=False)
        moved = F.grid_sample(parts, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        spectra.append(fft2c(torch.complex(moved[:, 0], moved[:, 1]).unsqueeze(1)))
    spectra = torch.stack(spectra, 1)  # (b, n + 1, 1, h, w)
    # the segment that holds the centre (time 0.5) comes from the unmoved image
    centre = torch.searchsorted(times.contiguous(), torch.full((b, 1), 0.5, device=z.device,
                                                               dtype=times.dtype)).squeeze(1)
    edges = (times * w).long()  # (b, n): the first column of segments 1..n
    cols = torch.arange(w, device=z.device)
    segment = (cols.view(1, 1, w) >= edges.unsqueeze(2)).sum(1)  # (b, w): 0..n
    source = torch.where(segment == centre.view(b, 1), 0,
                         torch.where(segment == 0, centre.view(b, 1), segment))
    k = torch.gather(spectra, 1, source.view(b, 1, 1, 1, w).expand(b, 1, 1, h, w)).squeeze(1)
    return ifft2c(k)
