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
