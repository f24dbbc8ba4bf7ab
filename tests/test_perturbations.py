"""Perturbations: level 0 is the identity, only what is selected changes, same seed same output."""
import dataclasses
import math

import pytest
import torch

import i2m2bench
from i2m2bench.perturbations import (ALL_KINDS, COMPLEX, PERTURBATIONS, Perturbation,
                                     PerturbationError, apply_perturbation, check_applicable, snr_db)
from i2m2bench.types import ModalitySpec

MODALITIES = {
    "image": ModalitySpec("img", (1, 28, 28), "image", "lenet"),
    "spectrogram": ModalitySpec("spec", (1, 16, 20), "spectrogram", "lenet"),
    "vector": ModalitySpec("vec", (12,), "vector"),
    "sequence": ModalitySpec("seq", (9, 3), "sequence"),
    "volume": ModalitySpec("vol", (1, 4, 8, 8), "volume", "preact_resnet18_gn"),
    "timeseries": ModalitySpec("ts", (9, 3), "timeseries", "gru"),
    "image_pair": ModalitySpec("pair", (2, 1, 8, 8), "image_pair", "pair"),
}
ZEROING = {"dropout", "frames", "patches", "occlusion"}  # select entries and zero them


def _cases():  # the complex-image corruptions: tests/test_complex_corruptions.py
    for name in PERTURBATIONS.names():
        for kind in PERTURBATIONS.get(name).kinds:
            if kind != COMPLEX:
                yield name, kind


def _x(kind, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *MODALITIES[kind].shape), generator=g) + 0.1  # no exact zeros


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name,kind", list(_cases()))
def test_level_zero_is_the_identity(name, kind):
    x = _x(kind)
    assert apply_perturbation(name, x, 0.0, _gen(), MODALITIES[kind]) is x


@pytest.mark.parametrize("name,kind", list(_cases()))
def test_reproducible_and_input_untouched(name, kind):
    x = _x(kind)
    before = x.clone()
    a = apply_perturbation(name, x, 0.6, _gen(5), MODALITIES[kind])
    b = apply_perturbation(name, x, 0.6, _gen(5), MODALITIES[kind])
    assert torch.equal(a, b)
    assert torch.equal(x, before), "the input batch was modified in place"
    assert not torch.equal(a, x), "level 0.6 changed nothing"
    if name not in ("blur", "contrast"):  # the deterministic ones
        c = apply_perturbation(name, x, 0.6, _gen(6), MODALITIES[kind])
        assert not torch.equal(a, c), "another seed gave the same draw"


@pytest.mark.parametrize("name,kind", list(_cases()))
def test_samples_not_selected_are_untouched(name, kind):
    x = _x(kind, n=400)
    out = apply_perturbation(name, x, 0.8, _gen(), MODALITIES[kind], fraction=0.3)
    full = apply_perturbation(name, x, 0.8, _gen(), MODALITIES[kind])  # same draws, all samples
    as_x, as_full = (out == x).flatten(1).all(1), (out == full).flatten(1).all(1)
    # every sample is either the perturbed one or the input bit for bit (never zeroed or redrawn)
    assert bool((as_x | as_full).all())
    assert 0.6 < float(as_x.float().mean()) < 0.8  # ~70% of the samples are not selected


@pytest.mark.parametrize("name,kind", [(n, k) for n, k in _cases() if n in ZEROING])
def test_zeroing_kinds_zero_what_they_select_and_keep_the_rest(name, kind):
    x = _x(kind, n=200)
    out = apply_perturbation(name, x, 0.4, _gen(), MODALITIES[kind])
    changed = out != x
    assert bool((out[changed] == 0).all()), "a selected entry was not zeroed"
    assert torch.equal(out[~changed], x[~changed])
    share = float(changed.float().mean())
    assert abs(share - 0.4) < 0.05, f"{name} zeroed {share:.3f} of the entries at level 0.4"


def test_frames_drop_whole_time_steps():
    for kind, axis in (("spectrogram", -1), ("sequence", 1), ("timeseries", 1)):
        x = _x(kind)
        z = apply_perturbation("frames", x, 0.5, _gen(), MODALITIES[kind]) == 0
        per_frame = z.movedim(axis, -1).flatten(1, -2)  # (B, entries per frame, frames)
        assert torch.equal(per_frame.all(1), per_frame.any(1))  # each frame all zero or untouched
        assert bool(per_frame.all(1).any())


def test_patches_are_four_by_four_blocks():
    x = _x("image")
    z = (apply_perturbation("patches", x, 0.5, _gen(), MODALITIES["image"]) == 0)[:, 0]
    blocks = z.unfold(1, 4, 4).unfold(2, 4, 4)  # (B, 7, 7, 4, 4)
    assert torch.equal(blocks.all(-1).all(-1), blocks.any(-1).any(-1))


def test_occlusion_is_one_square_of_the_requested_area():
    x = _x("image")
    z = (apply_perturbation("occlusion", x, 0.25, _gen(), MODALITIES["image"]) == 0)[:, 0]
    assert bool((z.sum((1, 2)) == 14 * 14).all())  # sqrt(0.25) * 28 = 14
    rows, cols = z.any(2), z.any(1)
    assert bool((rows.sum(1) == 14).all() and (cols.sum(1) == 14).all())  # a square, not scattered


def test_gaussian_noise_std_is_the_level():
    x = torch.zeros(4000, 12)
    out = apply_perturbation("gaussian", x, 0.5, _gen(), MODALITIES["vector"])
    assert abs(float(out.std()) - 0.5) < 0.01


@pytest.mark.parametrize("level", [0.25, 0.5, 1.0])
def test_snr_hits_the_target(level):
    x = _x("vector", n=4000)
    noise = apply_perturbation("snr", x, level, _gen(), MODALITIES["vector"]) - x
    measured = 10 * math.log10(float(x.pow(2).mean()) / float(noise.pow(2).mean()))
    assert abs(measured - snr_db(level)) < 0.2
    assert snr_db(0.5) == 0.0 and snr_db(1.0) == -20.0


def test_blur_keeps_a_constant_interior_and_contrast_collapses_to_the_mean():
    x = torch.full((2, 1, 28, 28), 0.7)
    out = apply_perturbation("blur", x, 1.0, _gen(), MODALITIES["image"])
    assert torch.allclose(out[..., 8:20, 8:20], x[..., 8:20, 8:20], atol=1e-6)
    y = _x("image", n=3)
    flat = apply_perturbation("contrast", y, 1.0, _gen(), MODALITIES["image"])
    assert torch.allclose(flat, y.mean(dim=(-2, -1), keepdim=True).expand_as(y))
    half = apply_perturbation("contrast", y, 0.5, _gen(), MODALITIES["image"])
    assert torch.allclose(half.std(dim=(-2, -1)), 0.5 * y.std(dim=(-2, -1)), atol=1e-6)


def test_bad_requests_are_explained():
    x = _x("vector")
    with pytest.raises(PerturbationError, match=r"'snr': level must be in \[0, 1\]; got 1.5"):
        apply_perturbation("snr", x, 1.5, _gen(), MODALITIES["vector"])
    with pytest.raises(PerturbationError, match=r"'blur' applies to image, spectrogram modalities; "
                                                r"'vec' is a vector"):
        apply_perturbation("blur", x, 0.5, _gen(), MODALITIES["vector"])
    with pytest.raises(KeyError, match=r"unknown perturbation 'gausian'.*Did you mean 'gaussian'"):
        apply_perturbation("gausian", x, 0.5, _gen(), MODALITIES["vector"])


def test_registered_perturbations_are_records_whose_kinds_drive_check_applicable():
    for name in PERTURBATIONS.names():
        p = PERTURBATIONS.get(name)
        assert isinstance(p, Perturbation) and p.name == name and callable(p.fn)
        assert isinstance(p.kinds, tuple) and set(p.kinds) <= {*ALL_KINDS, COMPLEX}
        assert not hasattr(p.fn, "modality_kinds")  # no capability held on the function
        assert PERTURBATIONS.origin(name) == f"i2m2bench.perturbations.{p.fn.__name__}"
        for kind, modality in MODALITIES.items():
            if kind in p.kinds:
                assert check_applicable(name, modality) is p
            else:
                with pytest.raises(PerturbationError, match=rf"{name!r} applies to "
                                                            rf"{', '.join(p.kinds)} modalities"):
                    check_applicable(name, modality)
    assert PERTURBATIONS.get("patches").kinds == ("image", "spectrogram")
    assert PERTURBATIONS.get("frames").kinds == ("spectrogram", "image", "sequence", "timeseries")
    assert all("tokens" not in PERTURBATIONS.get(n).kinds for n in PERTURBATIONS.names())
    with pytest.raises(dataclasses.FrozenInstanceError):
        PERTURBATIONS.get("gaussian").kinds = ALL_KINDS


def test_the_decorator_registers_a_record_and_returns_the_function():
    def spy(x, level, gen, modality):
        return x * (1 - level)

    try:
        assert i2m2bench.perturbation("_test_spy", kinds=["vector"])(spy) is spy
        p = PERTURBATIONS.get("_test_spy")
        assert p == Perturbation("_test_spy", spy, ("vector",))  # kinds stored as a tuple
        assert PERTURBATIONS.origin("_test_spy").endswith("test_the_decorator_registers_a_record"
                                                          "_and_returns_the_function.<locals>.spy")
        x = _x("vector")
        assert torch.equal(apply_perturbation("_test_spy", x, 0.5, _gen(), MODALITIES["vector"]),
                           x * 0.5)
        with pytest.raises(PerturbationError, match=r"'_test_spy' applies to vector modalities; "
                                                    r"'img' is a image"):
            check_applicable("_test_spy", MODALITIES["image"])
    finally:
        PERTURBATIONS.remove("_test_spy")
