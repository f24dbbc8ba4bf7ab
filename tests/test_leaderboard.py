"""Leaderboard rendering: a pure function of rows, checked against a golden file.

The rows come from the ``demo_rows`` and ``make_row`` fixtures (tests/conftest.py)."""
import statistics
from pathlib import Path

import pytest

from i2m2bench.harness.store import read_rows, upsert_unit_rows
from i2m2bench.harness.publish import check_boards, render_all, stale_boards
from i2m2bench.reporting import render_markdown

GOLDEN = Path(__file__).parent / "golden"


def test_intervals_by_hand_and_no_marks_without_predictions(demo_rows):
    md = render_markdown(demo_rows)
    # alpha test: 0.5, 0.7 -> mean 60.00; s = sqrt(0.02); 95% t half-width
    # t(0.975, 1) * s / sqrt(2) = 12.706205 * 0.1 -> 127.06 (points of %)
    assert "60.00 ± 127.06" in md
    # beta test: 0.75, 0.85 -> 80.00 ± 12.706205 * 0.05 = 63.53; older unit 0.99 ignored
    assert "80.00 ± 63.53" in md and "99.00" not in md
    # shift: alpha 0.4, 0.6 -> 50.00 ± 127.06; beta 0.25, 0.35 -> 30.00 ± 63.53
    assert "50.00 ± 127.06" in md and "30.00 ± 63.53" in md
    # no predictions behind the rows: nothing is marked best or tied, and the board says why
    table = "\n".join(ln for ln in md.splitlines() if ln.startswith("| "))
    assert "**" not in table and "*≈" not in table and "2 ranked column(s) carry no marks" in md
    assert "EMBEDDED" in md and md.index("ALPHA") < md.index("BETA")  # unimodal before inter


def test_golden_markdown(demo_rows):
    assert render_markdown(demo_rows) == (GOLDEN / "leaderboard_demo.md").read_text(encoding="utf-8")


def test_render_is_pure_and_order_independent(demo_rows):
    rows = demo_rows
    assert render_markdown(rows) == render_markdown(list(reversed(rows)))


def test_check_detects_stale_and_missing(tmp_path, demo_rows):
    upsert_unit_rows(tmp_path / "results" / "demo.jsonl", demo_rows)
    assert stale_boards(tmp_path) and "missing" in stale_boards(tmp_path)[0]
    render_all(tmp_path)
    assert stale_boards(tmp_path) == []
    md = tmp_path / "demo.md"
    md.write_text(md.read_text() + "edited\n")
    assert "differs" in stale_boards(tmp_path)[0]


def test_the_check_in_several_processes_finds_the_same_boards_in_order(tmp_path, demo_rows):
    for name in ("a", "b", "c"):
        upsert_unit_rows(tmp_path / "results" / f"{name}.jsonl", demo_rows)
    render_all(tmp_path)
    (tmp_path / "c.md").unlink()
    (tmp_path / "a.md").write_text("edited\n")
    alone = stale_boards(tmp_path)
    assert [why.split(":")[0] for why in alone] == [str(tmp_path / "a.md"), str(tmp_path / "c.md")]
    assert stale_boards(tmp_path, workers=2) == alone
    # leaderboard --check: rendering and verification per board, the largest boards first (a
    # stray file makes board c the largest), answered in board order all the same
    (tmp_path / "predictions" / "c").mkdir(parents=True)
    (tmp_path / "predictions" / "c" / "stray.npz").write_bytes(b"x" * 1000)
    for workers in (1, 2):
        stale, checked = check_boards(tmp_path, workers=workers)
        assert stale == alone
        assert checked.unverified_boards == [str(tmp_path / "results" / f"{n}.jsonl") for n in "abc"]
        assert checked.verified == 0 and checked.problems == []


def test_upsert_replaces_a_units_rows_and_keeps_others(tmp_path, demo_rows, make_row):
    path = tmp_path / "r.jsonl"
    replaced = sum(1 for r in demo_rows if (r["unit_hash"], r["seed"]) == ("u1", 0))
    upsert_unit_rows(path, demo_rows)
    n = len(read_rows(path))
    upsert_unit_rows(path, [make_row("beta", 0, "test", 0.1)])
    rows = read_rows(path)
    assert len([r for r in rows if r["unit_hash"] == "u1" and r["seed"] == 0 and r["method"] == "beta"]) == 1
    # every (u1, seed 0) row was replaced: alpha's too, as it shares the unit hash in this demo
    assert len(rows) == n - replaced + 1


def test_torn_last_line_is_skipped(tmp_path, capsys, demo_rows):
    path = tmp_path / "r.jsonl"
    upsert_unit_rows(path, demo_rows[:2])
    with open(path, "a") as fh:
        fh.write('{"method": "tor')
    assert len(read_rows(path)) == 2
    assert "malformed" in capsys.readouterr().err


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="no result rows"):
        render_markdown([])


# --- structured fields: curves come from the rows' ``curve`` and ``level``, never their strings
def _robust_rows(make_row, protocol_of):
    """Three methods x two seeds on test, missing:a and two curves; curve points get their
    protocol string from ``protocol_of(curve, level)``."""
    rows = []
    methods = (("a_only", "unimodal", 0.6), ("late_fusion", "inter", 0.8), ("i2m2", "i2m2", 0.85))
    for m, fam, base in methods:
        for seed in (0, 1):
            v = base + 0.02 * seed
            rows += [make_row(m, seed, "test", v, family=fam),
                     make_row(m, seed, "missing:a", v - 0.3, family=fam)]
            for curve, levels, drop in (("perturb:a:gaussian", (0.5, 1.0), 0.2),
                                        ("missing_rate", (0.5,), 0.1)):
                for lv in levels:
                    row = make_row(m, seed, protocol_of(curve, lv), v - drop * lv, family=fam)
                    rows.append({**row, "curve": curve, "level": lv})
    return rows


def test_curves_render_from_structured_fields_not_protocol_strings(make_row, tmp_path):
    from i2m2bench.reporting import StandardLayout

    plain = _robust_rows(make_row, lambda c, lv: f"missing_rate:{lv:g}" if c == "missing_rate"
                         else f"{c}@{lv:g}")  # the strings the harness writes
    names = {}  # and unparseable ones: "#0?", "#1?", ...
    opaque = _robust_rows(make_row, lambda c, lv: names.setdefault((c, lv), f"#{len(names)}?"))
    md, md_opaque = render_markdown(plain), render_markdown(opaque)
    for head in ("### Robustness curves: areas", "#### Curve `perturb:a:gaussian`",
                 "#### Curve `missing_rate`", "![perturb:a:gaussian](demo-embedded-demo-perturb-a-gaussian.png)"):
        assert head in md_opaque
    curves = lambda text: text[text.index("### Robustness curves"):text.index("## Settings")]  # noqa: E731
    assert curves(md_opaque) == curves(md)
    assert "#0?" not in md_opaque.split("## Robustness")[0]  # curve points are not plain columns
    # i2m2 on perturb:a:gaussian, seed 0: 0.85, 0.75, 0.65 at levels 0, 0.5, 1 -> area 0.75,
    # RR = 0.75 / 0.85; seed 1: 0.77 / 0.87. ER = 0: it drops exactly like late_fusion.
    rr = [0.75 / 0.85, 0.77 / 0.87]
    line = next(ln for ln in curves(md_opaque).splitlines() if ln.startswith("| `i2m2`"))
    cells = [c.strip() for c in line.split("|")[2:-1]]  # missing_rate RR, ER, perturb RR, ER
    half = 12.706205 * statistics.stdev(rr) / 2 ** 0.5  # 95% t half-width, 2 seeds
    assert cells[2:] == [f"{statistics.fmean(rr):.3f} ± {half:.3f}", "0.00 ± 0.00"]
    figs, figs_opaque = (StandardLayout().figure_bytes(r, "demo") for r in (plain, opaque))
    assert sorted(figs_opaque) == ["demo-missing-rate.png", "demo-perturb-a-gaussian.png"]
    assert figs_opaque == figs  # same figures, byte for byte
    paths = StandardLayout().figures(opaque, tmp_path, "demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(figs) == sorted(p.name for p in paths)
    assert paths[0].read_bytes() == figs_opaque[paths[0].name]


def test_a_recorded_kind_places_a_protocol_in_the_missing_table(make_row):
    rows = [make_row("a", s, "test", 0.5 + 0.1 * s) for s in (0, 1)]
    rows += [{**make_row("a", s, "no modality b", 0.3), "kind": "missing"} for s in (0, 1)]
    md = render_markdown(rows)
    assert "### Missing modalities" in md and "no modality b accuracy" not in md


def test_the_board_names_the_machines_whose_numerics_made_its_rows(demo_rows):
    """Rows carry the numerics of their run (CPU, kernel capability, threads); the board names
    the machine, and warns when its rows mix machines (a unit hash names settings, not numbers)."""
    avx512 = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "threads": 2, "deterministic": True,
              "torch": "2.9.1"}
    avx2 = {**avx512, "cpu_capability": "AVX2"}
    one = [{**r, "numerics": avx512} for r in demo_rows]
    md = render_markdown(one)
    assert "Made on cpu: AMD EPYC, AVX512, 2 threads" in md and "machines" not in md
    mixed = [{**r, "numerics": avx2 if r["method"] == "beta" and r["seed"] == 1 else avx512}
             for r in demo_rows]
    md = render_markdown(mixed)
    assert "**Rows from 2 machines**: cpu: AMD EPYC, AVX2, 2 threads; cpu: AMD EPYC, AVX512" in md
    beta = next(ln for ln in md.split("## Settings")[1].splitlines() if ln.startswith("| `beta`"))
    assert "AVX2" in beta and "AVX512" in beta  # the method whose seeds mix machines


def test_every_run_records_the_numerics_that_decide_its_numbers():
    import subprocess
    import sys

    import torch

    from i2m2bench.harness.store import provenance

    n = provenance(torch.device("cpu"))["numerics"]
    assert n["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert n["threads"] == torch.get_num_threads() and n["deterministic"] is True
    forced = subprocess.run(
        [sys.executable, "-c", "import torch; from i2m2bench.numerics import numerics; "
         "print(numerics(torch.device('cpu'))['cpu_capability'])"],
        env={**__import__("os").environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True, text=True, check=True)
    assert forced.stdout.strip() == "DEFAULT"  # the kernels PyTorch was forced onto


def test_vqa_vs_board_links_the_share_measured_at_full_size():
    """The VQA-VS board (embedded, 22 answers) points to the PoE share measured at VQA's real
    answer count in poe_kernel.md, and that section exists there; other boards do not."""
    from i2m2bench.harness.store import quiet, read_rows
    from i2m2bench.reporting.board import render_markdown

    lb = Path(__file__).resolve().parents[1] / "leaderboards"
    vqa = render_markdown(read_rows(lb / "results" / "vqa_vs-embedded-vqa_vs.jsonl", report=quiet))
    link = "poe_kernel.md#the-poes-share-of-an-i2m2-training-step-at-vqa-size"
    assert link in vqa
    assert "## The PoE's share of an I2M2 training step at VQA size" in \
        (lb / "poe_kernel.md").read_text(encoding="utf-8")
    nlvr2 = render_markdown(read_rows(lb / "results" / "nlvr2-embedded-nlvr2.jsonl", report=quiet))
    assert link not in nlvr2
