"""The official-behaviour switches (issue 29, item 6): each reproduces what the official code
does, changes only the models it applies to, and enters only their unit hashes; the official
scorers; the gin/official suites; a board's Official behaviour section."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2m2bench import metrics as M
from i2m2bench import metrics_official as MO
from i2m2bench.data import build_task
from i2m2bench.fusion.base import build_fusion
from i2m2bench.harness import official
from i2m2bench.harness.config import TrainConfig
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.planner import plan_suite
from i2m2bench.harness.training import predict, train_model
from i2m2bench.predictions import Predictions
from i2m2bench.reporting.official import compare, official_board_name, official_section
from i2m2bench.reporting.significance import Evidence, seed_evidence

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def avmnist():
    return build_task("avmnist", source="embedded", max_train=60, max_eval=30)


# ------------------------------------------------------------------ the official scorers
def test_vqa_vs_score_is_min_n_over_three_of_the_annotator_count():
    """I2M2's target table gives min(1, 0.3 n) (write_vqa.py L13-23); VQA-VS's scorer min(n/3, 1)
    (comput_score.py L30-36): read back from the targets for every count, float16 included."""
    for n in range(11):
        i2m2 = min(1.0, 0.3 * n)
        for stored in (np.float32(i2m2), np.float16(i2m2)):
            assert MO.vqa_vs_scores(np.array([stored]))[0] == pytest.approx(min(n / 3, 1.0), abs=1e-12)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, size=(50, 7))
    target = np.minimum(1.0, 0.3 * counts).astype(np.float16)
    pred = rng.normal(size=(50, 7))
    best = pred.argmax(1)
    expect = np.mean(np.minimum(counts[np.arange(50), best] / 3, 1.0))
    assert M.compute("vqa_vs_score", pred, target, "soft-score") == pytest.approx(expect, abs=1e-12)
    assert M.compute("vqa_vs_score", pred, target, "soft-score") >= M.compute(
        "vqa_score", pred, target, "soft-score")  # n/3 >= 0.3 n for every count


def _multilabel(n, seed, labels=3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(np.int64)
    return rng.normal(size=(n, labels)) + 1.2 * y, y


@pytest.mark.parametrize("kind", ["sensitivity", "specificity", "balanced_accuracy"])
def test_the_scored_operating_point_is_chosen_on_the_split_scored(kind):
    (pv, yv), (pt, yt) = _multilabel(80, 1), _multilabel(70, 2)
    scored = M.compute(f"op_{kind}_scored", pt, yt, "multilabel")
    assert scored == M.compute(f"op_{kind}", pt, yt, "multilabel", reference=(pt, yt))
    validated = M.compute(f"op_{kind}", pt, yt, "multilabel", reference=(pv, yv))
    assert scored != validated  # the two choices differ on these data
    if kind == "sensitivity":  # the test set's own threshold keeps its FNR below 10% per label
        per = M.per_label_values(f"op_{kind}_scored", pt, yt, "multilabel")
        assert np.all(per > 0.9)


@pytest.mark.parametrize("kind", ["sensitivity", "balanced_accuracy"])
def test_the_scored_operating_point_resamples_with_its_threshold_held(kind):
    pt, yt = _multilabel(70, 2)
    pred = Predictions("multilabel", ("auroc",), ("a", "b", "c"))
    pred.add("test", "test", pt, yt)
    ev = seed_evidence(pred, "test", f"op_{kind}_scored")
    assert ev is not None
    idx = np.random.default_rng(3).integers(0, 70, size=(20, 70))
    slow = [M.compute(f"op_{kind}", pt[i], yt[i], "multilabel", reference=(pt, yt)) for i in idx]
    np.testing.assert_allclose(ev.stat.batch(idx), slow, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the model switches
def _train(model, task, epochs=1):
    cfg = TrainConfig(epochs=epochs, batch_size=20, lr=0.1, optimizer="sgd", patience=None)
    train_model(model, task.splits["train"], task.splits["val"], task.spec, cfg,
                torch.Generator().manual_seed(0), progress=False)


def test_lrtf_factors_untrained_freezes_the_factors_only(avmnist):
    spec = avmnist.spec
    torch.manual_seed(0)
    model = build_fusion("late_fusion", spec, operator="lrtf", rank=4, fused_dim=8, width=3)
    assert official.applicable(model, ["lrtf_factors_untrained"]) == ("lrtf_factors_untrained",)
    official.prepare(model, ["lrtf_factors_untrained"])
    fuse = model.fuse
    factors = [f.detach().clone() for f in fuse.factors]
    rank_w, head_w = fuse.rank_weights.detach().clone(), model.head[0].weight.detach().clone()
    _train(model, avmnist)
    assert all(torch.equal(a, b) for a, b in zip(factors, fuse.factors))  # never trained
    assert not torch.equal(rank_w, fuse.rank_weights)  # the rest trains
    assert not torch.equal(head_w, model.head[0].weight)
    concat = build_fusion("late_fusion", spec, operator="concat", width=3)
    assert official.applicable(concat, ["lrtf_factors_untrained"]) == ()
    i2m2 = build_fusion("i2m2", spec, inter="late_fusion", intra_options={"width": 3},
                        inter_options={"operator": "lrtf", "rank": 4, "fused_dim": 8, "width": 3})
    assert official.applicable(i2m2, ["lrtf_factors_untrained"]) == ("lrtf_factors_untrained",)


def test_intra_mixture_test_is_the_official_log_mean_softmax(avmnist):
    spec = avmnist.spec
    torch.manual_seed(0)
    model = build_fusion("intra_only", spec, intra_options={"width": 3}).eval()
    split = avmnist.splits["test"]
    batch = split.batch(torch.arange(12), spec)
    logits = model(batch)
    z1, z2 = logits["image"], logits["audio"]
    official_l244 = torch.log((torch.softmax(z1, dim=-1) + torch.softmax(z2, dim=-1)) / 2.)
    poe = model.log_probs(logits, batch)
    with official.testing(model, ["intra_mixture_test"]):
        mixed = model.log_probs(logits, batch)
    torch.testing.assert_close(mixed, official_l244, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mixed, poe)
    torch.testing.assert_close(model.log_probs(logits, batch), poe)  # restored on exit
    # an absent modality leaves the other expert alone: its own distribution
    present = {"image": torch.arange(12) % 2 == 0, "audio": torch.ones(12, dtype=torch.bool)}
    masked = dataclasses.replace(batch, present=present)
    with official.testing(model, ["intra_mixture_test"]):
        got = model.log_probs(model(masked), masked)
    odd = ~present["image"]
    torch.testing.assert_close(got[odd], F.log_softmax(model(masked)["audio"][odd], dim=-1))
    late = build_fusion("late_fusion", spec, operator="concat", width=3)
    assert official.applicable(late, ["intra_mixture_test"]) == ()


def test_intra_mixture_of_bernoulli_experts_is_the_mean_sigmoid():
    task = build_task("toy_multilabel")
    torch.manual_seed(0)
    model = build_fusion("intra_only", task.spec).eval()
    batch = task.splits["test"].batch(torch.arange(16), task.spec)
    logits = model(batch)
    mean_p = torch.stack([torch.sigmoid(z) for z in logits.values()]).mean(0)
    got = official.mixture_log_probs(model, logits, batch)
    torch.testing.assert_close(torch.sigmoid(got), mean_p, rtol=1e-5, atol=1e-6)


def test_unimodal_train_mode_eval_uses_batch_statistics_and_updates_them(avmnist):
    spec = avmnist.spec
    test = avmnist.splits["test"]
    torch.manual_seed(0)
    plain = build_fusion("unimodal", spec, modality="image", width=3)
    switched = build_fusion("unimodal", spec, modality="image", width=3)
    switched.load_state_dict(plain.state_dict())
    official.prepare(switched, ["unimodal_train_mode_eval"])
    # eval mode: a sample's prediction does not depend on its batch
    torch.testing.assert_close(predict(plain, test, spec, 5), predict(plain, test, spec, 30))
    bn = next(m for m in switched.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    small, large = predict(switched, test, spec, 5), predict(switched, test, spec, 30)
    assert not torch.allclose(small, large)  # batch statistics: the evaluation batch matters
    assert not torch.equal(before, bn.running_mean)  # and the test data leak into the running stats
    i2m2 = build_fusion("i2m2", spec, inter="late_fusion", intra_options={"width": 3})
    assert official.applicable(i2m2, ["unimodal_train_mode_eval"]) == ()


# ------------------------------------------------------------------ suites, hashes, errors
def _hashes(bindings, tmp_path):
    plan = plan_suite([ROOT / "gin" / "avmnist_smoke.gin"], bindings, device=CPU,
                      out=tmp_path / "runs", results_dir=tmp_path / "lb")
    return {i.unit.method: i.unit for i in plan.planners[0].items}


def test_a_switch_enters_only_the_hashes_of_the_units_it_changes(tmp_path):
    off = _hashes([], tmp_path)
    on = _hashes(["suite.official = ['lrtf_factors_untrained', 'intra_mixture_test', "
                  "'unimodal_train_mode_eval']"], tmp_path)
    assert all(u.official == () for u in off.values())
    for m in ("late_fusion", "early_fusion", "tfn", "gmu"):  # no switch applies, nothing upstream
        assert on[m].unit_hash == off[m].unit_hash and on[m].official == ()
    assert on["image_only"].official == on["audio_only"].official == ("unimodal_train_mode_eval",)
    assert on["intra_only"].official == ("intra_mixture_test",)
    assert on["lrtf"].official == on["i2m2_lrtf"].official == ("lrtf_factors_untrained",)
    for m in ("image_only", "audio_only", "intra_only", "lrtf", "i2m2_lrtf",
              "i2m2_lf", "i2m2_tfn", "i2m2_ensemble"):  # itself, or the experts it starts from
        assert on[m].unit_hash != off[m].unit_hash, m


def test_unknown_and_misplaced_switches_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"suite.official: 'frozen' is not an official-behaviour "
                                          r"switch; known: intra_mixture_test"):
        _hashes(["suite.official = ['frozen']"], tmp_path)
    with pytest.raises(ConfigError, match=r"'vqa_vs_scorer' replaces vqa_score, which task "
                                          r"'avdigits' does not declare"):
        _hashes(["suite.official = ['vqa_vs_scorer']"], tmp_path)


def test_a_scoring_switch_swaps_the_declared_metrics():
    spec = build_task("fastmri", source="embedded", patients=10, slices=1, size=16).spec
    scored = official.scored_spec(spec, ["operating_point_on_scored_split"])
    assert scored.metric == spec.metric == "auroc"
    ops = [m for m in spec.metrics if m.startswith("op_")]
    assert len(ops) == 3 and [m for m in scored.metrics if m.startswith("op_")] == [
        f"{m}_scored" for m in ops]
    assert official.scored_spec(spec, []) is spec


@pytest.mark.parametrize("dataset", ["avmnist", "mimic", "fastmri", "vqa_vs", "nlvr2"])
def test_each_official_suite_turns_on_every_switch_of_its_dataset_and_plans(dataset, tmp_path):
    gin_file = ROOT / "gin" / "official" / f"{dataset}.gin"
    plan = plan_suite([gin_file], device=CPU, out=tmp_path / "runs", results_dir=tmp_path / "lb",
                      seeds=[0])
    ours = sorted(n for n in official.OFFICIAL.names() if dataset in official.OFFICIAL.get(n).datasets)
    assert sorted(plan.suite.official) == ours
    assert plan.suite.name == f"{dataset}_official"
    units = [i.unit for p in plan.planners for i in p.items]
    assert units and all(i.action == "train" for p in plan.planners for i in p.items)
    for name in ours:  # every switch changes some method of the suite
        assert any(name in u.official for u in units), name
    gin.clear_config()


# ------------------------------------------------------------------ the board section
def _board(methods: dict, suite: str, seeds=(0, 1)):
    """Rows and evidence of a multiclass board: methods -> (seed -> predictions)."""
    rows, store = [], {}
    for method, per_seed in methods.items():
        for seed in seeds:
            pred, target = per_seed[seed]
            p = Predictions("multiclass", ("accuracy",), ())
            p.add("test", "test", pred, target)
            key = (None, method, f"{suite}-{method}", seed)
            store[key] = p
            rows.append({"method": method, "seed": seed, "unit_hash": key[2], "protocol": "test",
                         "metric": "accuracy", "date": "2026-12-07T00:00:00", "family": "inter",
                         "metrics": ["accuracy"], "value": M.compute("accuracy", pred, target,
                                                                      "multiclass"),
                         "train": {"lr": 0.1}})
    return rows, Evidence(store.get)


def test_the_section_measures_each_method_against_its_official_twin():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=200)
    right = np.eye(3)[target] * 5.0
    noisy = {s: rng.normal(size=(200, 3)) for s in (0, 1)}
    mine = {"same": {s: (noisy[s], target) for s in (0, 1)},
            "better": {s: (noisy[s], target) for s in (0, 1)},
            "tuned": {s: (noisy[s], target) for s in (0, 1)}}
    theirs = {"same": {s: (noisy[s], target) for s in (0, 1)},
              "better": {s: (right, target) for s in (0, 1)},
              "tuned": {s: (noisy[s], target) for s in (0, 1)}}
    rows, ev = _board(mine, "a")
    orows, oev = _board(theirs, "b")
    for r in orows:
        if r["method"] == "better":
            r["official"] = ["intra_mixture_test"]
        if r["method"] == "tuned":  # starts from other units' weights (which a switch changed)
            r["recipe"] = "pretrain_then_finetune"
    got = compare({r["seed"]: r for r in orows if r["method"] == "same"}, oev, "accuracy",
                  {r["seed"]: r for r in rows if r["method"] == "same"}, ev, "accuracy")
    assert got[2].diff == 0 and got[2].low == 0 and got[2].high == 0
    text = "\n".join(official_section(rows, ev, orows, oev, "b_official-x"))
    chance = np.mean([M.compute("accuracy", noisy[s], target, "multiclass") for s in (0, 1)])
    assert "## Official behaviour" in text and "`b_official-x`" in text
    line = next(t for t in text.splitlines() if t.startswith("| `better`"))
    assert "`intra_mixture_test`" in line and f"{chance * 100:.2f} | 100.00 | **+" in line
    same = next(t for t in text.splitlines() if t.startswith("| `same`"))
    assert "— (control)" in same and "+0.00 [+0.00, +0.00]" in same and "**" not in same
    tuned = next(t for t in text.splitlines() if t.startswith("| `tuned`"))
    assert "none on it; starts from other units" in tuned
    assert official_section(rows, ev) == []  # no twin, no scorer to swap: no section
    assert official_board_name("mimic-mortality-embedded-mimic_mortality") == \
        "mimic_official-mortality-embedded-mimic_mortality"


@pytest.mark.parametrize("board", ["nlvr2-embedded-nlvr2", "avmnist-embedded-avdigits",
                                   "mimic-mortality-embedded-mimic_mortality",
                                   "mimic-icd9_140_239-embedded-mimic_icd9_140_239",
                                   "mimic-icd9_460_519-embedded-mimic_icd9_460_519"])
def test_the_committed_controls_are_bit_identical_to_the_board(board):
    """The dataset pages say the methods no switch changes came out bit-identical when the official
    suite trained them again on the board's machine: their published test predictions are equal."""
    from i2m2bench.harness.publish import evidence_of
    from i2m2bench.harness.store import read_rows
    from i2m2bench.reporting.rows import latest_units
    from i2m2bench.reporting.significance import row_key

    lb = ROOT / "leaderboards"
    twin = official_board_name(board)
    mine, theirs = (latest_units(read_rows(lb / "results" / f"{b}.jsonl")) for b in (board, twin))
    ev_mine, ev_theirs = evidence_of(lb, board), evidence_of(lb, twin)
    switched = any(r.get("official") for rs in theirs.values() for r in rs)
    controls = [m for m, rs in theirs.items() if not any(r.get("official") for r in rs)
                and not (switched and rs[0]["recipe"] != "joint")]  # nor from switched units
    assert controls
    if board.startswith("mimic"):  # train-mode evaluation of models without BatchNorm or dropout
        controls += ["static_only", "timeseries_only"]
    for m in controls:
        for seed in {r["seed"] for r in theirs[m]}:
            a = next(r for r in theirs[m] if r["seed"] == seed)
            b = next(r for r in mine[m] if r["seed"] == seed)
            assert np.array_equal(ev_theirs.get(row_key(a)).pred["test"],
                                  ev_mine.get(row_key(b)).pred["test"]), (m, seed)
