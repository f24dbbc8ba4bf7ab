"""The result store heals itself from run directories (``metrics.json`` is the truth of a
completed unit): torn or cut rows, a deleted results file, rows whose scores differ and an
unreadable ``metrics.json`` are repaired without retraining, each repair logged in one line;
lines the store does not understand are reported with file and line and kept verbatim; the
leaderboard renders the rest and says what it left out; ``leaderboard --check`` refuses a
missing or empty folder; replacing rows made with other numerics is said."""
import datetime as dt
import json
import math

import pytest

from i2m2bench.cli import main
from i2m2bench.harness import store
from i2m2bench.harness.store import read_records, read_rows

from .conftest import BOARD, SMALL


def lines_of(path):
    return path.read_text(encoding="utf-8").splitlines()


def values(path):
    """(method, seed, protocol, metric, value, date) of every row: what a board shows."""
    return sorted((r["method"], r["seed"], r["protocol"], r["metric"], r["value"], r["date"])
                  for r in read_rows(path, report=store.quiet))


def values_of_bytes(data, like):
    """:func:`values` of a results file's former bytes (written beside ``like``)."""
    path = like.with_name("original.jsonl")
    path.write_bytes(data)
    return values(path)


def unit_line(trained, method):
    """Index of ``method``'s unit record in the results file."""
    for i, line in enumerate(lines_of(trained.results)):
        if f'"method": "{method}"' in line and '"record": "unit"' in line:
            return i
    raise AssertionError(method)


def clean(err):
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------ torn and cut rows
def test_torn_last_line_is_re_emitted_without_retraining(trained, capsys):
    lines = lines_of(trained.results)
    last = lines[-1]
    assert '"method": "late_fusion"' in last
    trained.results.write_text("\n".join(lines[:-1] + [last[:len(last) // 3]]), encoding="utf-8")
    before = trained.mtimes()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert f"{trained.results}:{len(lines)}: a malformed line" in err  # the culprit, file:line
    assert f"{trained.results}: re-emitted the rows of late_fusion/seed0 from" in err
    assert "nothing to train" not in out
    assert trained.mtimes() == before  # nothing retrained
    # the torn line was the start of the record written again: the file is whole, as it was
    assert trained.results.read_bytes() == trained.original


def test_row_cut_in_half_in_the_middle(trained, capsys):
    lines = lines_of(trained.results)
    i = unit_line(trained, "a_only")
    assert 0 < i < len(lines) - 1
    lines[i] = lines[i][:len(lines[i]) // 2]
    trained.results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = trained.mtimes()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert f"{trained.results}:{i + 1}: a malformed line, not JSON" in err
    assert "re-emitted the rows of a_only/seed0" in err and "(missing)" in err
    assert f"{trained.results}:{i + 1}: dropped a torn line" in err
    assert "re-emitted the rows of b_only" not in err  # the others were whole
    assert trained.mtimes() == before
    assert values(trained.results) == values_of_bytes(trained.original, trained.results)


def test_deleted_results_file_is_rebuilt_with_original_dates(trained, capsys):
    trained.results.unlink()
    before = trained.mtimes()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    for m in SMALL:
        assert f"{trained.results}: re-emitted the rows of {m}/seed0 from " in err
    assert "missing: the results file did not exist" in err
    assert "nothing to train" not in out  # the summary counts the units re-emitted
    assert "0 unit(s) trained or evaluated now, 3 repaired in the results file" in out
    assert trained.mtimes() == before  # no unit trained
    assert "training" not in err
    assert trained.results.read_bytes() == trained.original  # same rows, same dates, same order


def test_rebuilt_rows_are_in_the_api_summary(trained):
    from i2m2bench.harness.runner import run_suite

    from .conftest import TOY

    trained.results.unlink()
    run = run_suite([TOY], seeds=[0], methods=list(SMALL), out=trained.runs, results_dir=trained.lb,
                    progress=False, log=lambda s: None)
    assert sorted(s["unit"] for s in run.summary) == sorted(f"{m}/seed0" for m in SMALL)
    assert all(s["repaired"].startswith("rows re-emitted") and "test" in s for s in run.summary)
    assert len(run.repairs) == 3 and [i.action for i in run.plan] == ["skip"] * 3


def test_scores_that_differ_from_metrics_json_are_replaced(trained, capsys):
    i = unit_line(trained, "b_only")
    lines = lines_of(trained.results)
    rec = json.loads(lines[i])
    truth = next(s["value"] for s in rec["scores"] if s["protocol"] == "test")
    for s in rec["scores"]:
        if s["protocol"] == "test":
            s["value"] = 0.999
    lines[i] = json.dumps(rec, sort_keys=True)
    trained.results.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert "re-emitted the rows of b_only/seed0" in err
    assert f"test accuracy: 0.999 in the file, {truth!r} in metrics.json" in err
    assert values(trained.results) == values_of_bytes(trained.original, trained.results)


def test_a_healthy_store_is_left_alone(trained, capsys):
    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0 and "re-emitted" not in err and "nothing to train" in out
    assert trained.results.read_bytes() == trained.original


# ------------------------------------------------------------------------------ metrics.json
@pytest.mark.parametrize("damage", ["truncated", "string value", "empty"])
def test_unreadable_metrics_json_is_re_evaluated_from_the_checkpoint(trained, capsys, damage):
    d = trained.unit_dir("late_fusion")
    metrics = d / "metrics.json"
    good = json.loads(metrics.read_text())
    if damage == "truncated":
        metrics.write_text(metrics.read_text()[:40])
    elif damage == "string value":
        bad = json.loads(metrics.read_text())
        bad["scores"][1]["value"] = "0.5"
        metrics.write_text(json.dumps(bad))
    else:
        metrics.write_text("")
    before = trained.mtimes()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert f"{metrics}: unreadable or not verified (" in err and "re-evaluating late_fusion/seed0 from" in err
    assert "its stored rows agree and are kept" in err
    assert "training late_fusion" not in err and trained.mtimes() == before  # not retrained
    assert "nothing to train" not in out
    again = json.loads(metrics.read_text())
    assert again["scores"] == good["scores"] and again["date"] == good["date"]
    assert trained.results.read_bytes() == trained.original
    code, out, err = trained.run(capsys=capsys)  # healed: the next run skips it
    assert code == 0 and "re-evaluating" not in err and "nothing to train" in out


def test_unreadable_metrics_json_and_deleted_results_file(trained, capsys):
    d = trained.unit_dir("a_only")
    good = json.loads((d / "metrics.json").read_text())
    (d / "metrics.json").write_text("{not json")
    trained.results.unlink()
    before = trained.mtimes()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert "re-evaluating a_only/seed0" in err and "its rows were missing and are written, dated now" in err
    assert "re-emitted the rows of b_only/seed0" in err and "re-emitted the rows of late_fusion/seed0" in err
    assert trained.mtimes() == before
    rows = [r for r in read_rows(trained.results) if r["method"] == "a_only" and r["protocol"] != "train"]
    assert sorted((r["protocol"], r["value"]) for r in rows) == sorted(
        (s["protocol"], s["value"]) for s in good["scores"])
    figures = {r["metric"] for r in read_rows(trained.results) if r["method"] == "a_only"
               and r["protocol"] == "train"}
    assert {"epochs_run", "best_epoch", "eval_seconds"} <= figures  # timings of training are lost


def test_metrics_json_without_dates_is_re_dated_by_its_mtime(trained, capsys):
    d = trained.unit_dir("b_only")
    metrics = json.loads((d / "metrics.json").read_text())
    for k in ("date", "provenance"):  # as written before metrics.json kept them
        metrics.pop(k)
    (d / "metrics.json").write_text(json.dumps(metrics))
    trained.results.unlink()

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert "re-emitted the rows of b_only/seed0" in err and "dated by the modification time" in err
    mtime = dt.datetime.fromtimestamp((d / "metrics.json").stat().st_mtime, dt.timezone.utc)
    assert {r["date"] for r in read_rows(trained.results) if r["method"] == "b_only"} == {
        mtime.isoformat(timespec="seconds")}
    others = [r for r in read_rows(trained.results) if r["method"] != "b_only"]
    assert others and all(r["date"] < mtime.isoformat() for r in others)  # kept their dates


# ------------------------------------------------------------------------------ lines it does not understand
def test_lines_it_does_not_understand_are_reported_and_kept_verbatim(trained, capsys):
    lines = lines_of(trained.results)
    rec = json.loads(lines[unit_line(trained, "a_only")])
    rec["scores"][1]["value"] = "0.36"
    odd = ["<<<<<<< HEAD", '{"name": "my_method", "score": 0.93}', json.dumps(rec, sort_keys=True),
           ">>>>>>> theirs"]
    trained.results.write_text("\n".join(lines[:2] + odd[:2] + lines[2:] + odd[2:]) + "\n",
                               encoding="utf-8")

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0
    assert f"{trained.results}:3: a merge-conflict marker (<<<<<<< HEAD)" in err
    assert f"{trained.results}:4: not a result record (keys: name, score)" in err
    assert f"{trained.results}:{len(lines) + 3}: a unit record whose scores[1].value is a string" in err
    assert f"{trained.results}:{len(lines) + 4}: a merge-conflict marker (>>>>>>> theirs)" in err
    assert "re-emitted" not in err  # every unit's rows are there
    now = lines_of(trained.results)
    assert all(line in now for line in odd)  # kept verbatim
    assert values(trained.results) == values_of_bytes(trained.original, trained.results)


def test_a_write_keeps_damaged_lines_at_the_end(trained):
    extra = ["<<<<<<< HEAD", '{"record": "unit", "method": 7}', "garbage that is not json"]
    with open(trained.results, "a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
    i = unit_line(trained, "a_only")
    rec = json.loads(lines_of(trained.results)[i])
    provs, _ = read_records(trained.results, report=store.quiet)
    prov = provs[rec["provenance"]]
    rec["date"] = "2026-12-01T00:00:00+00:00"
    notes = store.upsert_unit(trained.results, rec, prov)
    assert notes == []
    assert lines_of(trained.results)[-3:] == extra  # at the end, as they were


def test_leaderboard_renders_the_rest_and_says_what_it_skipped(trained, capsys):
    with open(trained.results, "a", encoding="utf-8") as fh:
        fh.write('=======\n{"board": "x", "value": "high"}\n')
    n = len(lines_of(trained.results))
    capsys.readouterr()
    code = main(["leaderboard", "--leaderboard-dir", str(trained.lb)])
    out, err = capsys.readouterr()
    clean(err)
    assert code == 0 and f"wrote {trained.board_md}" in out
    assert f"{trained.results}:{n - 1}: a merge-conflict marker" in err
    assert f"{trained.results}:{n}: not a result record (keys: board, value)" in err
    md = trained.board_md.read_text()
    assert "**Left out of this board:** 2 line(s) of `results/" + BOARD + ".jsonl`" in md
    assert f"line {n - 1}: a merge-conflict marker" in md
    for m in SMALL:
        assert f"(`{m}`)" in md  # the rest is rendered
    assert main(["leaderboard", "--check", "--leaderboard-dir", str(trained.lb)]) == 0


# ------------------------------------------------------------------------------ leaderboard --check
@pytest.mark.parametrize("folder", ["missing", "empty", "empty results"])
def test_leaderboard_check_fails_on_a_folder_without_boards(tmp_path, capsys, folder):
    lb = tmp_path / "lb"
    if folder != "missing":
        lb.mkdir()
    if folder == "empty results":
        (lb / "results").mkdir()
    code = main(["leaderboard", "--check", "--leaderboard-dir", str(lb)])
    out, err = capsys.readouterr()
    clean(err)
    assert code == 1
    assert str(lb) in err and ("no such folder" in err if folder == "missing" else "holds no boards" in err)
    assert "up to date" not in out + err
    assert lb.exists() == (folder != "missing")  # the check creates nothing


def test_leaderboard_render_of_a_missing_folder_is_an_error(tmp_path, capsys):
    code = main(["leaderboard", "--leaderboard-dir", str(tmp_path / "nope")])
    err = clean(capsys.readouterr().err)
    assert code == 2 and f"{tmp_path / 'nope'}: no such folder" in err
    assert not (tmp_path / "nope").exists()


# ------------------------------------------------------------------------------ numerics
def _prov(**numerics):
    base = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "threads": 2, "deterministic": True,
            "torch": "2.9.1"}
    return {"git_commit": "abc", "device": "cpu", "torch_version": "2.9.1", "numerics": {**base, **numerics}}


def _unit(make_row, value=0.5, date="2026-01-01T00:00:00+00:00"):
    base = {k: v for k, v in make_row("alpha", 0, "test", 0.0).items()
            if k not in store.SCORE_FIELDS and k not in store.PROVENANCE_FIELDS and k != "date"}
    score = {"protocol": "test", "kind": "test", "metric": "accuracy", "value": value,
             "higher_is_better": True, "curve": None, "level": None}
    return base, [score]


def test_replacing_rows_made_with_other_numerics_is_said(tmp_path, make_row):
    path = tmp_path / "results" / "n.jsonl"
    base, scores = _unit(make_row)
    assert store.upsert_unit(path, *store.make_record(base, _prov(), scores, {}, "d1")) == []
    # the same numerics again: silent
    assert store.upsert_unit(path, *store.make_record(base, _prov(), scores, {}, "d2")) == []
    # another machine's numbers for the same unit hash and seed
    notes = store.upsert_unit(path, *store.make_record(base, _prov(cpu_capability="AVX2", threads=8),
                                                       scores, {}, "d3"), label="alpha/seed0")
    assert notes == ["alpha/seed0: replacing rows made with numerics cpu_capability=AVX512, threads=2 "
                     "by rows made with numerics cpu_capability=AVX2, threads=8"]
    # adding protocols beside them (nothing superseded) replaces nothing
    base2, more = _unit(make_row)
    more[0] = {**more[0], "protocol": "shift:x", "kind": "shift"}
    assert store.upsert_unit(path, *store.make_record(base2, _prov(), more, {}, "d4"), replace=False) == []
    # rows made before numerics were recorded: nothing to compare, nothing said
    old = {k: v for k, v in _prov().items() if k != "numerics"}
    store.upsert_unit(path, *store.make_record(base, old, scores, {}, "d5"))
    assert store.upsert_unit(path, *store.make_record(base, _prov(threads=4), scores, {}, "d6")) == []
    _, units = read_records(path)
    assert [u["date"] for u in units] == ["d6"]


def test_heal_says_when_it_replaces_another_machines_rows(tmp_path, make_row):
    path = tmp_path / "results" / "n.jsonl"
    base, scores = _unit(make_row, value=0.61)
    store.upsert_unit(path, *store.make_record(base, _prov(cpu="Intel Xeon"), scores, {}, "d1"))
    base, truth = _unit(make_row, value=0.6)
    sync = store.sync_unit(path, [store.make_record(base, _prov(), truth, {}, "d2")], label="alpha/seed0")
    assert "1 score(s) differ" in sync.repaired and "0.61 in the file, 0.6 in metrics.json" in sync.repaired
    assert sync.notes == ["alpha/seed0: replacing rows made with numerics cpu=Intel Xeon by rows made "
                          "with numerics cpu=AMD EPYC"]
    again = store.sync_unit(path, [store.make_record(base, _prov(), truth, {}, "d2")])
    assert again.repaired is None and again.notes == []


def test_a_rerun_on_other_numerics_says_so(trained, capsys):
    lines = lines_of(trained.results)
    prov = json.loads(lines[0])
    assert prov["record"] == "provenance"
    here = json.loads(trained.original.splitlines()[0])["numerics"]
    # numerics no real machine records (an AVX2 or AVX-512 CPU, any thread count, runs this test)
    other_isa, other_threads = "OTHER_ISA", here["threads"] + 1000
    prov["numerics"] = {**prov["numerics"], "threads": other_threads, "cpu_capability": other_isa}
    lines[0] = json.dumps(prov, sort_keys=True)  # as if made on another machine
    trained.results.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = trained.run("--force", capsys=capsys, methods=("a_only",))
    clean(err)
    assert code == 0
    assert (f"a_only/seed0: replacing rows made with numerics cpu_capability={other_isa}, "
            f"threads={other_threads} by rows made with numerics "
            f"cpu_capability={here['cpu_capability']}, threads={here['threads']}") in err
    assert "b_only" not in err.split("replacing rows")[1].split("\n")[0]


def test_nan_scores_compare_equal(tmp_path, make_row):
    path = tmp_path / "results" / "n.jsonl"
    base, scores = _unit(make_row, value=math.nan)
    rec = store.make_record(base, _prov(), scores, {"x": math.nan}, "d1")
    store.upsert_unit(path, *rec)
    assert store.sync_unit(path, [rec]).repaired is None


def test_metrics_json_without_dates_learns_them_from_rows_that_agree(trained, capsys):
    d = trained.unit_dir("a_only")
    metrics = json.loads((d / "metrics.json").read_text())
    old = {k: v for k, v in metrics.items() if k not in ("date", "provenance")}
    (d / "metrics.json").write_text(json.dumps(old))

    code, out, err = trained.run(capsys=capsys)
    clean(err)
    assert code == 0 and "re-emitted" not in err and "nothing to train" in out
    assert json.loads((d / "metrics.json").read_text()) == metrics  # dates back from the rows
    trained.results.unlink()  # so a later rebuild keeps them
    code, out, err = trained.run(capsys=capsys)
    assert code == 0 and "dated by the modification time" not in err
    assert trained.results.read_bytes() == trained.original


def test_a_line_that_is_not_utf8_is_reported_and_kept_byte_for_byte(tmp_path, make_row, capsys):
    path = tmp_path / "results" / "b.jsonl"
    store.upsert_unit_rows(path, [make_row("alpha", 0, "test", 0.5)])
    odd = b'{"note": "caf\xe9 latin-1"}\n'
    with open(path, "ab") as fh:
        fh.write(odd)
    n = len(path.read_bytes().splitlines())
    capsys.readouterr()
    assert len(read_rows(path)) == 1
    assert f"{path}:{n}: " in capsys.readouterr().err
    store.upsert_unit_rows(path, [make_row("beta", 0, "test", 0.7, unit="u2")])
    assert path.read_bytes().endswith(odd)
    assert {r["method"] for r in read_rows(path, report=store.quiet)} == {"alpha", "beta"}


def test_rows_added_by_a_later_evaluation_are_rebuilt_as_they_were(trained, capsys):
    more = ("--gin-param", "suite.protocols = ['test', 'shift:*', 'missing:a']")
    code, out, err = trained.run(*more, capsys=capsys)
    assert code == 0 and err.count("evaluating 1 new protocol(s)") == 3
    _, units = read_records(trained.results)
    assert len(units) == 6  # each unit: its training record and the later one
    whole = trained.results.read_bytes()
    trained.results.unlink()
    code, out, err = trained.run(*more, capsys=capsys)
    clean(err)
    assert code == 0 and err.count("re-emitted the rows of") == 3
    # both records of each unit, dates and all (grouped by unit now, not by run)
    assert sorted(trained.results.read_bytes().splitlines()) == sorted(whole.splitlines())
