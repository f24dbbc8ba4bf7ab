"""A synthetic sagittal knee k-space phantom: the embedded stand-in for fastMRI knee.

**Synthetic, not anatomy.** The images are a handful of smooth geometric shapes arranged like a
sagittal knee slice so that the pictures are recognisable; no tissue model, coil, sequence or
patient data lies behind them. The phantom exists so that the fastMRI knee task (single-coil
k-space; the reconstructed image's *magnitude* and *phase* are the two modalities; four
slice-level binary labels, :data:`~i2m2bench.data.fastmri.processing.LABELS`) runs offline, with
lesions whose evidence lies, by construction, in a known modality.

Pipeline (one patient = ``slices`` contiguous slices; float64 until the last step)
-----------------------------------------------------------------------------------
1. **Anatomy** (real magnitude) on a grid of ``2 * size`` rows by ``W`` columns, ``W`` drawn per
   patient from ``[round(1.15 * size), round(1.25 * size)]`` (fastMRI: 640 rows, widths ~368..400,
   padded to 400 and cropped to 320 x 320; here scaled down). Widths whose zero padding would put
   the k-space centre one column off the padded grid's centre are skipped (with an even padded
   width: the odd widths): :func:`~i2m2bench.data.fastmri.processing.pad_columns` then multiplies
   the image by a 2-pi linear phase ramp, which real knee volumes (even widths) do not show. The
   anatomy is drawn in the coordinates of the final ``size x size`` crop: the crop keeps the
   centre ``size`` of the ``2 * size`` rows, and padding k-space from ``W`` to
   ``round(1.25 * size)`` columns stretches the image horizontally by that ratio, so columns are
   drawn pre-shrunk. Shapes, from back to front (intensities are per-patient jittered means):

   ============================  =========  ==========================================
   soft tissue (leg envelope)    0.35       ellipse filling most of the crop
   joint fluid (suprapatellar)   0.95       small ellipse, anterior-superior
   patella                       0.75/0.08  marrow / cortical rim
   femur (condyle + shaft)       0.80/0.08  upper ellipse + shaft, bright marrow, dark rim
   tibia (plateau + shaft)       0.80/0.08  lower ellipse + shaft
   cartilage                     0.65       bands on the femur's lower and tibia's upper surface
   menisci                       0.07       two dark wedges (anterior/posterior horn) at the joint
   ACL                           0.15       dark band running diagonally through the notch
   ============================  =========  ==========================================

   Per patient: position offset, scale, a rotation of up to 5 degrees, tissue intensities and an
   overall gain vary; per slice, bone widths, meniscus size and the ACL's position vary smoothly
   with the slice index (neighbouring slices look alike). All edges are smooth (about a pixel).
2. **Phase**: a smooth background phase per slice (a patient polynomial of degree 2 in the crop
   coordinates plus a small per-slice change; typically well under 1.5 rad over the object, at
   most about 1.8 rad in the crop's corners); complex image = magnitude * exp(i phase).
3. **Pathologies** (slice labels; patients differ in propensity: each patient's rate of
   ``abnormal``, ``meniscus_tear`` and ``cartilage`` is the target rate times a log-normal
   multiplier of mean 1, capped at 0.9, so splitting by patient matters):

   * ``meniscus_tear`` (target rate 0.3) -- **magnitude only**: a bright cleft (0.6..0.9, about
     1.5 pixels wide at size 32) of random length, angle and position through one meniscus
     wedge. Phase untouched.
   * ``cartilage`` (0.25) -- **magnitude only**: over a segment of random position and length, one
     cartilage band (femoral or tibial) is thinned by 80..100% (the lost cartilage becomes joint
     soft tissue). Phase untouched.
   * ``abnormal`` (0.3) -- **phase only**: a susceptibility-like dipole phase,
     ``A (2 dy^2 - dx^2) / a^2 / (1 + r^2 / a^2)^(5/2)`` (scaled so that the lobe along the
     vertical B0 axis peaks at ``A``, 0.6..1.6 rad with a random sign; radius ``a`` 2.2..3.5
     pixels at size 32), centred in a random bright tissue point (bone marrow or soft tissue). Magnitude
     untouched.
   * ``acl`` -- **only in the combination**: two independent fair coins per slice, ``acl_mag``
     (the ACL band's magnitude raised by 0.4..0.7 towards fluid signal, from its dark 0.15) and
     ``acl_phase`` (a phase offset of 0.8..1.6 rad, random sign, on a slightly widened, smoothed
     ACL band); ``acl = acl_mag XOR acl_phase``. Either modality alone carries no information
     about ``acl``; the two together determine it.

   Lesion size, contrast and position vary, so the tasks are learnable but not trivially
   separable by a network that sees one slice (a linear probe on the slice minus its patient's
   median slice, which no model here sees, separates the tears and the ACL coins almost
   perfectly; on the committed board, ``leaderboards/fastmri-embedded-fastmri.md``, the
   width-8 magnitude expert reaches 98.28 test AUROC on tears and 71.86 on cartilage). The
   lesion sizes were raised once, after the first version's lesions (1-2 pixels, faint) left
   every network at chance on held-out patients. :attr:`PhantomData.evidence` holds what was
   drawn (``acl_mag`` and
   ``acl_phase`` included). A physics leak remains: the phase of a pixel is noisier where its
   magnitude is low (about 0.35 rad in a meniscus at the default noise, 0.07 rad in soft tissue),
   so a model that reads the phase noise *level* could in principle see a dark structure brighten
   (a torn meniscus, a raised ACL). The linear probes of ``tests/test_knee_phantom.py`` find
   nothing of it (held-out AUROC about 0.5 from phase for tears, cartilage and ``acl_mag``).
4. **k-space**: :func:`~i2m2bench.data.fastmri.processing.fft2c` of the complex image plus
   complex Gaussian noise, standard deviation ``noise * ref`` on each of the real and imaginary
   parts, ``ref`` being the slice's mean tissue magnitude (the mean of the pixels above 0.2 in the
   rows the crop keeps, about 0.5, so the default ``noise=0.05`` gives about 0.025; with the
   orthonormal FFT the image noise has the same standard deviation).
5. **Images**: fully sampled ``magnitude_phase(k, width=round(1.25 * size), crop=(size, size))``;
   undersampled: the same k-space with the columns that
   ``column_mask(W, "random", acceleration=4, center_fraction=0.08)`` drops set to zero, then the
   same call (one mask per slice).
6. **Quantisation** to int16 (:data:`MAG_SCALE`, :data:`PHASE_SCALE`), which also makes the bytes
   reproducible across machines (last-bit FFT differences do not survive the rounding).

Everything is deterministic given the arguments: patient ``p`` draws from the ``p``-th child of
``np.random.SeedSequence(seed)``, so a run with fewer patients is a prefix of one with more.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

import numpy as np

import torch

from i2m2bench.data.fastmri.processing import (LABELS, SHIFT, column_mask, fft2c, magnitude_phase,
                                               task_spec)
from i2m2bench.types import Split, Task

#: Model magnitude = stored int16 * MAG_SCALE (stored values clipped to [0, 32767]): magnitudes
#: are O(1) (the brightest tissue, fluid, is at most about 1.3), so up to 4.0 fits, with a step
#: of 1.2e-4, far below the noise.
MAG_SCALE = 2.0 ** -13
#: Model phase (radians in [-pi, pi]) = stored int16 * PHASE_SCALE.
PHASE_SCALE = math.pi / 32767

#: Target slice rates of the three single-modality labels (``acl`` is a XOR of two fair coins).
RATES = {"abnormal": 0.3, "meniscus_tear": 0.3, "cartilage": 0.25}
#: Standard deviation of the log of a patient's rate multiplier (log-normal, mean 1).
PROPENSITY_SIGMA = 0.6
#: The ``evidence`` keys of :class:`PhantomData`.
EVIDENCE = ("meniscus_tear", "cartilage", "abnormal", "acl_mag", "acl_phase")

# Mean tissue intensities (each is jittered per patient by x U(0.9, 1.1), all by a gain).
_SOFT, _FLUID, _MARROW, _PATELLA, _CORTEX = 0.35, 0.95, 0.80, 0.75, 0.08
_CARTILAGE, _MENISCUS, _ACL = 0.65, 0.07, 0.15
_DIPOLE_PEAK = 2.0 * (2.0 / 3.0) * (5.0 / 3.0) ** -2.5  # max of 2 rho^2 (1 + rho^2)^(-5/2)


@dataclass(frozen=True)
class PhantomData:
    """The phantom's slices (``N = patients * slices``); images are ``(N, 1, size, size)`` int16
    (multiply by :data:`MAG_SCALE` / :data:`PHASE_SCALE` for the model values)."""

    magnitude: np.ndarray  #: fully sampled magnitude, int16 in [0, 32767]
    phase: np.ndarray  #: fully sampled phase, int16 in [-32767, 32767]
    magnitude_us: np.ndarray  #: the same slices from 4x randomly undersampled k-space
    phase_us: np.ndarray
    labels: np.ndarray  #: (N, 4) uint8 in LABELS order
    patient: np.ndarray  #: (N,) int64 patient id; a patient's slices are contiguous
    evidence: dict[str, np.ndarray]  #: name -> (N,) bool: what was drawn (see EVIDENCE)


def padded_width(size: int) -> int:
    """The k-space width after padding (fastMRI's 400 scaled down): ``round(1.25 * size)``."""
    return int(round(1.25 * size))


def kspace_widths(size: int) -> list[int]:
    """The acquired widths a patient can have: those in ``[round(1.15 size), round(1.25 size)]``
    whose symmetric zero padding keeps the k-space centre on the padded grid's centre."""
    wp = padded_width(size)
    out = [w for w in range(int(round(1.15 * size)), wp + 1)
           if (wp - w) // 2 + w // 2 == wp // 2]
    return out


def quantise_magnitude(mag: np.ndarray) -> np.ndarray:
    """Magnitude -> int16: ``round(mag / MAG_SCALE)`` clipped to [0, 32767]."""
    return np.clip(np.rint(np.asarray(mag, np.float64) / MAG_SCALE), 0, 32767).astype(np.int16)


def quantise_phase(phase: np.ndarray) -> np.ndarray:
    """Phase (radians) -> int16: ``round(phase / PHASE_SCALE)`` clipped to [-32767, 32767]."""
    return np.clip(np.rint(np.asarray(phase, np.float64) / PHASE_SCALE),
                   -32767, 32767).astype(np.int16)


# ------------------------------------------------------------------------------- shape helpers


def _inside(d: np.ndarray, edge: float) -> np.ndarray:
    """A soft indicator of ``d < 0`` (``d`` an approximate signed distance), ``edge`` wide."""
    return 0.5 * (1.0 - np.tanh(d / edge))


def _ellipse_distance(u, v, cu, cv, a, b):
    """First-order signed distance to the ellipse centred (cu, cv) with semi-axes (a, b)."""
    du, dv = (u - cu) / a, (v - cv) / b
    q = np.sqrt(du * du + dv * dv)
    grad = np.sqrt((du / a) ** 2 + (dv / b) ** 2) / np.maximum(q, 1e-9)
    return (q - 1.0) / np.maximum(grad, 1e-9)


def _segment_distance(u, v, u1, v1, u2, v2):
    """Distance to the segment (u1, v1)-(u2, v2), and the position along it in [0, 1]."""
    du, dv = u2 - u1, v2 - v1
    s = np.clip(((u - u1) * du + (v - v1) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - u1 - s * du, v - v1 - s * dv), s


def _triangle_distance(u, v, verts):
    """Approximate signed distance to a triangle (max of its three edges' half-plane distances);
    ``verts`` is a list of three (u, v) pairs (arrays broadcastable against ``u``)."""
    (u1, v1), (u2, v2), (u3, v3) = verts
    area = (u2 - u1) * (v3 - v1) - (v2 - v1) * (u3 - u1)
    orient = np.sign(area)
    d = None
    for (ua, va), (ub, vb) in (((u1, v1), (u2, v2)), ((u2, v2), (u3, v3)), ((u3, v3), (u1, v1))):
        eu, ev = ub - ua, vb - va
        # outward normal for a counter-clockwise (orient > 0) triangle is (ev, -eu)
        dist = orient * ((u - ua) * ev - (v - va) * eu) / np.hypot(eu, ev)
        d = dist if d is None else np.maximum(d, dist)
    return d


def _paint(img: np.ndarray, mask: np.ndarray, value) -> np.ndarray:
    """Painter's algorithm: ``img`` where ``mask`` is 0, ``value`` where it is 1."""
    return img + mask * (value - img)


# ---------------------------------------------------------------------------------- one patient


def _col(x: np.ndarray) -> np.ndarray:
    """(S,) -> (S, 1, 1), to broadcast a per-slice value over the image grid."""
    return np.asarray(x, np.float64)[:, None, None]


def _anatomy(rng: np.random.Generator, S: int, size: int, W: int) -> SimpleNamespace:
    """The patient's grid and anatomy parameters (the per-patient draws, in their fixed order)."""
    rows = 2 * size
    wp = padded_width(size)
    px = 2.0 / size  # one output pixel in normalised units (the crop spans [-1, 1))
    edge = 0.45 * px

    # Grid in the crop's normalised coordinates: y down (inferior), x right (anterior).
    y = (np.arange(rows) - rows // 2) * px
    x = (np.arange(W) - W // 2) * px * wp / W
    X, Y = np.meshgrid(x, y)  # (rows, W)

    # ---- per-patient anatomy parameters
    ox, oy = rng.uniform(-0.06, 0.06, 2)
    scale = rng.uniform(0.92, 1.05)
    theta = np.deg2rad(rng.uniform(-5.0, 5.0))
    jit = rng.uniform(0.9, 1.1, 8)
    gain = rng.uniform(0.85, 1.15)
    soft, fluid, marrow, patella, cortex, cart, menis, acl0 = gain * jit * np.array(
        [_SOFT, _FLUID, _MARROW, _PATELLA, _CORTEX, _CARTILAGE, _MENISCUS, _ACL])
    c, s_ = math.cos(theta), math.sin(theta)
    U = (c * (X - ox) + s_ * (Y - oy)) / scale  # anatomy coordinates
    V = (-s_ * (X - ox) + c * (Y - oy)) / scale
    U, V = U[None], V[None]  # (1, rows, W)
    e = edge / scale
    y_jf = -0.04 + rng.uniform(-0.03, 0.03)  # femur's lowest point
    y_jt = 0.22 + rng.uniform(-0.03, 0.03)  # tibial plateau
    fx = rng.uniform(-0.1, 0.0)  # femoral condyle centre, horizontally
    t = np.linspace(-1.0, 1.0, S) if S > 1 else np.zeros(1)  # medial .. lateral
    t = t + rng.uniform(-0.15, 0.15)
    kb = 1.0 - 0.12 * t * t  # bone width change across slices
    km = 0.85 + 0.3 * np.abs(t)  # meniscus size change
    ca, ct = rng.uniform(0.09, 0.12, 2)  # cartilage thickness (femur, tibia)

    return SimpleNamespace(**{k: v for k, v in locals().items() if k != "rng"})


def _slice_draws(rng: np.random.Generator, S: int, rows: int, W: int, gain: float) -> SimpleNamespace:
    """The per-slice draws (labels, lesions, phase, noise, the masks' generator): fixed sizes,
    in a fixed order, so the stream is the same whatever the outcome."""
    labels_u = rng.random((S, 3))
    mult = np.exp(rng.normal(0.0, PROPENSITY_SIGMA, 3) - PROPENSITY_SIGMA ** 2 / 2)
    rate = np.minimum(np.array([RATES["abnormal"], RATES["meniscus_tear"], RATES["cartilage"]])
                      * mult, 0.9)
    abnormal, tear, cartilage = (labels_u < rate).T
    acl_mag, acl_phase = (rng.random((2, S)) < 0.5)
    tear_horn = rng.random(S) < 0.5
    tear_pos = rng.dirichlet((3.0, 3.0, 3.0), S)  # barycentric centre in the wedge
    tear_angle = np.deg2rad(rng.uniform(-35.0, 35.0, S))
    tear_half = rng.uniform(0.12, 0.2, S)
    tear_value = rng.uniform(0.6, 0.9, S) * gain
    cart_bone = rng.random(S) < 0.5  # True: femoral band, False: tibial
    cart_centre = rng.uniform(-0.3, 0.3, S)
    cart_half = rng.uniform(0.2, 0.35, S)
    cart_depth = rng.uniform(0.8, 1.0, S)
    dip_cand = np.stack([rng.uniform(-0.7, 0.7, (S, 24)), rng.uniform(-0.75, 0.75, (S, 24))], -1)
    dip_amp = rng.uniform(0.6, 1.6, S) * np.where(rng.random(S) < 0.5, -1.0, 1.0)
    dip_rad = rng.uniform(0.14, 0.22, S)  # normalised units: 2.2..3.5 pixels at size 32
    acl_raise = rng.uniform(0.4, 0.7, S) * gain
    acl_offset = rng.uniform(0.8, 1.6, S) * np.where(rng.random(S) < 0.5, -1.0, 1.0)
    acl_shift = rng.uniform(-0.03, 0.03, S)
    phase_patient = rng.uniform(-1.0, 1.0, 6) * np.array([0.5, 0.35, 0.35, 0.2, 0.2, 0.2])
    phase_slice = rng.normal(0.0, 0.05, (S, 6))
    noise_k = rng.standard_normal((2, S, rows, W))
    mask_rng = np.random.default_rng(rng.integers(2 ** 63))

    return SimpleNamespace(**{k: v for k, v in locals().items() if k != "rng"})


def _magnitude(a: SimpleNamespace, d: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """The magnitude image (S, rows, W) by the painter's algorithm, back to front, and the
    distance to the ACL's axis (the phase's ACL zone uses it)."""
    S, rows, W, U, V, e, t = a.S, a.rows, a.W, a.U, a.V, a.e, a.t
    fx, y_jf, y_jt, kb, km, ca, ct = a.fx, a.y_jf, a.y_jt, a.kb, a.km, a.ca, a.ct
    soft, fluid, marrow, patella, cortex, cart, menis, acl0 = (
        a.soft, a.fluid, a.marrow, a.patella, a.cortex, a.cart, a.menis, a.acl0)
    cartilage, tear, acl_mag, acl_raise, acl_shift = d.cartilage, d.tear, d.acl_mag, d.acl_raise, d.acl_shift
    cart_bone, cart_centre, cart_depth, cart_half = d.cart_bone, d.cart_centre, d.cart_depth, d.cart_half
    tear_angle, tear_half, tear_horn, tear_pos, tear_value = (d.tear_angle, d.tear_half, d.tear_horn,
                                                              d.tear_pos, d.tear_value)
    img = np.zeros((S, rows, W))
    img = _paint(img, _inside(_ellipse_distance(U, V, 0.0, 0.05, 0.86, 1.5), e), soft)
    img = _paint(img, _inside(_ellipse_distance(U, V, 0.52, -0.6, 0.1, 0.2), e), fluid)
    d_pat = _ellipse_distance(U, V, 0.66, -0.22, 0.1, 0.2)
    img = _paint(img, _inside(d_pat, e), cortex)
    img = _paint(img, _inside(d_pat + 0.06, e), patella)

    a_f, b_f = _col(0.5 * kb), _col(0.45 * kb)
    cy_f = y_jf - b_f
    d_fem = np.minimum(_ellipse_distance(U, V, fx, cy_f, a_f, b_f),
                       np.maximum(np.abs(U - fx) - 0.28, V - cy_f))
    a_t, b_t = _col(0.55 * kb), _col(0.4 * kb)
    cy_t = y_jt + b_t
    d_tib = np.minimum(_ellipse_distance(U, V, 0.0, cy_t, a_t, b_t),
                       np.maximum(np.abs(U) - 0.3, cy_t - V))
    for d in (d_fem, d_tib):
        img = _paint(img, _inside(d, e), cortex)
        img = _paint(img, _inside(d + 0.06, e), marrow)

    # cartilage bands, thinned over a segment where a cartilage lesion was drawn
    bump = _inside(np.abs(U - _col(cart_centre)) - _col(cart_half), e)  # (S, 1, W) segment
    loss = _col(cart_depth * cartilage) * bump
    thick_f = ca * (1.0 - loss * _col(cart_bone))
    thick_t = ct * (1.0 - loss * _col(~cart_bone))
    band_f = (_inside(-d_fem, e) * _inside(d_fem - thick_f, e) * _inside(cy_f - V, e)
              * _inside(np.abs(U - fx) - 0.42, e))
    band_t = (_inside(-d_tib, e) * _inside(d_tib - thick_t, e) * _inside(V - cy_t, e)
              * _inside(np.abs(U) - 0.45, e))
    img = _paint(img, band_f, cart)
    img = _paint(img, band_t, cart)

    # menisci: wedges with their base outside and the apex pointing into the joint
    h, L = _col(0.17 * km), _col(0.24 * km)
    base_v = y_jt + 0.01
    wedges = []
    for side in (-1.0, 1.0):  # posterior, anterior horn
        uo = side * 0.5
        verts = [(uo, base_v), (uo, base_v - h), (uo - side * L, base_v - 0.04)]
        wedges.append((verts, _inside(_triangle_distance(U, V, verts), e)))
    for _, w in wedges:
        img = _paint(img, w, menis)
    # meniscus tear: a thin bright cleft through one wedge (magnitude only)
    verts = [tuple(np.where(_col(tear_horn), wedges[1][0][k][i], wedges[0][0][k][i])
                   for i in range(2)) for k in range(3)]
    wedge = np.where(_col(tear_horn), wedges[1][1], wedges[0][1])
    tu = sum(_col(tear_pos[:, k]) * verts[k][0] for k in range(3))
    tv = sum(_col(tear_pos[:, k]) * verts[k][1] for k in range(3))
    hu, hv = _col(np.cos(tear_angle) * tear_half), _col(np.sin(tear_angle) * tear_half)
    d_tear, _ = _segment_distance(U, V, tu - hu, tv - hv, tu + hu, tv + hv)
    cleft = _inside(d_tear - 0.05, e) * wedge * _col(tear)
    img = _paint(img, cleft, _col(tear_value))

    # ACL: a dark band from the femoral notch to the tibial spine; raised where acl_mag
    sh = _col(0.08 * t + acl_shift)
    d_acl, _ = _segment_distance(U, V, -0.2 + sh, y_jf - 0.02, 0.12 + sh, y_jt + 0.02)
    acl_band = _inside(d_acl - 0.055, e)
    img = _paint(img, acl_band, acl0 + _col(acl_raise * acl_mag))

    return img, d_acl


def _phase(a: SimpleNamespace, d: SimpleNamespace, img: np.ndarray, d_acl: np.ndarray) -> np.ndarray:
    """The phase (S, rows, W): smooth background, a dipole where abnormal, an ACL offset where
    acl_phase."""
    S, rows, W, X, Y, px, wp, e, gain = a.S, a.rows, a.W, a.X, a.Y, a.px, a.wp, a.e, a.gain
    dip_cand, dip_rad, dip_amp, abnormal = d.dip_cand, d.dip_rad, d.dip_amp, d.abnormal
    acl_offset, acl_phase = d.acl_offset, d.acl_phase
    coef = d.phase_patient[None, :] + d.phase_slice  # (S, 6)
    basis = np.stack([np.ones_like(X), X, Y, X * X, X * Y, Y * Y])  # (6, rows, W)
    phase = np.tensordot(coef, basis, axes=(1, 0))  # (S, rows, W)
    # dipole centre: the first of 24 candidates that falls in bright tissue
    rr = np.clip(np.rint(dip_cand[..., 1] / px + rows // 2).astype(int), 0, rows - 1)
    cc = np.clip(np.rint(dip_cand[..., 0] / px * W / wp + W // 2).astype(int), 0, W - 1)
    ok = img[np.arange(S)[:, None], rr, cc] > 0.6 * gain * _SOFT
    pick = np.where(ok.any(1), ok.argmax(1), 0)
    dx = X[None] - _col(dip_cand[np.arange(S), pick, 0])
    dy = Y[None] - _col(dip_cand[np.arange(S), pick, 1])
    a2 = _col(dip_rad) ** 2
    dipole = (2.0 * dy * dy - dx * dx) / a2 * (1.0 + (dx * dx + dy * dy) / a2) ** -2.5
    phase = phase + _col(dip_amp * abnormal / _DIPOLE_PEAK) * dipole
    acl_zone = _inside(d_acl - 0.095, 1.5 * e)
    phase = phase + _col(acl_offset * acl_phase) * acl_zone

    return phase


def _patient(rng: np.random.Generator, slices: int, size: int, noise: float) -> dict:
    """Draw and render one patient: k-space (S, 2 size, W) complex128, the undersampling masks
    (S, W) bool, the labels (S, 4) uint8 and the evidence flags. Every draw has a fixed size, in a
    fixed order, so the stream is the same whatever the outcome."""
    S, rows = slices, 2 * size
    widths = kspace_widths(size)
    W = int(widths[rng.integers(len(widths))])
    a = _anatomy(rng, S, size, W)
    d = _slice_draws(rng, S, rows, W, a.gain)
    img, d_acl = _magnitude(a, d)
    phase = _phase(a, d, img, d_acl)
    abnormal, tear, cartilage, acl_mag, acl_phase = (d.abnormal, d.tear, d.cartilage, d.acl_mag,
                                                     d.acl_phase)
    noise_k, mask_rng = d.noise_k, d.mask_rng
    # ---- k-space with noise, and the undersampling masks
    ref = np.array([m[m > 0.2].mean() for m in img[:, rows // 4: rows // 4 + size]])
    sigma = _col(noise * ref)
    k = fft2c(img * np.exp(1j * phase)) + sigma * (noise_k[0] + 1j * noise_k[1])
    masks = np.stack([column_mask(W, "random", 4, 0.08, rng=mask_rng) for _ in range(S)])
    labels = np.zeros((S, len(LABELS)), np.uint8)
    labels[:, LABELS.index("abnormal")] = abnormal
    labels[:, LABELS.index("meniscus_tear")] = tear
    labels[:, LABELS.index("acl")] = acl_mag ^ acl_phase
    labels[:, LABELS.index("cartilage")] = cartilage
    evidence = {"meniscus_tear": tear, "cartilage": cartilage, "abnormal": abnormal,
                "acl_mag": acl_mag, "acl_phase": acl_phase}
    return {"kspace": k, "masks": masks, "labels": labels, "evidence": evidence, "width": W}


def _iter_patients(patients: int, slices: int, size: int, seed: int,
                   noise: float) -> Iterator[dict]:
    """Each patient's k-space, masks, labels and evidence (see :func:`_patient`), in order."""
    for child in np.random.SeedSequence(seed).spawn(patients):
        yield _patient(np.random.default_rng(child), slices, size, noise)


def _images(kspace: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Float (magnitude, phase) of k-space through the shared fastMRI path."""
    return magnitude_phase(kspace, width=padded_width(size), crop=(size, size))


def generate(patients: int = 100, slices: int = 18, size: int = 32, seed: int = 0,
             noise: float = 0.05) -> PhantomData:
    """The phantom: ``patients * slices`` slices of ``size x size`` (see the module docstring)."""
    for name, value in (("patients", patients), ("slices", slices)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16; got {size!r}")
    if not noise >= 0 or not math.isfinite(noise):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    n = patients * slices
    mag, pha, mag_us, pha_us = (np.empty((n, 1, size, size), np.int16) for _ in range(4))
    labels = np.empty((n, len(LABELS)), np.uint8)
    evidence = {key: np.empty(n, bool) for key in EVIDENCE}
    for p, rec in enumerate(_iter_patients(patients, slices, size, seed, noise)):
        sl = slice(p * slices, (p + 1) * slices)
        k = rec["kspace"]
        m, ph = _images(k, size)
        mag[sl, 0], pha[sl, 0] = quantise_magnitude(m), quantise_phase(ph)
        m, ph = _images(k * rec["masks"][:, None, :], size)
        mag_us[sl, 0], pha_us[sl, 0] = quantise_magnitude(m), quantise_phase(ph)
        labels[sl] = rec["labels"]
        for key in EVIDENCE:
            evidence[key][sl] = rec["evidence"][key]
    patient = np.repeat(np.arange(patients, dtype=np.int64), slices)
    return PhantomData(mag, pha, mag_us, pha_us, labels, patient, evidence)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
    return h.hexdigest()[:16]


def build_embedded(patients: int = 600, slices: int = 3, size: int = 32, data_seed: int = 0,
                   noise: float = 0.05) -> Task:
    """The EMBEDDED k-space knee phantom as a task: patients split 70/15/15 in order (the
    generator draws them independently), every slice of a patient in one split. The default,
    many patients with few slices each (1,800 slices), gives the networks anatomical variety:
    with 100 patients of 18 slices they memorised the 70 training anatomies and stayed at
    chance on held-out patients."""
    for name, value, low in (("patients", patients, 7), ("slices", slices, 1), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"fastmri: {name} must be a whole number >= {low}; got {value!r}")
    data = generate(patients=patients, slices=slices, size=size, seed=data_seed, noise=noise)
    n_train, n_val = round(0.7 * patients), round(0.15 * patients)
    cut = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, patients)}
    target = torch.from_numpy(data.labels.astype(np.float32))  # multilabel: 0/1 floats

    def split(name, lo, hi, mag, phase):
        rows = torch.from_numpy(np.flatnonzero((data.patient >= lo) & (data.patient < hi)))
        return Split({"magnitude": torch.from_numpy(mag)[rows], "phase": torch.from_numpy(phase)[rows]},
                     target[rows], name)

    splits = {k: split(k, lo, hi, data.magnitude, data.phase) for k, (lo, hi) in cut.items()}
    shifts = {SHIFT: split(SHIFT, *cut["test"], data.magnitude_us, data.phase_us)}
    spec = task_spec("embedded", (size, size), MAG_SCALE, PHASE_SCALE,
                 description="EMBEDDED synthetic k-space knee phantom (not anatomy)")
    checksum = _digest(data.magnitude, data.phase, data.magnitude_us, data.phase_us, data.labels,
                       data.patient)
    return Task(spec, splits, shifts, options=dict(
        source="embedded", patients=patients, slices=slices, size=size, data_seed=data_seed,
        noise=noise, checksum=checksum))


__all__ = ["EVIDENCE", "MAG_SCALE", "PHASE_SCALE", "PhantomData", "RATES", "build_embedded", "generate",
           "kspace_widths", "padded_width", "quantise_magnitude", "quantise_phase"]
