"""The ``fastmri`` dataset: the embedded phantom as a task, the real cache through the builder,
the data-root rules, and the smoke suite end to end."""
import numpy as np
import pytest
import torch

import i2m2bench
from i2m2bench.cli import main
from i2m2bench.data import DataError
from i2m2bench.data.fastmri import real as fr
from i2m2bench.data.fastmri import PER_LABEL, SHIFT
from i2m2bench.data.fastmri.processing import LABELS, OPERATING
from test_fastmri_real import CROP, W, make_raw, quiet


@pytest.fixture(scope="module")
def embedded():
    return i2m2bench.build_task("fastmri", source="embedded", patients=20, slices=6, size=16)


def test_the_embedded_phantom_is_a_multilabel_task_split_by_patient(embedded):
    spec = embedded.spec
    assert (spec.problem, spec.num_classes, spec.labels, spec.metric) == ("multilabel", 4, LABELS, "auroc")
    assert spec.metrics == (*OPERATING, *PER_LABEL) and spec.source == "embedded"
    assert spec.complex_image == ("polar", "magnitude", "phase")
    assert [m.name for m in spec.modalities] == ["magnitude", "phase"]
    assert all(m.shape == (1, 16, 16) and m.encoder == "preact_resnet18_gn" for m in spec.modalities)
    # 20 patients x 6 slices: 14 / 3 / 3 patients
    assert {k: len(v) for k, v in embedded.splits.items()} == {"train": 84, "val": 18, "test": 18}
    shift = embedded.shifts[SHIFT]
    test = embedded.splits["test"]
    assert torch.equal(shift.target, test.target)
    assert not torch.equal(shift.inputs["magnitude"], test.inputs["magnitude"])  # undersampled
    batch = test.batch(torch.arange(4), spec)
    assert batch.inputs["phase"].abs().max() <= np.pi + 1e-4  # radians, as the official model sees


def test_the_phantom_is_deterministic_and_its_checksum_names_the_data(embedded):
    again = i2m2bench.build_task("fastmri", source="embedded", patients=20, slices=6, size=16)
    assert again.options == embedded.options
    assert torch.equal(again.splits["train"].inputs["phase"], embedded.splits["train"].inputs["phase"])
    other = i2m2bench.build_task("fastmri", source="embedded", patients=20, slices=6, size=16,
                                 data_seed=1)
    assert other.options["checksum"] != embedded.options["checksum"]


def test_a_prepared_cache_is_read_through_the_data_root(tmp_path):
    F, info = make_raw(tmp_path)
    fr.prepare(F, width=W, crop=CROP, log=quiet([]))
    task = i2m2bench.build_task("fastmri", data_root=str(tmp_path))
    cached = fr.load_cache(fr.default_cache(F))
    assert task.spec.source == "real" and task.options["layout"] == "raw"
    assert {k: len(v) for k, v in task.splits.items()} == cached.counts
    mag = task.spec.modality("magnitude")
    assert mag.scale == cached.mag_ref and dict(mag.encoder_options) == {"pool": 10}
    assert SHIFT in task.shifts and len(task.shifts[SHIFT]) == cached.counts["test"]


def test_a_data_root_without_fastmri_or_without_its_cache_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"fastmri: not found; the data root \(data_root .*\) must hold fastmri/"):
        i2m2bench.build_task("fastmri", data_root=str(tmp_path))
    (tmp_path / "fastmri").mkdir()
    with pytest.raises(DataError, match="prepare fastmri"):
        i2m2bench.build_task("fastmri", data_root=str(tmp_path))
    with pytest.raises(DataError, match=r"fastmri: the real data need a data root \(--data-root DIR"):
        i2m2bench.build_task("fastmri", source="real")
    with pytest.raises(ValueError, match="verify must be one of 'quick', 'full'"):
        i2m2bench.build_task("fastmri", verify="fast")


def test_prepare_command_names_a_missing_folder(tmp_path, capsys):
    assert main(["prepare", "fastmri", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'fastmri'}: not found" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_smoke_suite_runs_every_method_and_writes_a_board(tmp_path):
    run = i2m2bench.run_suite(["gin/fastmri_smoke.gin"], out=tmp_path / "runs",
                              results_dir=tmp_path / "lb", progress=False, log=lambda s: None)
    assert not run.failures
    units = {s["unit"] for s in run.summary}
    assert units == {f"{m}/seed0" for m in ("magnitude_only", "phase_only", "early_fusion",
                                            "intra_only", "i2m2", "i2m2_ensemble")}
    md = (tmp_path / "lb" / "fastmri_smoke-embedded-fastmri.md").read_text()
    assert "EMBEDDED" in md and "auroc/acl" in md and f"shift:{SHIFT}" in md
    assert f"shift:{SHIFT} op_sensitivity" in md and "test op_balanced_accuracy" in md
    for kind in ("complex_noise", "rician", "ghosting", "spike", "bias_field", "motion"):
        assert f"#### Curve `perturb:complex:{kind}`" in md
    curve = md.split("#### Curve `perturb:complex:ghosting`")[1].split("####")[0]
    assert "| level 0 (test) | 0.1 | 0.2 | 0.4 | 0.6 | 0.8 | 1 |" in " ".join(curve.split())
    assert "class_weights=balanced" in md


def test_the_embedded_schedule_narrows_the_networks_and_real_data_keep_the_official_ones():
    from i2m2bench.harness.config import read_method
    from i2m2bench.harness.ginfiles import parse_gin

    parse_gin(["gin/fastmri.gin"])
    real, real_train = read_method("i2m2", embedded=False)
    emb, emb_train = read_method("i2m2", embedded=True)
    assert real.options["intra_options"]["width"] == 64 and real.options["inter_options"]["width"] == 64
    assert emb.options["intra_options"]["width"] == 8 and emb.options["inter_options"]["width"] == 8
    assert emb.options["inter"] == "early_fusion"  # the other options stay
    assert (real_train.lr, real_train.epochs, emb_train.lr) == (1e-6, 200, 1e-3)
    assert real_train.class_weights == emb_train.class_weights == "balanced"
    mag, _ = read_method("magnitude_only", embedded=True)
    assert mag.options == {"modality": "magnitude", "encoder": "preact_resnet18_gn", "width": 8,
                           "hidden": 0}


def test_embedded_schedule_options_must_be_a_dict():
    from i2m2bench.harness.config import EmbeddedSchedule, SettingError

    with pytest.raises(SettingError, match="embedded_schedule.options must be a dict"):
        EmbeddedSchedule(options=["width", 8])


def test_the_positive_count_sampler_draws_every_count_equally_often():
    from i2m2bench.harness.training import positive_count_weights
    from i2m2bench.types import TaskSpec

    spec = TaskSpec("t", "1", (), "multilabel", 4, metric="auroc")
    # counts of positive labels: 0 (x6), 1 (x3), 3 (x1) -- no sample with 2
    y = torch.zeros((10, 4))
    y[6:9, 0] = 1
    y[9, :3] = 1
    w = positive_count_weights(y, spec)
    assert w.dtype == torch.float64
    assert torch.equal(w, torch.tensor([1 / 6] * 6 + [1 / 3] * 3 + [1.0], dtype=torch.float64))
    draws = torch.multinomial(w, 30_000, replacement=True, generator=torch.Generator().manual_seed(0))
    share = torch.bincount((y[draws] > 0.5).sum(1), minlength=4).double() / 30_000
    assert torch.allclose(share[[0, 1, 3]], torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)
    with pytest.raises(ValueError, match="applies to multilabel tasks"):
        positive_count_weights(y, TaskSpec("m", "1", (), "multiclass", 4))


def test_real_fastmri_follows_the_official_sampler_and_the_phantom_keeps_its_schedule():
    from i2m2bench.harness.config import SettingError, TrainConfig, read_method
    from i2m2bench.harness.ginfiles import parse_gin

    parse_gin(["gin/fastmri.gin"])
    for method in ("magnitude_only", "i2m2"):
        assert read_method(method, embedded=False)[1].sampler == "positive_count"
        assert read_method(method, embedded=True)[1].sampler is None
    with pytest.raises(SettingError, match="train.sampler must be one of None, 'positive_count'"):
        TrainConfig(sampler="weighted")


def test_the_sampler_changes_what_an_epoch_draws(embedded):
    from i2m2bench.fusion.base import build_fusion
    from i2m2bench.harness.config import TrainConfig
    from i2m2bench.harness.training import train_model

    def first_batch(sampler):
        seen = []
        split = embedded.splits["train"]
        original = type(split).batches

        def spy(self, spec, batch_size, order=None, shard=None):
            if order is not None:  # the training pass (validation reads rows in turn)
                seen.append(order.clone())
            return original(self, spec, batch_size, order, shard)

        model = build_fusion("unimodal", embedded.spec, modality="magnitude", width=8, hidden=0)
        cfg = TrainConfig(epochs=1, batch_size=16, sampler=sampler, patience=None)
        type(split).batches = spy
        try:
            train_model(model, split, embedded.splits["val"], embedded.spec, cfg,
                        torch.Generator().manual_seed(0), progress=False)
        finally:
            type(split).batches = original
        return seen[0]

    plain, weighted = first_batch(None), first_batch("positive_count")
    assert sorted(plain.tolist()) == list(range(len(embedded.splits["train"])))  # a permutation
    assert len(weighted) == len(plain) and len(set(weighted.tolist())) < len(plain)  # with replacement


def test_real_imag_reads_the_same_image_as_its_real_and_imaginary_parts(embedded):
    parts = i2m2bench.build_task("fastmri", source="embedded", patients=20, slices=6, size=16,
                                 modalities="real_imag")
    spec = parts.spec
    assert spec.modality_names == ("real", "imag") and spec.complex_image == ("cartesian", "real", "imag")
    assert spec.labels == embedded.spec.labels and spec.metrics == embedded.spec.metrics
    assert parts.options["modalities"] == "real_imag" and parts.options["checksum"] == embedded.options["checksum"]
    idx = torch.arange(7)
    for name in ("train", "test"):
        a = parts.splits[name].batch(idx, spec)
        b = embedded.splits[name].batch(idx, embedded.spec)
        z = torch.polar(b.inputs["magnitude"], b.inputs["phase"])
        assert torch.equal(a.inputs["real"], z.real) and torch.equal(a.inputs["imag"], z.imag)
        assert torch.equal(a.target, b.target)
    shift = parts.shifts[SHIFT].batch(idx, spec)
    assert not torch.equal(shift.inputs["real"], parts.splits["test"].batch(idx, spec).inputs["real"])
    # the mean the imputation reads: over every training sample
    every = torch.cat([b.inputs["imag"] for b in parts.splits["train"].batches(spec, 5)])
    assert torch.allclose(parts.splits["train"].mean("imag"), every.double().mean(0))
    with pytest.raises(ValueError, match="modalities must be one of 'magnitude_phase', 'real_imag'"):
        i2m2bench.build_task("fastmri", source="embedded", modalities="mag_phase")


@pytest.mark.slow
def test_the_real_imag_smoke_suite_runs_every_method_and_writes_a_board(tmp_path):
    run = i2m2bench.run_suite(["gin/fastmri_real_imag_smoke.gin"], out=tmp_path / "runs",
                              results_dir=tmp_path / "lb", progress=False, log=lambda s: None)
    assert not run.failures
    assert {s["unit"] for s in run.summary} == {f"{m}/seed0" for m in (
        "real_only", "imag_only", "early_fusion", "intra_only", "i2m2", "i2m2_ensemble")}
    md = (tmp_path / "lb" / "fastmri_real_imag_smoke-embedded-fastmri.md").read_text()
    assert "#### Curve `perturb:complex:spike`" in md and "missing:imag" in md


@pytest.mark.slow
def test_a_corruption_added_later_is_scored_at_the_validation_operating_point(tmp_path):
    """A finished unit evaluated on a protocol added since (no retraining) reads the validation
    predictions of its checkpoint for the operating-point metrics, and every stored score is
    recomputed from the published predictions."""
    from i2m2bench.harness.publish import check_boards
    from i2m2bench.harness.store import quiet, read_rows

    few = ["suite.protocols = ['test']"]
    kw = dict(out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False,
              log=lambda s: None, methods=["magnitude_only"])
    first = i2m2bench.run_suite(["gin/fastmri_smoke.gin"], few, **kw)
    assert not first.failures and {i.action for i in first.plan} == {"train"}
    more = ["suite.protocols = ['test', 'perturb:complex:spike@0.5']"]
    again = i2m2bench.run_suite(["gin/fastmri_smoke.gin"], more, **kw)
    assert {i.action for i in again.plan} == {"evaluate"}  # from the checkpoint
    rows = read_rows(tmp_path / "lb" / "results" / "fastmri_smoke-embedded-fastmri.jsonl", report=quiet)
    scored = {(r["protocol"], r["metric"]) for r in rows}
    for metric in ("op_sensitivity", "op_specificity", "op_balanced_accuracy"):
        assert ("perturb:complex:spike@0.5", metric) in scored and ("test", metric) in scored
    stale, verification = check_boards(tmp_path / "lb")
    assert stale == [] and verification.problems == [] and verification.verified > 0
