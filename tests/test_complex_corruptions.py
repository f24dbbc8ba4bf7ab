"""Corruptions of a complex image (FastMRI's magnitude and phase read from one image): each
applied once, before the split, so both modalities see the same corruption; what each one does
is checked in k-space or image space against its definition (i2m2bench/perturbations.py)."""
import math

import pytest
import torch

from i2m2bench.harness.protocols import ProtocolError, corrupt_complex, expand
from i2m2bench.perturbations import (GHOSTS, NOISE_SHARE_AT_1, PerturbationError,
                                     apply_complex_corruption, check_applicable,
                                     complex_corruptions, fft2c, ifft2c)
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

KINDS = ("complex_noise", "rician", "ghosting", "spike", "bias_field", "motion")


def _z(n=8, h=24, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    mag = torch.rand((n, 1, h, w), generator=g) + 0.2
    phase = (torch.rand((n, 1, h, w), generator=g) * 2 - 1) * math.pi
    return torch.polar(mag, phase)


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_the_six_official_corruptions_are_registered_for_complex_images_only():
    assert set(KINDS) <= set(complex_corruptions())
    image = ModalitySpec("magnitude", (1, 8, 8), "image", "lenet")
    for kind in KINDS:
        with pytest.raises(PerturbationError, match=f"{kind!r} applies to complex_image"):
            check_applicable(kind, image)  # never one modality alone
    with pytest.raises(PerturbationError, match="'gaussian' is no corruption of a complex image"):
        apply_complex_corruption("gaussian", _z(), 0.5, _gen())


@pytest.mark.parametrize("kind", KINDS)
def test_level_zero_is_the_identity_and_a_draw_is_reproducible(kind):
    z = _z()
    before = z.clone()
    assert apply_complex_corruption(kind, z, 0.0, _gen()) is z
    a = apply_complex_corruption(kind, z, 0.6, _gen(5))
    b = apply_complex_corruption(kind, z, 0.6, _gen(5))
    assert torch.equal(a, b) and torch.equal(z, before)
    assert a.is_complex() and a.shape == z.shape
    assert (a - z).abs().mean() > 1e-3, "level 0.6 changed nothing"
    if kind != "ghosting":  # the only deterministic one
        assert not torch.equal(a, apply_complex_corruption(kind, z, 0.6, _gen(6)))
    with pytest.raises(PerturbationError, match=r"level must be in \[0, 1\]; got 1.5"):
        apply_complex_corruption(kind, z, 1.5, _gen())


@pytest.mark.parametrize("kind", KINDS)
def test_a_stronger_level_corrupts_more(kind):
    z = _z(n=32)
    err = [(apply_complex_corruption(kind, z, lv, _gen(3)) - z).abs().mean().item()
           for lv in (0.1, 0.4, 1.0)]
    assert err[0] < err[1] < err[2], err


def test_complex_noise_has_the_official_scale():
    z = _z(n=4, h=64, w=64)
    out = apply_complex_corruption("complex_noise", z, 0.5, _gen())
    for i in range(4):
        d = out[i] - z[i]
        expect = 0.5 * NOISE_SHARE_AT_1 * z[i].abs().max().item()
        for part in (d.real, d.imag):
            assert abs(part.std().item() / expect - 1) < 0.05


def test_rician_keeps_the_phase_and_bias_field_keeps_it_too():
    z = _z()
    for kind in ("rician", "bias_field"):
        out = apply_complex_corruption(kind, z, 1.0, _gen())
        diff = torch.remainder(out.angle() - z.angle() + math.pi, 2 * math.pi) - math.pi
        assert diff.abs().max() < 1e-4, kind
    ratio = apply_complex_corruption("bias_field", z, 1.0, _gen()).abs() / z.abs()
    # exp of a cubic with ten coefficients in [-0.5, 0.5] on [-1, 1]^2: within exp(+/- 5)
    assert (ratio > math.exp(-5)).all() and (ratio < math.exp(5)).all()
    assert ratio.std() > 1e-3  # a field, not a constant


def test_ghosting_scales_every_seventh_k_space_column_and_keeps_the_centre():
    z = _z(w=30)
    k0, k1 = fft2c(z), fft2c(apply_complex_corruption("ghosting", z, 0.75, _gen()))
    mid = z.shape[-1] // 2
    for c in range(z.shape[-1]):
        expect = k0[..., c] * (0.25 if c % GHOSTS == 0 and c != mid else 1.0)
        assert torch.allclose(k1[..., c], expect, atol=1e-5), c


def test_spike_adds_one_k_space_point_of_the_stated_size():
    z = _z()
    k0, k1 = fft2c(z), fft2c(apply_complex_corruption("spike", z, 0.4, _gen()))
    d = (k1 - k0).abs()
    for i in range(z.shape[0]):
        changed = d[i] > 1e-3 * k0[i].abs().max()
        assert changed.sum() == 1
        assert math.isclose(d[i].max().item(), 0.4 * k0[i].abs().max().item(), rel_tol=1e-4)


def test_motion_keeps_the_k_space_centre_of_the_unmoved_image():
    z = _z(n=4, h=32, w=36)
    k0, k1 = fft2c(z), fft2c(apply_complex_corruption("motion", z, 1.0, _gen()))
    mid = z.shape[-1] // 2
    # the segment holding time 0.5 (the centre column) comes from the unmoved image
    assert torch.allclose(k1[..., mid], k0[..., mid], atol=1e-5)
    assert not torch.allclose(k1, k0, atol=1e-3)


def test_fft_pair_is_the_identity():
    z = _z()
    assert torch.allclose(ifft2c(fft2c(z)), z, atol=1e-5)


def _task(form="polar"):
    names = ("magnitude", "phase") if form == "polar" else ("real", "imag")
    spec = TaskSpec("cx", "1", tuple(ModalitySpec(n, (1, 12, 10), "image", "lenet") for n in names),
                    "multiclass", 2, complex_image=(form, *names))
    z = _z(n=6, h=12, w=10)
    a, b = (z.abs(), z.angle()) if form == "polar" else (z.real, z.imag)
    split = Split({names[0]: a.contiguous(), names[1]: b.contiguous()}, torch.zeros(6, dtype=torch.long))
    return Task(spec, {"train": split, "val": split, "test": split}), z


@pytest.mark.parametrize("form", ["polar", "cartesian"])
def test_the_protocol_corrupts_the_image_once_and_splits_it_again(form):
    task, z = _task(form)
    protos = expand(["perturb:complex:ghosting", "perturb:complex:spike@0.5"], task,
                    levels=(0.1, 0.2, 0.4, 0.6, 0.8, 1.0))
    assert [p.key for p in protos][:2] == ["perturb:complex:ghosting@0.1", "perturb:complex:ghosting@0.2"]
    assert len(protos) == 7 and {p.curve for p in protos} == {"perturb:complex:ghosting",
                                                             "perturb:complex:spike"}
    batch = next(iter(task.splits["test"].batches(task.spec, 6)))
    out = protos[-1].transform(task, seed=0)(batch, 0)
    a, b = task.spec.complex_image[1:]
    rebuilt = (torch.polar(out.inputs[a], out.inputs[b]) if form == "polar"
               else torch.complex(out.inputs[a], out.inputs[b]))
    direct = corrupt_complex(task.spec, batch.inputs, "ghosting", 1.0, torch.Generator())
    ghost = apply_complex_corruption("ghosting", z, 1.0, torch.Generator())
    again = (torch.polar(direct[a], direct[b]) if form == "polar" else torch.complex(direct[a], direct[b]))
    assert torch.allclose(again, ghost, atol=1e-4)  # one corruption of one image, both parts
    assert rebuilt.shape == z.shape and not torch.allclose(rebuilt, z, atol=1e-3)  # the spike
    assert all(torch.equal(out.inputs[m], batch.inputs[m]) is False for m in (a, b))


def test_the_protocol_is_refused_where_there_is_no_complex_image():
    task, _ = _task()
    plain = Task(TaskSpec("plain", "1", task.spec.modalities, "multiclass", 2), task.splits)
    with pytest.raises(ProtocolError, match="declares no complex image"):
        expand(["perturb:complex:ghosting"], plain)
    with pytest.raises(ProtocolError, match="'gaussian' is no corruption of a complex image"):
        expand(["perturb:complex:gaussian"], task)
    with pytest.raises(ProtocolError, match="'ghosting' applies to complex_image modalities"):
        expand(["perturb:magnitude:ghosting"], task)
    with pytest.raises(ValueError, match="complex_image must be"):
        TaskSpec("bad", "1", task.spec.modalities, "multiclass", 2,
                 complex_image=("polar", "magnitude", "nothing"))
