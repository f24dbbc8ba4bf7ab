"""Settings that alias: every ``train.*`` setting is part of a unit's identity (its hash, hence its
run folder) and a board never shows one unit's numbers under another's settings.

Before: the unit hash already covered every ``train.*`` setting, but a board kept one unit per
method (the most recent), and its Schedule column named neither ``train.precision`` nor
``train.momentum``: after a bf16 run, the fp32 command skipped its (earlier, complete) fp32
units as done and the board showed the bf16 numbers, with nothing saying bf16.
"""
import re
from dataclasses import fields
from pathlib import Path

import pytest

from i2m2bench.cli import main
from i2m2bench.harness.config import TrainConfig
from i2m2bench.reporting import render_markdown

BOARD = "toy_smoke-embedded-toy"


def _run(capsys, board, *args: str) -> str:
    code = main(["run", "--gin", str(board.toy), "--methods", "a_only", "--seeds", "0",
                 "--out", str(board.out), "--leaderboard-dir", str(board.path), "--no-progress",
                 *args])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "Traceback" not in cap.err
    return cap.out + cap.err


def _settings_rows(text: str) -> dict[str, str]:
    """Settings table of a board: method cell -> schedule cell."""
    part = text.split("## Settings and provenance", 1)[1]
    out = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            out[cells[0]] = cells[2]
    return out


@pytest.fixture
def toy_board(board):
    board.toy = Path(__file__).resolve().parents[2] / "gin" / "toy_smoke.gin"
    return board


def test_bf16_then_fp32_trains_both_and_the_board_shows_both_apart(capsys, toy_board):
    board = toy_board
    bf16 = _run(capsys, board, "--gin-param", "train.precision = 'bf16'")
    assert "a_only/seed0: training" in bf16
    fp32 = _run(capsys, board)
    assert "a_only/seed0: training" in fp32 and "done already" not in fp32
    md = (board.path / f"{BOARD}.md").read_text()
    settings = _settings_rows(md)
    assert set(settings) == {"`a_only`", "`a_only [bf16]`"}, settings
    assert "precision" not in settings["`a_only`"]
    assert settings["`a_only [bf16]`"].endswith("precision=bf16")
    assert "(`a_only`)" in md and "(`a_only [bf16]`)" in md  # both rows of the main table
    # the reviewer's order: the other command again skips its own unit, and the board still
    # shows each precision's own numbers (not the most recent unit's)
    again = _run(capsys, board, "--gin-param", "train.precision = 'bf16'")
    assert "done already" in again
    assert (board.path / f"{BOARD}.md").read_text() == md
    assert board.intact()


#: A value of every train.* setting other than the toy suite's for a_only, as a binding.
CHANGED = {
    "lr": "train.lr = 0.02", "epochs": "train.epochs = 2", "batch_size": "train.batch_size = 32",
    "optimizer": "train.optimizer = 'adam'", "momentum": "train.momentum = 0.5",
    "weight_decay": "train.weight_decay = 0.0", "grad_clip": "train.grad_clip = None",
    "patience": "train.patience = None", "eval_batch_size": "train.eval_batch_size = 500",
    "loss": "train.loss = 'nll'", "select_on": "train.select_on = 'accuracy'",
    "class_weights": None,  # multilabel tasks only: toy refuses it (checked by TrainConfig below)
    "sampler": None,  # multilabel tasks only, as class_weights
    "betas": None,  # adam/adamw only: covered below with the optimizer it needs
    "precision": "train.precision = 'bf16'",
}


def test_a_changed_setting_never_reuses_an_old_unit(capsys, toy_board):
    board = toy_board
    assert set(CHANGED) == {f.name for f in fields(TrainConfig)}, "a train.* setting is untested"
    _run(capsys, board)
    same = _run(capsys, board, "--dry-run")
    assert "0 to train, 0 to re-evaluate, 1 done already" in same
    hashes = set(re.findall(r"a_only/seed0\s+([0-9a-f]{12})", same))
    bindings = [b for b in CHANGED.values() if b]
    bindings.append("train.optimizer = 'adam'\ntrain.betas = (0.8, 0.9)")
    for binding in bindings:
        args = [a for line in binding.splitlines() for a in ("--gin-param", line)]
        out = _run(capsys, board, "--dry-run", *args)
        assert "1 to train, 0 to re-evaluate, 0 done already" in out, (binding, out)
        hashes |= set(re.findall(r"a_only/seed0\s+([0-9a-f]{12})", out))
    assert len(hashes) == len(bindings) + 1  # every setting its own unit
    # class_weights (multilabel only) goes into the hash as every field: the identity is asdict
    assert "class_weights" in TrainConfig(class_weights="balanced").as_dict()
    assert TrainConfig(sampler="positive_count").as_dict()["sampler"] == "positive_count"
    assert board.intact()


@pytest.mark.parametrize("name,value,shown", [
    ("precision", "bf16", "precision=bf16"),
    ("momentum", 0.9, "momentum=0.9"),
    ("sampler", "positive_count", "sampler=positive_count"),
])
def test_the_schedule_names_a_setting_that_is_not_the_default(demo_rows, name, value, shown):
    plain = render_markdown(demo_rows)
    assert shown not in plain
    for r in demo_rows:
        r["train"] = {**r["train"], name: value}
    text = render_markdown(demo_rows)
    assert all(s.endswith(shown) for s in _settings_rows(text).values()), text


def test_rows_that_record_the_default_render_as_rows_that_record_none(demo_rows):
    """Boards made before a setting existed re-render byte-identical (``leaderboard --check``)."""
    plain = render_markdown(demo_rows)
    for r in demo_rows:
        r["train"] = {**r["train"], "precision": "fp32", "momentum": 0.0}
    assert render_markdown(demo_rows) == plain


def test_every_train_setting_is_shown_or_stated_as_not_shown():
    from i2m2bench.reporting.board import SCHEDULE_ALWAYS, SCHEDULE_NOT_SHOWN, SHOWN_WHEN_SET

    accounted = set(SCHEDULE_ALWAYS) | set(SCHEDULE_NOT_SHOWN) | {k for k, _ in SHOWN_WHEN_SET}
    assert accounted == {f.name for f in fields(TrainConfig)}
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    assert all(defaults[k] == v for k, v in SHOWN_WHEN_SET)  # shown when not the default
