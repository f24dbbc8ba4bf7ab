"""Every problem type end to end: losses by hand, selection on a chosen metric, the toy suites
through ``run_suite`` (board, records, per-sample predictions), and the errors that name the
binding."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import i2m2bench
from i2m2bench.data.base import DATASETS
from i2m2bench.fusion.base import resolve_loss
from i2m2bench.harness.config import SettingError, TrainConfig
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.seeding import seed_everything
from i2m2bench.harness.store import read_rows
from i2m2bench.harness.training import balanced_class_weights, check_train_settings, train_model
from i2m2bench.metrics import METRICS, Metric, compute
from i2m2bench.poe import poe_nll
from i2m2bench.predictions import load_predictions
from i2m2bench.testing import tiny_spec
from i2m2bench.types import Batch, Split, Task

GIN = Path(i2m2bench.__file__).parent / "gin"
TINY = ["suite.dataset_options = {'n_train': 96, 'n_eval': 48}",
        "embedded_schedule.overrides = {'epochs': 2, 'patience': 2, 'batch_size': 32}"]

# Two experts' logits on 2 samples x 3 classes (labels), and targets of each problem type.
Z1 = [[0.5, -1.0, 2.0], [0.0, 1.5, -0.5]]
Z2 = [[1.0, 0.25, -0.75], [-2.0, 0.5, 1.0]]
MULTILABEL = [[1, 0, 1], [0, 1, 0]]
SOFT = [[0.0, 0.3, 1.0], [0.9, 0.6, 0.0]]


def _loss(problem, targets, kind=None, fusion="intra_only", logits=None):
    spec = tiny_spec(3, problem)
    model = i2m2bench.build_fusion(fusion, spec, **({"modality": "a"} if fusion == "unimodal" else {}))
    logits = logits or {"a": torch.tensor(Z1), "b": torch.tensor(Z2)}
    batch = Batch({m.name: torch.zeros(2, *m.shape) for m in spec.modalities}, torch.tensor(targets))
    return float(model.loss(logits, batch, kind=kind))


def _log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _bce(logit, t):  # binary cross-entropy of a logit, by hand
    p = 1 / (1 + math.exp(-logit))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _poe_log_probs():  # the categorical product of the two experts, by hand
    return [_log_softmax([a + b for a, b in zip(r1, r2)]) for r1, r2 in zip(Z1, Z2)]


# ------------------------------------------------------------------------------ losses by hand
def test_multilabel_loss_is_the_bernoulli_poe_bce_by_hand():
    want = sum(_bce(a + b, t) for r1, r2, rt in zip(Z1, Z2, MULTILABEL)
               for a, b, t in zip(r1, r2, rt)) / 6  # logit of the product: z1 + z2
    assert _loss("multilabel", [[float(t) for t in r] for r in MULTILABEL]) == pytest.approx(want, rel=1e-6)
    assert resolve_loss("auto", "multilabel") == "bce"


def test_soft_ce_by_hand():
    lp = _poe_log_probs()
    want = -sum(t * v for rt, rl in zip(SOFT, lp) for t, v in zip(rt, rl)) / 2
    assert _loss("soft-score", SOFT, "soft_ce") == pytest.approx(want, rel=1e-6)


def test_soft_score_bce_is_the_official_vqa_loss_by_hand():
    # C x mean BCE-with-logits of the product's log-probabilities (I2M2 and intra-only)...
    lp = _poe_log_probs()
    want = 3 * sum(_bce(v, t) for rt, rl in zip(SOFT, lp) for t, v in zip(rt, rl)) / 6
    assert _loss("soft-score", SOFT, "bce") == pytest.approx(want, rel=1e-6)
    assert _loss("soft-score", SOFT) == pytest.approx(want, rel=1e-6)  # the default ('auto')
    # ... and of a single expert's raw logits (the official unimodal / inter-only baselines)
    single = 3 * sum(_bce(v, t) for rt, rz in zip(SOFT, Z1) for t, v in zip(rt, rz)) / 6
    got = _loss("soft-score", SOFT, "bce", fusion="unimodal", logits={"a": torch.tensor(Z1)})
    assert got == pytest.approx(single, rel=1e-6)


def test_multiclass_loss_is_unchanged_bit_for_bit():
    spec = tiny_spec(3)
    model = i2m2bench.build_fusion("intra_only", spec)
    zs = [torch.tensor(Z1), torch.tensor(Z2)]
    batch = Batch({m.name: torch.zeros(2, *m.shape) for m in spec.modalities}, torch.tensor([2, 1]))
    assert torch.equal(model.loss({"a": zs[0], "b": zs[1]}, batch), poe_nll(zs, batch.target))


def test_a_loss_that_does_not_apply_is_refused():
    with pytest.raises(ValueError, match="loss 'soft_ce' does not apply to multiclass tasks"):
        resolve_loss("soft_ce", "multiclass")
    with pytest.raises(ValueError, match="train.loss must be one of 'auto', 'nll', 'bce', 'soft_ce'"):
        TrainConfig(loss="mse")


# ------------------------------------------------------------------------------ settings refused
@pytest.mark.parametrize("binding,message", [
    ("a_only/train.select_on = 'auroc'",
     r"a_only/train.select_on = 'auroc': task 'toy' declares the metrics accuracy; select on one"),
    ("train.loss = 'soft_ce'", r"a_only/train.loss = 'soft_ce': loss 'soft_ce' does not apply to "
                               r"multiclass tasks"),
    ("b_only/train.loss = 'bce'", r"b_only/train.loss = 'bce'"),
])
def test_bad_loss_or_selection_metric_is_refused_naming_the_binding(tmp_path, binding, message):
    with pytest.raises(ConfigError, match=message):
        run_suite([GIN / "toy_smoke.gin"], [binding], seeds=[0], out=tmp_path / "runs",
                  results_dir=tmp_path / "lb", progress=False, dry_run=True)


def test_a_selection_metric_undefined_on_val_is_refused():
    task = i2m2bench.build_task("toy_multilabel", n_train=16, n_eval=16)
    val = task.splits["val"]
    const = Split(val.inputs, torch.ones_like(val.target), "val")  # every label one class
    task = Task(task.spec, {**task.splits, "val": const}, task.shifts, task.options)
    with pytest.raises(ConfigError, match=r"i2m2: the primary metric 'auroc' \(train.select_on\) "
                                          "is undefined on the validation split"):
        check_train_settings(TrainConfig(), task, "i2m2")
    check_train_settings(TrainConfig(select_on="accuracy"), task, "i2m2")  # defined: fine


# ------------------------------------------------------------------------------ selection
def test_select_on_a_declared_metric_drives_the_checkpoint():
    task = i2m2bench.build_task("toy_multilabel", n_train=128, n_eval=64)
    model = i2m2bench.build_fusion("late_fusion", task.spec, width=8)
    cfg = TrainConfig(lr=0.2, epochs=4, batch_size=32, patience=10, select_on="accuracy")
    res = train_model(model, task.splits["train"], task.splits["val"], task.spec, cfg,
                      seed_everything(0), progress=False)
    vals = [h["val"] for h in res.history]
    assert res.best_epoch == int(np.argmax(vals)) and res.best_val == max(vals)
    assert list(res.val_scores) == ["auroc", "auprc", "accuracy"] and res.val_scores["accuracy"] == res.best_val
    assert res.val_scores["auroc"] == compute("auroc", res.val_pred, task.splits["val"].target, "multilabel")


@pytest.fixture
def error_rate():
    """A lower-is-better metric (1 - accuracy), registered for one test."""
    METRICS.add("error_rate", Metric("error_rate", lambda p, t, problem, g=None: 1.0 - float(
        np.mean(p.argmax(1) == t)), False, ("multiclass",)), origin="tests.error_rate")
    yield "error_rate"
    METRICS.remove("error_rate")


def test_a_lower_is_better_metric_selects_the_minimum(error_rate):
    task = i2m2bench.build_task("toy", n_train=128, n_eval=64)
    spec = dataclasses.replace(task.spec, metrics=(error_rate,))
    model = i2m2bench.build_fusion("early_fusion", spec, width=8)
    cfg = TrainConfig(lr=0.3, epochs=5, batch_size=32, patience=10, select_on=error_rate)
    res = train_model(model, task.splits["train"], task.splits["val"], spec, cfg,
                      seed_everything(0), progress=False)
    vals = [h["val"] for h in res.history]
    assert len(set(vals)) > 1 and res.best_epoch == int(np.argmin(vals)) and res.best_val == min(vals)
    assert res.val_scores == {"accuracy": 1.0 - res.best_val, "error_rate": res.best_val}


# ------------------------------------------------------------------------------ end to end
def _check_predictions(run, protocols):
    """predictions.npz of every unit: shapes, and each stored score recomputed from it exactly."""
    spec, task = run.task.spec, run.task
    metrics = [m for m in (spec.metric, *spec.metrics)]
    rows = [r for r in read_rows(run.results_path) if r["protocol"] != "train"]
    files = sorted(run.out.rglob("predictions.npz"))
    assert len(files) == len({(r["method"], r["seed"]) for r in rows})
    for path in files:
        p = load_predictions(path)
        assert (p.problem, p.metrics, p.labels) == (spec.problem, tuple(metrics), spec.labels)
        assert list(p.pred) == ["val", *protocols]
        for key, pred in p.pred.items():
            split = p.split[key]
            n = len(task.splits[split] if split in ("val", "test") else task.shifts[split.split(":", 1)[1]])
            assert pred.shape == (n, spec.num_classes) and pred.dtype == np.float32
            assert p.target[split].shape[0] == n
        unit_hash, seed = path.parts[-3], int(path.parts[-2].removeprefix("seed"))
        for r in (r for r in rows if r["unit_hash"] == unit_hash and r["seed"] == seed):
            split = p.split[r["protocol"]]
            again = compute(r["metric"], p.pred[r["protocol"]], p.target[split], p.problem,
                            p.groups.get(split), p.labels)
            assert again == r["value"] or (math.isnan(again) and math.isnan(r["value"])), r


@pytest.mark.slow
@pytest.mark.parametrize("suite,protocols", [
    ("toy_multilabel_smoke", ["test", "shift:noisier", "missing:a", "missing:b"]),
    ("toy_soft_smoke", ["test", "shift:noisier"]),
])
def test_toy_suite_end_to_end(tmp_path, suite, protocols):
    run = run_suite([GIN / f"{suite}.gin"], TINY, seeds=[0], out=tmp_path / "runs",
                    results_dir=tmp_path / "lb", progress=False)
    spec = run.task.spec
    declared = [spec.metric, *spec.metrics]
    rows = [r for r in read_rows(run.results_path) if r["protocol"] != "train"]
    methods = ["a_only", "b_only", "intra_only", "late_fusion", "i2m2"]
    # one stored score per declared metric per protocol (and val), with the metric's direction
    for m in methods:
        got = sorted((r["protocol"], r["metric"]) for r in rows if r["method"] == m)
        assert got == sorted((p, mt) for p in ["val", *protocols] for mt in declared)
    assert all(r["higher_is_better"] is True for r in rows)
    md = (tmp_path / "lb" / f"{run.board}.md").read_text()
    for p in ("test", "shift:noisier", "val"):
        for mt in declared:
            assert f"{p} {mt} (%) ↑" in md
    assert all(f"(`{m}`)" in md for m in methods)
    _check_predictions(run, protocols)


@pytest.mark.slow
def test_new_protocols_are_added_to_the_predictions_file(tmp_path):
    kw = dict(seeds=[0], methods=["a_only"], out=tmp_path / "runs", results_dir=tmp_path / "lb",
              progress=False)
    run_suite([GIN / "toy_multilabel_smoke.gin"], TINY + ["suite.protocols = ['test']"], **kw)
    (path,) = (tmp_path / "runs").rglob("predictions.npz")
    before = load_predictions(path)
    assert list(before.pred) == ["val", "test"]
    run = run_suite([GIN / "toy_multilabel_smoke.gin"], TINY + ["suite.protocols = ['test', 'missing:*']"], **kw)
    assert [s["unit"] for s in run.summary] == ["a_only/seed0"]  # evaluated, not retrained
    after = load_predictions(path)
    assert list(after.pred) == ["val", "test", "missing:a", "missing:b"]
    assert np.array_equal(after.pred["test"], before.pred["test"])
    _check_predictions(run, ["test", "missing:a", "missing:b"])


# ------------------------------------------------------------------------------ sample groups
def _grouped(drop_from: str | None = None):
    def build(n_train: int = 96, n_eval: int = 48) -> Task:
        task = i2m2bench.build_task("toy", n_train=n_train, n_eval=n_eval)
        spec = dataclasses.replace(task.spec, name="toy_grouped", metrics=("consistency",))

        def grouped(s):  # groups of 3 consecutive samples (NLVR2: one sentence, several images)
            groups = None if s.name == drop_from else torch.arange(len(s)) // 3
            return Split(s.inputs, s.target, s.name, groups)
        return Task(spec, {k: grouped(s) for k, s in task.splits.items()},
                    {k: grouped(s) for k, s in task.shifts.items()}, task.options)
    return build


@pytest.fixture
def grouped_dataset():
    DATASETS.add("toy_grouped", _grouped(), origin="tests.toy_grouped")
    DATASETS.add("toy_grouped_broken", _grouped("noisier"), origin="tests.toy_grouped_broken")
    yield
    DATASETS.remove("toy_grouped")
    DATASETS.remove("toy_grouped_broken")


@pytest.mark.slow
def test_consistency_over_sample_groups_end_to_end(tmp_path, grouped_dataset):
    bindings = ["suite.dataset = 'toy_grouped'", "suite.dataset_options = {}",
                "embedded_schedule.overrides = {'epochs': 1, 'patience': 1}"]
    run = run_suite([GIN / "toy_smoke.gin"], bindings, seeds=[0], methods=["a_only", "late_fusion"],
                    out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False)
    rows = [r for r in read_rows(run.results_path) if r["protocol"] == "test"]
    assert sorted(r["metric"] for r in rows) == ["accuracy", "accuracy", "consistency", "consistency"]
    for r in rows:
        if r["metric"] == "consistency":
            acc = next(x["value"] for x in rows if x["method"] == r["method"] and x["metric"] == "accuracy")
            assert r["value"] <= acc  # a group counts only when all of its samples are right
    md = (tmp_path / "lb" / f"{run.board}.md").read_text()
    assert "test consistency (%) ↑" in md
    _check_predictions(run, ["test", "shift:noisier"])
    (path,) = {p for p in run.out.rglob("predictions.npz") if "a_only" in p.parts}
    assert np.array_equal(load_predictions(path).groups["test"], np.arange(48) // 3)
    with pytest.raises(ConfigError, match="metric 'consistency', which reads sample groups, but "
                                          "its split 'noisier' has none"):
        run_suite([GIN / "toy_smoke.gin"], ["suite.dataset = 'toy_grouped_broken'",
                                            "suite.dataset_options = {}"], seeds=[0],
                  out=tmp_path / "r2", results_dir=tmp_path / "l2", progress=False, dry_run=True)


# ------------------------------------------------------------------------------ class weights
def test_balanced_class_weights_follow_the_label_frequencies():
    task = i2m2bench.build_task("toy_multilabel", n_train=16, n_eval=16)
    target = torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]])  # label 0: 1 of 4 positive; label 1: 2
    spec = dataclasses.replace(task.spec, num_classes=2, labels=("a", "b"))
    w = balanced_class_weights(target, spec)
    assert torch.allclose(w, torch.tensor([[4 / 6, 4 / 2], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"label\(s\) b hold one class only in the 4 training"):
        balanced_class_weights(torch.tensor([[1, 0], [0, 0], [0, 0], [1, 0]]), spec)
    with pytest.raises(ValueError, match="class weights apply to multilabel tasks"):
        balanced_class_weights(target, i2m2bench.build_task("toy", n_train=8, n_eval=8).spec)


def test_weighted_loss_is_the_official_weighted_two_way_cross_entropy_summed_over_labels():
    """softmax over the two logits (0, z) is sigmoid(z): the weighted Bernoulli loss equals the
    official per-head ``nn.CrossEntropyLoss(weight=w_l)`` (a weighted mean), summed over labels."""
    task = i2m2bench.build_task("toy_multilabel", n_train=64, n_eval=16)
    model = i2m2bench.build_fusion("i2m2", task.spec, inter="late_fusion",
                                   inter_options={"width": 8}, intra_options={"width": 8})
    batch = task.splits["train"].batch(torch.arange(32), task.spec)
    model.class_weights = balanced_class_weights(task.splits["train"].target, task.spec)
    logits = model(batch)
    got = model.loss(logits, batch)
    z = model.log_probs(logits, batch)  # (B, L) Bernoulli logits of the product
    want = sum(torch.nn.functional.cross_entropy(
        torch.stack([torch.zeros_like(z[:, l]), z[:, l]], 1), batch.target[:, l].long(),
        weight=model.class_weights[l]) for l in range(z.shape[1]))
    assert torch.allclose(got, want, atol=1e-6)
    model.class_weights = None
    assert not torch.allclose(model.loss(logits, batch), want)  # unweighted: another value


def test_class_weights_on_a_multiclass_task_are_refused_naming_the_binding(tmp_path):
    with pytest.raises(ConfigError, match=r"a_only/train.class_weights = 'balanced': class weights "
                                          "apply to multilabel tasks"):
        run_suite([GIN / "toy_smoke.gin"], ["a_only/train.class_weights = 'balanced'"], seeds=[0],
                  out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False, dry_run=True)
    with pytest.raises(SettingError, match="train.class_weights must be one of None, 'balanced'"):
        TrainConfig(class_weights="inverse")
