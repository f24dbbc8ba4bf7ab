"""Modality kinds and per-modality normalisation: values by hand, defaults bit-identical to the
old formula, in-memory and on-disk splits alike, token ids that stay integers (padding,
imputation, perturbations refused), and the ``toy_kinds`` suite end to end."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import i2m2bench
from i2m2bench.data.common.disk import save_split
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.protocols import ProtocolError, expand
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.store import read_rows
from i2m2bench.perturbations import PerturbationError, apply_perturbation
from i2m2bench.types import (MODALITY_KINDS, Batch, ModalitySpec, Split, TaskSpec, model_input,
                             model_input_mean, padding_mask)

GIN = Path(i2m2bench.__file__).parent / "gin"


def _spec(*modalities):
    return TaskSpec("t", "1", tuple(modalities), "multiclass", 3)


# ------------------------------------------------------------------------ normalisation by hand
def test_scale_then_offset_by_hand():
    spec = ModalitySpec("x", (1, 2, 2), "image", scale=0.5, offset=-1.0)
    x = torch.tensor([[[[0, 2], [4, 10]]]], dtype=torch.uint8)
    assert torch.equal(model_input(x, spec), torch.tensor([[[[-1.0, 0.0], [1.0, 4.0]]]]))


def test_mean_std_per_channel_by_hand():
    spec = ModalitySpec("x", (2, 1, 2), "image", scale=2.0, offset=1.0, mean=(1.0, 3.0), std=(2.0, 4.0))
    x = torch.tensor([[[[0.0, 1.0]], [[2.0, 5.0]]]])  # (1, 2, 1, 2)
    # channel 0: (2x + 1 - 1) / 2 = x; channel 1: (2x + 1 - 3) / 4
    want = torch.tensor([[[[0.0, 1.0]], [[0.5, 2.0]]]])
    assert torch.equal(model_input(x, spec), want)


@pytest.mark.parametrize("kind,shape,axis", [
    ("timeseries", (3, 2), -1), ("sequence", (3, 2), -1), ("vector", (2,), -1),
    ("image_pair", (2, 2, 1, 1), 1), ("volume", (2, 1, 1, 1), 0), ("spectrogram", (2, 1, 3), 0)])
def test_mean_std_follow_each_kinds_channel_axis(kind, shape, axis):
    spec = ModalitySpec("x", shape, kind, mean=(10.0, 20.0), std=(2.0, 5.0))
    x = torch.rand(4, *shape) * 7
    stats = [1] * (len(shape) + 1)
    stats[axis % len(shape) + 1] = 2
    want = (x - torch.tensor([10.0, 20.0]).view(stats)) / torch.tensor([2.0, 5.0]).view(stats)
    assert torch.allclose(model_input(x, spec), want, atol=1e-6)


def test_mr_phase_maps_to_unit_interval_or_symmetric():
    phase = torch.linspace(-math.pi, math.pi, 9).view(1, 1, 3, 3)  # torch.angle's range
    unit = ModalitySpec("phase", (1, 3, 3), "image", scale=1 / (2 * math.pi), offset=0.5)
    sym = ModalitySpec("phase", (1, 3, 3), "image", std=(math.pi,))
    u, s = model_input(phase, unit), model_input(phase, sym)
    assert abs(float(u.min())) < 1e-6 and abs(float(u.max()) - 1.0) < 1e-6
    assert torch.allclose(u, (phase / math.pi + 1) / 2, atol=1e-6)
    assert abs(float(s.min()) + 1.0) < 1e-6 and abs(float(s.max()) - 1.0) < 1e-6


def test_defaults_are_bit_identical_to_the_old_formula():
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (16, 1, 5, 5), generator=g, dtype=torch.uint8)
    floats = torch.randn(16, 7, generator=g) * 1e3
    for x, spec in ((raw, ModalitySpec("a", (1, 5, 5), "image", scale=1 / 255)),
                    (raw, ModalitySpec("a", (1, 5, 5), "image")),
                    (floats, ModalitySpec("b", (7,), "vector", scale=0.37)),
                    (floats, ModalitySpec("b", (7,), "vector"))):
        c = x.clone()  # the old formula works in place on a float32 batch
        old = c.float().mul_(spec.scale) if spec.scale != 1.0 else c.float()
        new = model_input(x.clone(), spec, inplace=True)
        assert new.dtype == torch.float32 and torch.equal(new, old)
        split = Split({spec.name: x}, torch.zeros(16, dtype=torch.long))
        assert torch.equal(split.batch(torch.arange(16), _spec(spec)).inputs[spec.name], old)
        stored = x.double().mean(0)
        assert torch.equal(model_input_mean(stored, spec), (stored * spec.scale).float())


def test_model_input_never_modifies_its_input_unless_told():
    x = torch.rand(4, 3)
    before = x.clone()
    spec = ModalitySpec("v", (3,), "vector", scale=2.0, offset=1.0, mean=(0.5,), std=(3.0,))
    out = model_input(x, spec)
    assert torch.equal(x, before) and not torch.equal(out, x)
    assert model_input(x, ModalitySpec("v", (3,), "vector")) is x  # nothing to do: no copy


def test_the_mean_model_input_is_the_mean_of_the_model_inputs():
    x = torch.randint(0, 256, (50, 2, 3, 3), dtype=torch.uint8)
    spec = ModalitySpec("a", (2, 3, 3), "image", scale=1 / 255, offset=0.1, mean=(0.4, 0.6),
                        std=(0.2, 0.3))
    split = Split({"a": x}, torch.zeros(50, dtype=torch.long))
    assert torch.allclose(split.input_mean(spec), model_input(x, spec).mean(0), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(shape=(3, 4, 4), kind="image", mean=(0.1, 0.2)),
     r"modality 'm': mean has 2 values; expected one per channel \(3"),
    (dict(shape=(5, 2), kind="timeseries", std=(1.0, 1.0, 1.0)),
     r"modality 'm': std has 3 values; expected one per channel \(2: axis -1"),
    (dict(shape=(3,), kind="vector", std=(1.0, 0.0, 1.0)), r"modality 'm': std must be > 0"),
    (dict(shape=(1, 4, 4), kind="volume"), r"modality 'm': a volume modality has per-sample shape "
                                           r"\(C, D, H, W\); got \(1, 4, 4\)"),
    (dict(shape=(3, 1, 4, 4), kind="image_pair"), r"image_pair modality has per-sample shape "
                                                  r"\(2, C, H, W\)"),
    (dict(shape=(4, 2), kind="tokens"), r"tokens modality has per-sample shape \(T,\)"),
    (dict(shape=(8,), kind="tokens", scale=0.5), r"modality 'm': a tokens modality holds integer "
                                                 r"ids and is never normalised"),
    (dict(shape=(8,), kind="tokens", pad_id=10, vocab_size=10), r"pad_id 10 is not an id"),
    (dict(shape=(8,), kind="text"), r"modality 'm': unknown kind 'text'"),
])
def test_bad_specs_name_the_modality_and_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalitySpec("m", **kwargs)


def test_every_kind_is_known_and_the_old_ones_still_work():
    assert set(MODALITY_KINDS) >= {"image", "spectrogram", "vector", "sequence", "volume",
                                   "timeseries", "tokens", "image_pair"}
    old = ModalitySpec("image", (1, 28, 28), "image", "lenet", 1 / 255)  # positional, as before
    assert old.encoder == "lenet" and old.scale == 1 / 255 and old.offset == 0.0 and old.mean is None


# ------------------------------------------------------------------------------- tokens
def _tokens(n=12, t=7, pad=0, vocab=20, seed=0, dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    x[torch.arange(t)[None] >= lengths[:, None]] = pad
    return x.to(dtype)


def test_tokens_stay_integer_ids_and_the_padding_mask_is_x_not_pad():
    spec = ModalitySpec("text", (7,), "tokens", "text_gru", pad_id=0, vocab_size=20)
    for dtype in (torch.int64, torch.int32, torch.uint8):
        x = _tokens(dtype=dtype)
        out = model_input(x, spec)
        assert out.dtype == torch.int64 and torch.equal(out, x.long())
    x = _tokens()
    assert torch.equal(padding_mask(x, spec), x != 0)
    with pytest.raises(ValueError, match=r"modality 'text' holds tokens .* integer ids; got torch.float32"):
        model_input(x.float(), spec)


def test_split_and_disk_split_give_identical_batches(tmp_path):
    g = torch.Generator().manual_seed(3)
    n = 40
    specs = (ModalitySpec("text", (7,), "tokens", "text_gru", pad_id=0, vocab_size=20),
             ModalitySpec("ids32", (5,), "tokens", "text_gru", pad_id=2, vocab_size=9),
             ModalitySpec("img", (2, 4, 4), "image", "lenet", scale=1 / 255, offset=-0.1,
                          mean=(0.3, 0.5), std=(0.2, 0.25)),
             ModalitySpec("ts", (6, 3), "timeseries", "gru", mean=(1.0, -2.0, 5.0), std=(1.0, 2.0, 4.0)))
    split = Split({"text": _tokens(n, 7), "ids32": _tokens(n, 5, pad=2, vocab=9, dtype=torch.int32),
                   "img": torch.randint(0, 256, (n, 2, 4, 4), generator=g, dtype=torch.uint8),
                   "ts": torch.randn(n, 6, 3, generator=g) * 3},
                  torch.randint(0, 3, (n,), generator=g), "train")
    disk = save_split(split, tmp_path / "split")
    spec = _spec(*specs)
    index = torch.tensor([5, 0, 39, 17, 17, 2])
    a, b = split.batch(index, spec), disk.batch(index, spec)
    for m in spec.modality_names:
        assert a.inputs[m].dtype == b.inputs[m].dtype and torch.equal(a.inputs[m], b.inputs[m]), m
    assert a.inputs["text"].dtype == torch.int64 and a.inputs["ids32"].dtype == torch.int64
    order = torch.randperm(n, generator=g)
    for x, y in zip(split.batches(spec, 16, order), disk.batches(spec, 16, order)):
        assert all(torch.equal(x.inputs[m], y.inputs[m]) for m in spec.modality_names)
    for m in specs:  # the imputation values: pad ids for tokens, the same float means otherwise
        u, v = split.input_mean(m), disk.input_mean(m)
        assert u.dtype == v.dtype and torch.allclose(u.double(), v.double(), atol=1e-6), m.name
    assert torch.equal(split.input_mean(specs[1]), torch.full((5,), 2, dtype=torch.int64))


@pytest.mark.parametrize("impute_with,pad", [("zeros", 0), ("mean", 0), ("mean", 3)])
def test_missing_tokens_are_imputed_with_padding(impute_with, pad):
    text = ModalitySpec("text", (6,), "tokens", "text_gru", pad_id=pad, vocab_size=12)
    vec = ModalitySpec("v", (4,), "vector", "mlp")
    spec = _spec(text, vec)
    split = Split({"text": _tokens(10, 6, pad=pad, vocab=12), "v": torch.rand(10, 4)},
                  torch.zeros(10, dtype=torch.long))
    model = i2m2bench.build_fusion("late_fusion", spec, width=8, impute_with=impute_with)
    model.set_input_means({m.name: split.input_mean(m) for m in spec.modalities})  # as the runner
    batch = split.batch(torch.arange(10), spec)
    present = torch.tensor([True, False] * 5)
    filled = model.imputed(Batch(batch.inputs, batch.target, {"text": present}), "text")
    assert filled.dtype == torch.int64
    assert bool((filled[~present] == pad).all())
    assert torch.equal(filled[present], batch.inputs["text"][present])
    with torch.no_grad():  # an absent text reads as no tokens at all: the encoder's zero features
        feats = model.encoders["text"](filled)
    assert bool((feats[~present] == 0).all()) and bool(feats[present].abs().sum(1).gt(0).all())


def test_noise_on_tokens_is_refused_before_anything_runs(tmp_path):
    task = i2m2bench.build_task("toy_kinds", n_train=8, n_eval=8)
    for kind in ("gaussian", "snr", "dropout", "frames"):
        with pytest.raises(ProtocolError, match=rf"perturb:text:{kind}.*perturbation '{kind}' "
                                                r"applies to .*'text' is a tokens \(10,\)"):
            expand([f"perturb:text:{kind}"], task)
    assert [p.key for p in expand(["perturb:series:gaussian@0.5"], task)] == \
        ["perturb:series:gaussian@0.5"]
    with pytest.raises(PerturbationError, match=r"'gaussian' applies to .*'text' is a tokens.*"
                                                r"token ids are not values"):
        apply_perturbation("gaussian", torch.ones(2, 10, dtype=torch.long), 0.5,
                           torch.Generator(), task.spec.modality("text"))
    with pytest.raises(ConfigError, match=r"perturbation 'gaussian'.*'text' is a tokens"):
        run_suite([GIN / "toy_kinds_smoke.gin"], ["suite.protocols = ['perturb:*:gaussian']"],
                  out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False, dry_run=True)


# ------------------------------------------------------------------------- the toy_kinds task
def test_toy_kinds_task_has_each_kind_and_normalises_them():
    task = i2m2bench.build_task("toy_kinds", n_train=64, n_eval=32)
    spec = task.spec
    assert [(m.name, m.kind, m.encoder) for m in spec.modalities] == [
        ("series", "timeseries", "gru"), ("text", "tokens", "text_gru"), ("pair", "image_pair", "pair")]
    assert spec.source == "synthetic" and set(task.shifts) == {"noisier"}
    train = task.splits["train"]
    assert train.inputs["text"].dtype == torch.int64 and train.inputs["pair"].dtype == torch.uint8
    assert float(train.inputs["series"][..., 2].mean()) > 50  # stored with offset 100 ...
    batch = train.batch(torch.arange(64), spec)
    series = batch.inputs["series"]
    assert abs(float(series.mean())) < 1.0 and float(series.std()) < 5.0  # ... which mean/std undo
    text = batch.inputs["text"]
    assert bool((text[:, :3] != 0).all())  # at least 3 words, then right padding only
    real = text != 0
    assert torch.equal(real, real.cummin(1).values)
    with pytest.raises(ValueError, match="toy_kinds: option 'source' must be 'auto' or 'synthetic'"):
        i2m2bench.build_task("toy_kinds", source="real")


@pytest.mark.slow
def test_toy_kinds_suite_end_to_end(tmp_path):
    run = run_suite([GIN / "toy_kinds_smoke.gin"], [], out=tmp_path / "runs",
                    results_dir=tmp_path / "lb", progress=False)
    assert not run.failures
    test = {s["unit"]: s["test"] for s in run.summary}
    methods = ["series_only", "text_only", "pair_only", "late_fusion", "early_fusion", "i2m2"]
    assert sorted(test) == sorted(f"{m}/seed0" for m in methods)
    assert test["i2m2/seed0"] > 0.45  # chance: 0.25
    rows = read_rows(run.results_path)
    protocols = {r["protocol"] for r in rows if r["method"] == "i2m2"}
    assert {"test", "shift:noisier", "missing:series", "missing:text", "missing:pair",
            "perturb:series:gaussian@0.5"} <= protocols
    assert all(np.isfinite(r["value"]) for r in rows if r["protocol"] != "train")
    assert (tmp_path / "lb" / f"{run.board}.md").exists()


def test_zero_imputation_fills_missing_tokens_with_the_padding_id():
    """impute_with='zeros' means "nothing there": padding for token ids, whatever its id."""
    import torch

    from i2m2bench.fusion.base import build_fusion
    from i2m2bench.types import Batch, ModalitySpec, TaskSpec

    spec = TaskSpec("t", "1", (ModalitySpec("text", (5,), "tokens", "text_gru", pad_id=3, vocab_size=10),
                               ModalitySpec("x", (4,), "vector", "mlp")), "multiclass", 2, source="synthetic")
    model = build_fusion("late_fusion", spec)
    ids = torch.tensor([[1, 2, 4, 3, 3], [5, 6, 7, 8, 9]])
    batch = Batch({"text": ids, "x": torch.zeros(2, 4)}, torch.zeros(2, dtype=torch.long),
                  present={"text": torch.tensor([True, False]), "x": torch.tensor([True, True])})
    got = model.imputed(batch, "text")
    assert got.dtype == torch.int64 and got[0].tolist() == [1, 2, 4, 3, 3] and got[1].tolist() == [3] * 5
    assert torch.isfinite(model(batch)["inter"]).all()


# ------------------------------------------------------------------ contract checks, every kind
def test_random_batches_hold_padded_token_ids_and_fusions_pass_their_contract_on_every_kind():
    from i2m2bench.data.synthetic.toy_kinds import task_spec
    from i2m2bench.testing import check_fusion, random_batch

    spec = task_spec(4, 8, 3, 12, 50, 16)  # time series, tokens, image pair
    text = random_batch(spec, batch_size=32).inputs["text"]
    assert text.dtype == torch.int64 and int(text.min()) >= 0 and int(text.max()) < 50
    real = text != spec.modality("text").pad_id
    assert bool(real[:, 0].all())  # every sequence has a token, then padding only at its tail
    assert bool((real.long().diff(dim=1) <= 0).all())
    for name in ("late_fusion", "early_fusion", "intra_only", "i2m2"):
        check_fusion(name, spec)


def test_every_perturbation_passes_its_contract_on_every_kind_it_declares():
    from i2m2bench.perturbations import PERTURBATIONS
    from i2m2bench.testing import EXAMPLE_SHAPES, check_perturbation

    from i2m2bench.perturbations import COMPLEX

    checked = 0
    for name in PERTURBATIONS.names():
        for kind in PERTURBATIONS.get(name).kinds:
            if kind == COMPLEX:  # no modality has it: the corruption of a complex image
                check_perturbation(name)
            else:
                check_perturbation(name, ModalitySpec("m", EXAMPLE_SHAPES[kind], kind))
            checked += 1
    assert checked >= 16
