"""Leaderboard rendering: a pure function of rows, checked against a golden file."""
from pathlib import Path

import pytest

from i2m2bench.harness.store import read_rows, upsert_unit_rows
from i2m2bench.leaderboard import render_markdown, stale_boards, render_all

GOLDEN = Path(__file__).parent / "golden"


def _row(method, seed, protocol, value, unit="u1", family="inter", date="2026-01-01T00:00:00+00:00",
         metric="accuracy"):
    return {"board": "demo-embedded-demo", "suite": "demo", "dataset": "demo", "dataset_version": "1",
            "data_source": "embedded", "method": method, "label": method.upper(), "family": family,
            "fusion": "f", "recipe": "joint", "seed": seed, "protocol": protocol, "metric": metric,
            "value": value, "higher_is_better": True if protocol != "train" else None,
            "unit_hash": unit, "config_hash": "c", "train": {"optimizer": "sgd", "lr": 0.1,
            "weight_decay": 1e-4, "batch_size": 40, "epochs": 4, "patience": 4, "grad_clip": 8.0},
            "git_commit": "abc", "device": "cpu", "torch_version": "2.9.1", "date": date}


def demo_rows():
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.75), (0.7, 0.85)]):
        rows += [_row("alpha", seed, "test", a, family="unimodal"), _row("beta", seed, "test", b),
                 _row("alpha", seed, "shift:x", a - 0.1, family="unimodal"),
                 _row("beta", seed, "shift:x", b - 0.5),
                 _row("beta", seed, "train", 100.0 + seed, metric="samples_per_s")]
    # an older configuration of beta, which must be ignored
    rows.append(_row("beta", 0, "test", 0.99, unit="old", date="2025-01-01T00:00:00+00:00"))
    return rows


def test_mean_and_sample_std_by_hand():
    md = render_markdown(demo_rows())
    # alpha test: values 0.5, 0.7 -> mean 60.00, sample std 14.14 (sqrt(0.02) * 100)
    assert "60.00 ± 14.14" in md
    # beta test: 0.75, 0.85 -> 80.00 ± 7.07, best -> bold; older unit 0.99 ignored
    assert "**80.00 ± 7.07**" in md and "99.00" not in md
    # shift: alpha 0.4, 0.6 -> 50.00 ± 14.14 (best, bold); beta 0.25, 0.35 -> 30.00 ± 7.07
    assert "**50.00 ± 14.14**" in md and "30.00 ± 7.07" in md
    assert "EMBEDDED" in md and md.index("ALPHA") < md.index("BETA")  # unimodal before inter


def test_golden_markdown():
    assert render_markdown(demo_rows()) == (GOLDEN / "leaderboard_demo.md").read_text(encoding="utf-8")


def test_render_is_pure_and_order_independent():
    rows = demo_rows()
    assert render_markdown(rows) == render_markdown(list(reversed(rows)))


def test_check_detects_stale_and_missing(tmp_path):
    upsert_unit_rows(tmp_path / "results" / "demo.jsonl", demo_rows())
    assert stale_boards(tmp_path) and "missing" in stale_boards(tmp_path)[0]
    render_all(tmp_path)
    assert stale_boards(tmp_path) == []
    md = tmp_path / "demo.md"
    md.write_text(md.read_text() + "edited\n")
    assert "differs" in stale_boards(tmp_path)[0]


def test_upsert_replaces_a_units_rows_and_keeps_others(tmp_path):
    path = tmp_path / "r.jsonl"
    upsert_unit_rows(path, demo_rows())
    n = len(read_rows(path))
    upsert_unit_rows(path, [_row("beta", 0, "test", 0.1)])
    rows = read_rows(path)
    assert len([r for r in rows if r["unit_hash"] == "u1" and r["seed"] == 0 and r["method"] == "beta"]) == 1
    # every (u1, seed 0) row was replaced: alpha's too, as it shares the unit hash in this demo
    assert len(rows) == n - sum(1 for r in demo_rows() if (r["unit_hash"], r["seed"]) == ("u1", 0)) + 1


def test_torn_last_line_is_skipped(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    upsert_unit_rows(path, demo_rows()[:2])
    with open(path, "a") as fh:
        fh.write('{"method": "tor')
    assert len(read_rows(path)) == 2
    assert "malformed" in capsys.readouterr().err


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="no result rows"):
        render_markdown([])
