"""AV-MNIST fidelity to the official I2M2 code and how settings are applied: an explicit
command-line binding beats the embedded schedule; evaluate-only units earn no marks."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from i2m2bench.harness.runner import run_suite
from i2m2bench.reporting import render_markdown
from i2m2bench.reporting.significance import Evidence
from i2m2bench.predictions import Predictions

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "gin" / "toy_smoke.gin")


def _schedules(bindings, tmp_path):
    run = run_suite([TOY], bindings, seeds=[0], out=tmp_path / "runs", results_dir=tmp_path / "lb",
                    progress=False, dry_run=True)
    return {item.unit.method: item.unit.train for item in run.plan}


def test_an_explicit_gin_param_beats_the_embedded_schedule(tmp_path):
    # toy_smoke.gin: embedded_schedule.overrides = {'epochs': 3, 'patience': 3, 'batch_size': 64}
    plain = _schedules([], tmp_path)
    assert {t.epochs for t in plain.values()} == {3}
    scoped = _schedules(["a_only/train.epochs = 50"], tmp_path)
    assert scoped["a_only"].epochs == 50 and scoped["a_only"].batch_size == 64  # the rest applies
    assert {t.epochs for m, t in scoped.items() if m != "a_only"} == {3}
    everywhere = _schedules(["train.patience = 7"], tmp_path)
    assert {t.patience for t in everywhere.values()} == {7}
    assert {t.epochs for t in everywhere.values()} == {3}
    # a binding in a gin file (not the command line) is still overridden, as documented
    gin_file = tmp_path / "mine.gin"
    gin_file.write_text(f"include '{TOY}'\na_only/train.epochs = 50\n")
    run = run_suite([str(gin_file)], [], seeds=[0], out=tmp_path / "r2", results_dir=tmp_path / "l2",
                    progress=False, dry_run=True)
    assert {i.unit.method: i.unit.train.epochs for i in run.plan}["a_only"] == 3


@pytest.mark.parametrize("recipe,ranked", [("evaluate_only", False), ("ensemble", True)])
def test_an_untrained_unit_shows_no_training_and_only_an_ensemble_earns_marks(make_row, recipe, ranked):
    """An ``evaluate_only`` unit is another method's model under other options: never ranked.
    An ``ensemble`` trains nothing either, but is a model of its own: ranked."""
    n = 200
    target = np.random.default_rng(0).integers(0, 4, n)
    rows, files = [], {}
    for m, acc, trained in (("trained", 0.6, True), ("reused", 0.9, False)):
        for seed in (0, 1):
            correct = np.random.default_rng(seed).random(n) < acc
            scores = np.full((n, 4), -5.0, np.float32)
            scores[np.arange(n), np.where(correct, target, (target + 1) % 4)] = 0.0
            p = Predictions("multiclass", ("accuracy",))
            p.add("val", "val", scores, target)
            files[None, m, "u1", seed] = p
            extra = {} if trained else {"recipe": recipe, "trained": False}
            rows += [{**make_row(m, seed, "val", float(correct.mean())), **extra},
                     {**make_row(m, seed, "train", 0.0, metric="samples_per_s"), **extra}]
    md = render_markdown(rows, Evidence(files.get))
    line = {m: next(ln for ln in md.splitlines() if f"(`{m}`)" in ln) for m in ("trained", "reused")}
    if ranked:  # 0.9 against 0.6: the ensemble leads, significantly
        assert "**" in line["reused"] and "**" not in line["trained"]
    else:
        assert "**" in line["trained"]  # alone among the ranked methods: best
        assert "**" not in line["reused"] and "*≈" not in line["reused"]  # higher, but not ranked
    assert [c.strip() for c in line["reused"].split("|")[-4:-1]] == ["—", "—", "—"]  # training
    assert [c.strip() for c in line["trained"].split("|")[-4:-1]][0] == "0"  # samples/s shown
    assert f"— (no training: recipe `{recipe}`)" in md


# --- intra-only starts from the unimodal units, as the official intra_modality run does -----
def test_avmnist_intra_only_fine_tunes_the_unimodal_units(tmp_path):
    run = run_suite(["avmnist.gin"], [], seeds=[0], methods=["intra_only", "late_fusion"],
                    out=tmp_path / "runs", results_dir=tmp_path / "lb", progress=False, dry_run=True)
    keys = [item.unit.key for item in run.plan]
    assert keys.index("image_only/seed0") < keys.index("intra_only/seed0")
    assert keys.index("audio_only/seed0") < keys.index("intra_only/seed0")
    method, train = run.resolver.method("intra_only")
    assert method.recipe == "pretrain_then_finetune"
    assert dict(method.pretrain) == {"image": "image_only", "audio": "audio_only"}
    assert train.lr == 0.1  # official intra_modality lr
    # early stopping as the official loops: 11 epochs without improvement; never for unimodal
    assert run.resolver.method("late_fusion")[1].patience == 11
    assert run.resolver.method("image_only")[1].patience is None
    lrtf, _ = run.resolver.method("lrtf")
    assert lrtf.options["fused_dim"] == 120 and lrtf.options["rank"] == 40
    # the embedded schedule (no data root: AV-Digits): unimodal experts 10 epochs, multimodal
    # models from scratch 6, fine-tuning 2
    epochs = {item.unit.method: item.unit.train.epochs for item in run.plan}
    assert epochs == {"image_only": 10, "audio_only": 10, "late_fusion": 6, "intra_only": 2}


def test_intra_only_experts_start_from_the_unimodal_weights(tmp_path, check_experts_loaded):
    bindings = ["intra_only/method.recipe = 'pretrain_then_finetune'",
                "intra_only/method.pretrain = {'a': 'a_only', 'b': 'b_only'}"]
    run = run_suite([TOY], bindings, seeds=[0], methods=["intra_only"], out=tmp_path / "runs",
                    results_dir=tmp_path / "lb", progress=False)
    assert [s["unit"] for s in run.summary] == ["a_only/seed0", "b_only/seed0", "intra_only/seed0"]
    check_experts_loaded(run, "intra_only", tmp_path / "runs")


# --- LeNet initialisation -------------------------------------------------------------------
def test_lenet_convolutions_are_kaiming_uniform():
    """kaiming_uniform_ with default arguments draws from U(-b, b), b = sqrt(6 / fan_in);
    PyTorch's default conv init has b = 1 / sqrt(fan_in), 2.45 times narrower."""
    from torch import nn

    from i2m2bench.encoders.lenet import LeNet
    from i2m2bench.types import ModalitySpec

    torch.manual_seed(0)
    net = LeNet(ModalitySpec("audio", (1, 112, 112), "spectrogram", "lenet"), width=6)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6
    for conv in convs[1:]:  # >= 648 weights each: the sample maximum sits near the bound
        w = conv.weight.detach()
        bound = math.sqrt(6.0 / (w.shape[1] * w.shape[2] * w.shape[3]))
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)


# --- patience -------------------------------------------------------------------------------
def _train_flat(patience, epochs=20):
    """A model whose validation score cannot improve after its first epoch (lr ~ 0)."""
    from i2m2bench import build_task
    from i2m2bench.fusion.base import build_fusion
    from i2m2bench.harness.config import TrainConfig
    from i2m2bench.harness.training import train_model

    task = build_task("toy")
    torch.manual_seed(0)
    model = build_fusion("late_fusion", task.spec)
    cfg = TrainConfig(lr=1e-30, epochs=epochs, batch_size=256, patience=patience)
    return train_model(model, task.splits["train"], task.splits["val"], task.spec, cfg,
                       torch.Generator().manual_seed(0), progress=False)


def test_training_stops_after_exactly_patience_epochs_without_improvement():
    res = _train_flat(11)
    assert res.best_epoch == 0 and res.epochs_run == 12  # epoch 0, then 11 without improvement
    assert _train_flat(None).epochs_run == 20  # None: never stops early (the unimodal loop)


def test_patience_must_be_a_positive_whole_number_or_none():
    from i2m2bench.harness.config import TrainConfig

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="train.patience must be a whole number >= 1 or None"):
            TrainConfig(patience=bad)


ENSEMBLE_GIN = """
include 'toy_smoke.gin'
suite.methods = ['a_only', 'b_only', 'late_fusion', 'i2m2_ensemble']
suite.seeds = [0]
i2m2_ensemble/method.fusion = 'i2m2'
i2m2_ensemble/method.options = {'inter': 'late_fusion', 'inter_options': {'operator': 'lrtf',
    'width': 16, 'rank': 4, 'fused_dim': 16}, 'intra_options': {'width': 16}}
i2m2_ensemble/method.recipe = 'ensemble'
i2m2_ensemble/method.pretrain = {'a': 'a_only', 'b': 'b_only', 'inter': 'late_fusion'}
"""


def test_the_ensemble_recipe_is_the_product_of_separately_trained_experts(tmp_path):
    """The official post-hoc ensembles (FastMRI's --ensemble): no joint training; every
    prediction is the normalised product of the three trained units' predictions."""
    from i2m2bench.cli import main
    from i2m2bench.harness.publish import read_board_rows
    from i2m2bench.predictions import load_predictions

    gin_file = tmp_path / "ensemble.gin"
    gin_file.write_text(ENSEMBLE_GIN)
    assert main(["run", "--gin", str(gin_file), "--out", str(tmp_path / "runs"), "--leaderboard-dir",
                 str(tmp_path / "lb"), "--no-progress"]) == 0

    def pred(method):
        return load_predictions(next((tmp_path / "runs").rglob(f"{method}/*/seed0/predictions.npz")))

    experts, ens = [pred(m) for m in ("a_only", "b_only", "late_fusion")], pred("i2m2_ensemble")
    for protocol in ("test", "shift:noisier"):
        s = sum(e.pred[protocol].astype(np.float64) for e in experts)
        want = s - np.logaddexp.reduce(s, axis=1, keepdims=True)
        assert np.abs(want - ens.pred[protocol]).max() < 1e-4, protocol
    rows = read_board_rows(next((tmp_path / "lb" / "results").glob("*.jsonl")))
    mine = [r for r in rows if r["method"] == "i2m2_ensemble"]
    assert mine and not mine[0]["trained"] and mine[0]["recipe"] == "ensemble"
