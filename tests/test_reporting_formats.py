"""Boards as tables (``leaderboard --format csv|json``) and the console summary of a run: the
numbers are the board's (latest unit per method, mean and sample std over seeds), checked by
hand on constructed rows and parsed without pandas."""
import csv
import io
import json
import math

import pytest

from i2m2bench.cli import main
from i2m2bench.harness.publish import export_board, find_board
from i2m2bench.harness.store import upsert_unit_rows
from i2m2bench.reporting import board_is_stale, board_table, summary_table, to_csv, to_json, write_board
from i2m2bench.reporting.rows import protocol_kind

SQRT_02 = math.sqrt(0.02)  # sample std of {0.5, 0.7} and of {0.4, 0.6}
SQRT_005 = math.sqrt(0.005)  # sample std of {0.75, 0.85}


def _by_method(table):
    return {rec["method"]: rec for rec in table}


def test_board_table_by_hand(demo_rows):
    table = board_table(demo_rows)
    assert [r["method"] for r in table] == ["alpha", "beta"]  # unimodal before inter
    assert list(table[0])[:6] == ["method", "label", "family", "fusion", "recipe", "seeds"]
    assert list(table[0]) == list(table[1])  # one shape for every record
    a, b = _by_method(table)["alpha"], _by_method(table)["beta"]
    assert a["label"] == "ALPHA" and a["family"] == "unimodal" and a["seeds"] == 2
    assert a["test/accuracy/mean"] == pytest.approx(0.6)
    assert a["test/accuracy/std"] == pytest.approx(SQRT_02)
    # beta's older unit (0.99) is ignored, as on the board
    assert b["test/accuracy/mean"] == pytest.approx(0.8) and b["test/accuracy/std"] == pytest.approx(SQRT_005)
    assert a["shift:x/accuracy/mean"] == pytest.approx(0.5) and b["shift:x/accuracy/mean"] == pytest.approx(0.3)
    assert b["train/samples_per_s/mean"] == pytest.approx(100.5)
    assert a["train/samples_per_s/mean"] is None and a["train/samples_per_s/std"] is None
    cols = list(table[0])
    assert cols.index("test/accuracy/mean") < cols.index("shift:x/accuracy/mean") \
        < cols.index("train/samples_per_s/mean")


def test_one_seed_has_no_std(make_row):
    table = board_table([make_row("alpha", 0, "test", 0.25)])
    assert table[0]["test/accuracy/mean"] == 0.25 and table[0]["test/accuracy/std"] is None


def test_board_table_with_settings_has_one_record_per_setting_and_method(make_row):
    rows = []
    for setting, base in (("lo", 0.2), ("hi", 0.6)):
        for seed in (0, 1):
            for m, fam in (("alpha", "unimodal"), ("beta", "inter")):
                rows.append({**make_row(m, seed, "test", base + 0.1 * seed + (m == "beta") * 0.1,
                                        unit=f"{setting}-{m}", family=fam), "setting": setting})
    table = board_table(rows)
    assert [(r["setting"], r["method"]) for r in table] == [
        ("hi", "alpha"), ("hi", "beta"), ("lo", "alpha"), ("lo", "beta")]
    assert list(table[0])[0] == "setting"
    rec = {(r["setting"], r["method"]): r for r in table}
    assert rec["lo", "beta"]["test/accuracy/mean"] == pytest.approx(0.35)  # 0.3, 0.4
    assert rec["hi", "alpha"]["test/accuracy/mean"] == pytest.approx(0.65)  # 0.6, 0.7


def test_csv_and_json_parse_back_without_pandas(demo_rows):
    table = board_table(demo_rows)
    parsed = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["method"] for r in parsed] == ["alpha", "beta"]
    assert float(parsed[0]["test/accuracy/mean"]) == table[0]["test/accuracy/mean"]  # full precision
    assert parsed[0]["train/samples_per_s/mean"] == ""  # None -> empty cell
    assert json.loads(to_json(table)) == table


@pytest.fixture
def folder(tmp_path, demo_rows):
    upsert_unit_rows(tmp_path / "results" / "demo-embedded-demo.jsonl", demo_rows)
    return tmp_path


def test_cli_exports_csv_and_json(folder, capsys):
    assert main(["leaderboard", "--format", "csv", "--leaderboard-dir", str(folder)]) == 0
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert float(rows["alpha"]["test/accuracy/mean"]) == pytest.approx((0.5 + 0.7) / 2)
    assert float(rows["beta"]["test/accuracy/std"]) == pytest.approx(SQRT_005)
    assert rows["alpha"]["seeds"] == "2"

    assert main(["leaderboard", "--format", "json", "--board", "demo-embedded-demo",
                 "--leaderboard-dir", str(folder)]) == 0
    recs = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert recs["beta"]["shift:x/accuracy/mean"] == pytest.approx((0.25 + 0.35) / 2)
    assert recs["alpha"]["shift:x/accuracy/std"] == pytest.approx(SQRT_02)

    out = folder / "x" / "demo.csv"
    assert main(["leaderboard", "--format", "csv", "--output", str(out),
                 "--leaderboard-dir", str(folder)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text() == export_board(folder, None, "csv")
    assert not (folder / "demo-embedded-demo.md").exists()  # exporting renders nothing


def test_cli_asks_which_board_when_there_are_several(folder, demo_rows, capsys):
    upsert_unit_rows(folder / "results" / "other.jsonl", demo_rows)
    assert main(["leaderboard", "--format", "json", "--leaderboard-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "--board" in err and "demo-embedded-demo" in err and "other" in err
    assert main(["leaderboard", "--format", "csv", "--board", "nope",
                 "--leaderboard-dir", str(folder)]) == 2
    assert "no board 'nope'" in capsys.readouterr().err
    assert find_board(folder, "other") == folder / "results" / "other.jsonl"
    assert main(["leaderboard", "--format", "csv", "--check", "--leaderboard-dir", str(folder)]) == 2


def test_cli_md_renders_and_checks_one_board(folder, demo_rows, capsys):
    upsert_unit_rows(folder / "results" / "other.jsonl", demo_rows)
    assert main(["leaderboard", "--board", "other", "--leaderboard-dir", str(folder)]) == 0
    assert (folder / "other.md").exists() and not (folder / "demo-embedded-demo.md").exists()
    assert main(["leaderboard", "--check", "--board", "other", "--leaderboard-dir", str(folder)]) == 0
    assert main(["leaderboard", "--check", "--leaderboard-dir", str(folder)]) == 1
    assert "demo-embedded-demo.md: missing" in capsys.readouterr().err


# ------------------------------------------------------------------------------ files
def test_write_board_and_staleness(tmp_path, demo_rows):
    md = tmp_path / "demo.md"
    assert "missing" in board_is_stale(demo_rows, md)
    assert write_board(demo_rows, tmp_path, "demo") == md
    assert board_is_stale(demo_rows, md) is None
    md.write_text(md.read_text() + "edited\n")
    assert "differs" in board_is_stale(demo_rows, md, source="r.jsonl")
    assert [p.name for p in tmp_path.iterdir()] == ["demo.md"]  # no figure, no temporary left


# ------------------------------------------------------------------------------ console summary
def test_summary_table_by_hand(demo_rows, make_row):
    rows = demo_rows + [make_row("alpha", s, "val", 0.9) for s in (0, 1)]
    text = summary_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("demo-embedded-demo: accuracy (%), mean ± sample std")
    head = lines[1].split()
    assert head == ["Method", "Seeds", "test", "shift:x", "val"]  # scored only, val last
    assert set(lines[2]) <= {"-", " "}  # tabulate "simple"
    alpha = next(ln for ln in lines if ln.startswith("alpha"))
    beta = next(ln for ln in lines if ln.startswith("beta"))
    assert "60.00 ± 14.14" in alpha and "50.00 ± 14.14" in alpha and "90.00" in alpha
    assert "80.00 ± 7.07" in beta and "30.00 ± 7.07" in beta and beta.rstrip().endswith("—")
    assert "99.00" not in text and "samples" not in text  # old unit ignored; no training figures
    assert lines.index(alpha) < lines.index(beta)


def test_summary_table_with_settings_and_without_scores(make_row):
    rows = [{**make_row("alpha", 0, "test", 0.5, unit=s), "setting": s} for s in ("lo", "hi")]
    text = summary_table(rows)
    assert text.splitlines()[1].split()[:2] == ["Setting", "Method"]
    assert [ln.split()[0] for ln in text.splitlines()[3:]] == ["hi", "lo"]
    assert summary_table([make_row("alpha", 0, "train", 1.0, metric="train_seconds")]) == \
        "no scores to summarise"


# ------------------------------------------------------------------------------ kinds
@pytest.mark.parametrize("fields,kind", [
    ({"protocol": "test"}, "test"),
    ({"protocol": "val"}, "val"),
    ({"protocol": "train"}, "train"),
    ({"protocol": "shift:x"}, "shift"),
    ({"protocol": "missing:image"}, "missing"),
    ({"protocol": "p7", "curve": "missing_rate", "level": 0.5}, "missing_rate"),
    ({"protocol": "p8", "curve": "perturb:a:snr", "level": 0.5}, "perturb"),
    ({"protocol": "whatever", "kind": "missing"}, "missing"),  # a recorded kind wins
])
def test_protocol_kind_reads_the_structured_fields_first(fields, kind):
    assert protocol_kind(fields) == kind


def test_summary_table_shows_other_metrics_on_test_only_when_there_are_many(make_row):
    rows = []
    for metric in ("auroc", "auroc/a", "auroc/b"):
        for protocol in ("test", "shift:x", "val"):
            rows.append({**make_row("alpha", 0, protocol, 0.5), "metric": metric,
                         "metrics": ["auroc", "auroc/a", "auroc/b"]})
    text = summary_table(rows)
    header = text.splitlines()[1]
    assert "test auroc/a" in header and "test auroc/b" in header and "shift:x auroc " in header + " "
    assert "shift:x auroc/a" not in header and "val auroc/b" not in header
    assert "besides auroc, on test only" in text.splitlines()[0]
