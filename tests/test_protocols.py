"""Robustness protocols: parsing, the availability mask reaching every strategy, dropped experts,
area metrics, resuming with new protocols, and the robustness sections of the leaderboard."""
import json

import pytest
import torch

import i2m2bench
from i2m2bench.fusion.base import Fusion
from i2m2bench.harness.protocols import ProtocolError, expand
from i2m2bench.harness.training import predict
from i2m2bench.reporting import area_metrics, render_markdown
from i2m2bench.poe import poe_log_softmax
from i2m2bench.testing import tiny_spec
from i2m2bench.types import Split, Task

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def tiny_task(n=40, seed=0):
    spec = tiny_spec(3)
    g = torch.Generator().manual_seed(seed)
    split = Split({m.name: torch.rand((n, *m.shape), generator=g) for m in spec.modalities},
                  torch.randint(0, 3, (n,), generator=g), "test")
    return Task(spec, {"train": split, "val": split, "test": split}, {"odd": split})


# --- parsing ---------------------------------------------------------------------------
def test_expand_every_kind_of_protocol():
    keys = [p.key for p in expand(["test", "shift:*", "missing:*", "missing_rate:0.5",
                                   "perturb:a:gaussian", "perturb:b:dropout@0.5,1"], tiny_task(),
                                  levels=(0.25, 1.0))]
    assert keys == ["test", "shift:odd", "missing:a", "missing:b", "missing_rate:0.5",
                    "perturb:a:gaussian@0.25", "perturb:a:gaussian@1", "perturb:b:dropout@0.5",
                    "perturb:b:dropout@1"]


@pytest.mark.parametrize("spec,pattern", [
    ("missing:c", r"'missing:c' names no modality of 'contract'; it has a, b"),
    ("perturb:a:blur", r"'blur' applies to image, spectrogram modalities; 'a' is a vector"),
    ("perturb:a:gausian", r"unknown perturbation 'gausian'.*Did you mean 'gaussian'"),
    ("missing_rate:1.5", r"must be in \(0, 1\]"),
    ("perturb:a:gaussian@0", r"must be in \(0, 1\]"),
    ("shift:nope", r"names no shift set of 'contract'; it has \['odd'\]"),
    ("missing", r"unknown protocol 'missing'"),
])
def test_bad_protocols_are_explained(spec, pattern):
    with pytest.raises(ProtocolError, match=pattern):
        expand([spec], tiny_task())


def test_missing_rate_keeps_one_modality_and_is_reproducible():
    task = tiny_task(n=4000)
    (proto,) = expand(["missing_rate:0.7"], task)
    batch = task.splits["test"].batch(torch.arange(4000), task.spec)
    out = proto.transform(task, seed=3)(batch, 0)
    present = torch.stack([out.present["a"], out.present["b"]], 1)
    assert bool(present.any(1).all()), "a sample lost every modality"
    # absent w.p. 0.7 each; a sample that drew both absent (0.49) gets one back at random:
    # P(a absent) = 0.7 * 0.3 + 0.49 / 2 = 0.455
    assert abs(float((~present[:, 0]).float().mean()) - 0.455) < 0.03
    again = proto.transform(task, seed=3)(batch, 0)
    other = proto.transform(task, seed=4)(batch, 0)
    assert torch.equal(again.present["a"], out.present["a"])
    assert not torch.equal(other.present["a"], out.present["a"])


# --- the availability mask reaches every strategy ---------------------------------------------
@pytest.mark.parametrize("name", i2m2bench.FUSIONS.names())
def test_the_availability_mask_reaches_every_strategy(name):
    task = tiny_task()
    cls = i2m2bench.FUSIONS.get(name)
    torch.manual_seed(0)
    model = cls(task.spec, **cls.example_options(task.spec))
    seen = []
    for module in model.modules():  # the strategy and any strategy nested in it (I2M2's inter)
        if isinstance(module, Fusion):
            module.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].present)))
    (proto,) = expand(["missing:b"], task)
    predict(model, task.splits["test"], task.spec, batch_size=16, transform=proto.transform(task, 0))
    assert seen and {id(m) for m, _ in seen} == {id(m) for m in model.modules() if isinstance(m, Fusion)}
    for _, present in seen:
        assert present is not None
        assert bool(present["a"].all()) and not bool(present["b"].any())


def test_dropping_an_expert_equals_the_product_of_the_remaining():
    task = tiny_task()
    torch.manual_seed(0)
    model = i2m2bench.build_fusion("i2m2", task.spec).eval()
    (proto,) = expand(["missing:b"], task)
    got = predict(model, task.splits["test"], task.spec, transform=proto.transform(task, 0))
    batch = task.splits["test"].batch(torch.arange(40), task.spec)
    with torch.no_grad():
        z = model(batch)
    assert torch.allclose(got, poe_log_softmax([z["a"]]), atol=1e-6)  # b and inter dropped
    model.inter_missing = "impute"  # the other gin choice: the inter expert sees zeros for b
    got = predict(model, task.splits["test"], task.spec, transform=proto.transform(task, 0))
    zeroed = task.splits["test"].batch(torch.arange(40), task.spec)
    zeroed.inputs["b"] = torch.zeros_like(zeroed.inputs["b"])
    with torch.no_grad():
        z_imp = model(zeroed)
    assert torch.allclose(got, poe_log_softmax([z["a"], z_imp["inter"]]), atol=1e-5)


# --- area metrics ----------------------------------------------------------------------------
def test_area_metrics_by_hand():
    # curve 0.8 (clean) -> 0.6 at 0.5 -> 0.2 at 1: area = 0.5*(0.8+0.6)/2 + 0.5*(0.6+0.2)/2 = 0.55
    rel, eff = area_metrics(0.8, {0.5: 0.6, 1.0: 0.2})
    assert rel == pytest.approx(0.55 / 0.8) and eff is None
    # reference 0.9 -> 0.85 -> 0.8: area 0.85; shifted to clean 0.8 its area is 0.75;
    # effective robustness = 0.55 - 0.75 = -0.2
    rel, eff = area_metrics(0.8, {0.5: 0.6, 1.0: 0.2}, 0.9, {0.5: 0.85, 1.0: 0.8})
    assert eff == pytest.approx(-0.2)
    # a flat curve: relative robustness 1; equal to the reference up to a shift: 0
    assert area_metrics(0.5, {0.25: 0.5, 1.0: 0.5})[0] == pytest.approx(1.0)
    assert area_metrics(0.5, {0.5: 0.4, 1.0: 0.3}, 0.7, {0.5: 0.6, 1.0: 0.5})[1] == pytest.approx(0.0)
    # levels need not reach 1: the area is normalised by the largest level
    assert area_metrics(1.0, {0.5: 0.0})[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="level 0 is the clean score"):
        area_metrics(1.0, {0.0: 1.0})


# --- harness end to end ------------------------------------------------------------------------
TOY = str(ROOT / "gin" / "toy_smoke.gin")
PROTOS = "suite.protocols = ['test', 'missing:*', 'missing_rate:0.5', 'perturb:a:gaussian@0.5,1']"


@pytest.mark.slow
def test_protocol_rows_resume_and_board(tmp_path):
    from i2m2bench.harness.store import read_rows

    kw = dict(methods=["a_only", "b_only", "late_fusion", "i2m2"], seeds=[0, 1], out=tmp_path / "runs",
              results_dir=tmp_path / "lb", progress=False)
    run = i2m2bench.run_suite([TOY], ["suite.protocols = ['test', 'missing:*']"], **kw)
    ckpts = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("model.pt")}
    rows = read_rows(run.results_path)
    i2m2 = {(r["seed"], r["protocol"]): r["value"] for r in rows
            if r["method"] == "i2m2" and r["protocol"] != "train"}
    a_only = {(r["seed"], r["protocol"]): r["value"] for r in rows if r["method"] == "a_only"}
    assert {"missing:a", "missing:b"} <= {p for _, p in i2m2}

    # more protocols later: evaluated from the checkpoints, nothing retrained
    run = i2m2bench.run_suite([TOY], [PROTOS], **kw)
    assert {item.action for item in run.plan} == {"evaluate"}  # no unit trained
    assert run.summary and all("val" not in s and "missing_rate:0.5" in s for s in run.summary)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("model.pt")} == ckpts
    rows = read_rows(run.results_path)
    after = {(r["seed"], r["protocol"]): r["value"] for r in rows if r["method"] == "i2m2"}
    assert {k: after[k] for k in i2m2} == i2m2  # earlier rows kept as they were
    assert {"missing_rate:0.5", "perturb:a:gaussian@0.5", "perturb:a:gaussian@1"} <= {p for _, p in after}
    metrics = json.loads(next((tmp_path / "runs").rglob("i2m2/*/seed0/metrics.json")).read_text())
    scored = {sc["protocol"]: sc for sc in metrics["scores"]}
    assert scored["perturb:a:gaussian@1"]["curve"] == "perturb:a:gaussian"
    assert scored["perturb:a:gaussian@1"]["level"] == 1.0 and scored["perturb:a:gaussian@1"]["kind"] == "perturb"
    assert metrics["info"]["robustness_eval_seconds"] > 0
    assert a_only[(0, "missing:b")] == a_only[(0, "test")]  # b never reaches the a-only model

    md = (tmp_path / "lb" / "toy_smoke-embedded-toy.md").read_text()
    for head in ("### Missing modalities", "### Robustness curves: areas", "#### Curve `perturb:a:gaussian`",
                 "#### Curve `missing_rate`", "![perturb:a:gaussian](toy_smoke-embedded-toy-perturb-a-gaussian.png)"):
        assert head in md
    robust = sum(r["value"] for r in rows if r["metric"] == "robustness_eval_seconds")
    rest = sum(r["value"] for r in rows if r["metric"] in ("train_seconds", "eval_seconds")) - robust
    assert rest > 0 and f"summed over units: {robust:.0f} s, {100 * robust / rest:.1f}% on top" in md
    for u in {r["unit_hash"] for r in rows}:  # resumed evaluation time counts in eval_seconds too
        secs = {(r["seed"], r["metric"]): r["value"] for r in rows if r["unit_hash"] == u}
        for seed in (0, 1):
            assert secs[seed, "eval_seconds"] >= secs[seed, "robustness_eval_seconds"] > 0
    png = tmp_path / "lb" / "toy_smoke-embedded-toy-perturb-a-gaussian.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from i2m2bench.harness.publish import evidence_of

    # the board is a pure function of the rows and the predictions published beside them
    assert render_markdown(rows, evidence_of(tmp_path / "lb", "toy_smoke-embedded-toy")) == md


@pytest.mark.slow
def test_evaluate_only_reuses_the_weights_under_other_options(tmp_path):
    extra = ["i2m2_imp/method.fusion = 'i2m2'",
             "i2m2_imp/method.options = {'inter': 'late_fusion', 'inter_missing': 'impute', "
             "'inter_options': {'operator': 'lrtf', 'width': 16, 'rank': 4, 'fused_dim': 16}, "
             "'intra_options': {'width': 16}}",
             "i2m2_imp/method.recipe = 'evaluate_only'",
             "i2m2_imp/method.pretrain = {'model': 'i2m2'}",
             "suite.methods = ['a_only', 'b_only', 'intra_only', 'late_fusion', 'early_fusion', 'i2m2', 'i2m2_imp']",
             "suite.protocols = ['test', 'missing:a']"]
    run = i2m2bench.run_suite([TOY], extra, seeds=[0], methods=["i2m2", "i2m2_imp"],
                              out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False)
    by = {s["unit"]: s for s in run.summary}
    assert by["i2m2_imp/seed0"]["test"] == by["i2m2/seed0"]["test"]  # same weights, all present
    assert by["i2m2_imp/seed0"]["epochs_run"] == 0
    assert by["i2m2_imp/seed0"]["missing:a"] != by["i2m2/seed0"]["missing:a"]  # inter kept vs dropped
