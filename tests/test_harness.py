"""The harness on the `toy` task: determinism, caching of pretrained experts, resume, errors."""
from pathlib import Path

import pytest
import torch

import i2m2bench
from i2m2bench.harness.runner import ConfigError, run_suite
from i2m2bench.harness.store import read_rows
from i2m2bench.harness.training import TrainConfig, predict, train_model
from i2m2bench.harness.seeding import seed_everything

TOY = str(Path(__file__).resolve().parents[1] / "gin" / "toy_smoke.gin")


def _run(tmp_path, sub="a", **kw):
    kw.setdefault("progress", False)
    return run_suite([TOY], kw.pop("bindings", []), out=tmp_path / sub / "runs",
                     results_dir=tmp_path / sub / "lb", **kw)


def _values(run):
    return sorted((r["method"], r["seed"], r["protocol"], r["value"]) for r in read_rows(run.results_path)
                  if r["protocol"] != "train")


def test_same_seed_twice_gives_identical_metrics_and_weights(tmp_path):
    a, b = _run(tmp_path, "a", seeds=[0]), _run(tmp_path, "b", seeds=[0])
    assert _values(a) == _values(b) and len(_values(a)) == 6 * 3  # 6 methods x (val, test, shift)
    for m in ("a_only", "i2m2"):
        (pa,) = (tmp_path / "a" / "runs").rglob(f"{m}/*/seed0/model.pt")
        (pb,) = (tmp_path / "b" / "runs").rglob(f"{m}/*/seed0/model.pt")
        sa, sb = torch.load(pa, weights_only=True), torch.load(pb, weights_only=True)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_different_seeds_differ(tmp_path):
    a = _run(tmp_path, "a", seeds=[0], methods=["a_only"])
    b = _run(tmp_path, "b", seeds=[1], methods=["a_only"])
    assert [v for *_, v in _values(a)] != [v for *_, v in _values(b)]


def test_pretrained_experts_are_trained_once_and_reused(tmp_path, check_experts_loaded):
    first = _run(tmp_path, seeds=[0], methods=["i2m2"])
    assert [s["unit"] for s in first.summary] == ["a_only/seed0", "b_only/seed0", "late_fusion/seed0",
                                                 "i2m2/seed0"]
    # I2M2's experts start from a_only's, b_only's and late_fusion's checkpoints
    check_experts_loaded(first, "i2m2", tmp_path / "a" / "runs")
    # a second run of the full suite trains only what is missing
    second = _run(tmp_path, seeds=[0])
    assert sorted(s["unit"] for s in second.summary) == ["early_fusion/seed0", "intra_only/seed0"]
    third = _run(tmp_path, seeds=[0])
    assert third.summary == []


def test_changed_config_never_reuses_a_unit(tmp_path):
    _run(tmp_path, seeds=[0], methods=["a_only"])
    again = _run(tmp_path, seeds=[0], methods=["a_only"], bindings=["a_only/train.lr = 0.01"])
    assert [s["unit"] for s in again.summary] == ["a_only/seed0"]
    hashes = {r["unit_hash"] for r in read_rows(again.results_path)}
    assert len(hashes) == 2


def test_leaderboard_written_with_every_method(tmp_path):
    run = _run(tmp_path, seeds=[0, 1])
    md = (tmp_path / "a" / "lb" / "toy_smoke-embedded-toy.md").read_text()
    for m in ("a_only", "b_only", "intra_only", "late_fusion", "early_fusion", "i2m2"):
        assert f"(`{m}`)" in md
    rows = read_rows(run.results_path)
    assert {r["seed"] for r in rows} == {0, 1}
    for key in ("git_commit", "date", "device", "torch_version", "config_hash", "unit_hash",
                "data_source", "dataset_version"):
        assert all(r.get(key) not in (None, "") for r in rows), key


def test_unknown_method_and_stray_scope(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'i2m3'.*Did you mean 'i2m2'"):
        _run(tmp_path, seeds=[0], methods=["i2m3"])
    with pytest.raises(ConfigError, match=r"gin scope 'a_onyl' names no method.*did you mean 'a_only'.*--gin-param"):
        _run(tmp_path, seeds=[0], bindings=["a_onyl/train.lr = 0.1"])


def test_unknown_fusion_name_in_gin(tmp_path):
    with pytest.raises(KeyError, match="unknown fusion 'late_fusoin'.*Did you mean 'late_fusion'"):
        _run(tmp_path, seeds=[0], methods=["late_fusion"],
             bindings=["late_fusion/method.fusion = 'late_fusoin'"])


def test_predictions_do_not_depend_on_batch_composition():
    """Evaluation runs with BatchNorm in eval mode (the official code evaluated in train mode)."""
    task = i2m2bench.build_task("toy")
    model = i2m2bench.build_fusion("early_fusion", task.spec)
    model.train()
    with torch.no_grad():  # move BN statistics away from their init
        model(task.splits["train"].batch(torch.arange(64), task.spec))
    p1 = predict(model, task.splits["test"], task.spec, batch_size=7)
    p2 = predict(model, task.splits["test"], task.spec, batch_size=256)
    assert torch.allclose(p1, p2, atol=1e-6)
    assert model.training  # restored


def test_nan_loss_is_reported_with_its_step():
    task = i2m2bench.build_task("toy")
    model = i2m2bench.build_fusion("late_fusion", task.spec)
    cfg = TrainConfig(lr=1e30, epochs=3, batch_size=64, grad_clip=None)
    with pytest.raises(RuntimeError, match=r"loss is (nan|inf) at epoch \d+, step \d+"):
        train_model(model, task.splits["train"], task.splits["val"], task.spec, cfg,
                    seed_everything(0), desc="toy", progress=False)


def test_train_config_validation():
    with pytest.raises(ValueError, match="train.optimizer must be"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="train.lr must be > 0"):
        TrainConfig(lr=0)
