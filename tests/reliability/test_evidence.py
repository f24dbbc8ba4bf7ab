"""Published numbers verified end to end: ``leaderboard --check`` and ``compare`` recompute every
score a board shows from the unit's published predictions and fail on a results row edited by
hand, prediction files swapped between units, a truncated or stripped prediction file, or a
unit whose file is gone while the others have theirs -- even when the adversary re-rendered the
Markdown so that the board itself looks up to date. Each case asserts the exit code, a message
naming the results file, the unit, the protocol and what differs, and that the check changed no
file."""
import json
import re
import shutil

import pytest

from i2m2bench.predictions import load_predictions, save_predictions

from .conftest import BOARD


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def lb(trained):
    """The trained toy folder (three units, predictions published)."""
    return trained.lb


def cli(capsys, *args):
    from i2m2bench.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def check(capsys, folder):
    """``leaderboard --check`` of ``folder``: (exit code, stdout, stderr); no file changes."""
    before = snapshot(folder)
    result = cli(capsys, "leaderboard", "--check", "--leaderboard-dir", str(folder))
    assert snapshot(folder) == before, "--check changed a file"
    return result


def rerender(capsys, folder):
    """What an adversary does after tampering: render the boards again, so that the Markdown
    matches the (tampered) rows and predictions."""
    code, _, err = cli(capsys, "leaderboard", "--leaderboard-dir", str(folder))
    assert code == 0, err


def edit_score(folder, method, protocol, delta):
    path = folder / "results" / f"{BOARD}.jsonl"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if rec.get("record") == "unit" and rec["method"] == method:
            for s in rec["scores"]:
                if s["protocol"] == protocol:
                    old = s["value"]
                    s["value"] = old + delta
            lines[i] = json.dumps(rec, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    return old


def pred_file(folder, method):
    (path,) = (folder / "predictions" / BOARD / method).glob("*-seed0.npz")
    return path


def test_an_untouched_folder_is_verified(capsys, lb):
    code, out, err = check(capsys, lb)
    assert code == 0, err
    n = int(re.search(r"(\d+) published scores recomputed from their predictions agree", out)[1])
    assert n >= 9  # 3 units x (val, test, shift) at least


def test_a_score_edited_by_hand_is_caught_after_a_rerender(capsys, lb):
    old = edit_score(lb, "late_fusion", "test", 0.05)
    rerender(capsys, lb)  # the board now shows the edited mean: it is "up to date"
    code, _, err = check(capsys, lb)
    assert code == 1, err
    assert "stale:" not in err
    line = next(x for x in err.splitlines() if x.startswith("evidence:"))
    assert re.search(rf"{BOARD}\.jsonl: late_fusion/seed0 \(unit \w+\) test accuracy: the row "
                     rf"says {re.escape(repr(old + 0.05))}, its predictions \(.*late_fusion.*"
                     rf"-seed0\.npz\) give {re.escape(repr(old))}", line), line


def test_swapped_prediction_files_are_caught(capsys, lb):
    a, b = pred_file(lb, "a_only"), pred_file(lb, "b_only")
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    rerender(capsys, lb)  # significance marks now come from the swapped files
    code, _, err = check(capsys, lb)
    assert code == 1, err
    bad = [x for x in err.splitlines() if x.startswith("evidence:")]
    assert any("a_only/seed0" in x for x in bad) and any("b_only/seed0" in x for x in bad), err


def test_a_truncated_prediction_file_is_one_line_naming_it(capsys, lb):
    path = pred_file(lb, "b_only")
    path.write_bytes(path.read_bytes()[:200])
    code, _, err = check(capsys, lb)
    assert code == 1
    bad = [x for x in err.splitlines() if x.startswith("evidence:")]
    assert len(bad) == 1 and "Traceback" not in err, err
    assert re.search(r"b_only/seed0 \(unit \w+\): .*b_only.*-seed0\.npz: cannot read the "
                     r"predictions \(BadZipFile", bad[0]), bad[0]
    assert re.search(rf"stale: .*{BOARD}\.md: cannot be rendered to compare \(.*b_only.*-seed0"
                     r"\.npz: cannot read the predictions", err), err


def test_a_protocol_stripped_from_a_prediction_file_is_caught(capsys, lb):
    path = pred_file(lb, "a_only")
    pred = load_predictions(path)
    save_predictions(path, pred.only([p for p in pred.pred if p != "test"]))
    code, _, err = check(capsys, lb)
    assert code == 1
    assert re.search(r"a_only/seed0 \(unit \w+\) test accuracy: .*a_only.*-seed0\.npz holds no "
                     r"predictions for 'test' \(it has .*val", err), err


def test_one_units_predictions_gone_is_caught(capsys, lb):
    pred_file(lb, "late_fusion").unlink()
    rerender(capsys, lb)
    code, _, err = check(capsys, lb)
    assert code == 1
    assert re.search(r"late_fusion/seed0 \(unit \w+\) test accuracy: no predictions at .*"
                     r"late_fusion.*-seed0\.npz \(other units of this board have theirs\)", err), err


def test_a_board_without_any_predictions_is_unverified_not_wrong(capsys, lb):
    shutil.rmtree(lb / "predictions")
    rerender(capsys, lb)
    code, out, err = check(capsys, lb)
    assert code == 0, err
    assert f"no predictions to check for {lb / 'results' / BOARD}.jsonl" in out
    assert "0 published scores recomputed" in out


def test_compare_refuses_a_side_its_own_evidence_contradicts(capsys, lb, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(lb, other)
    code, out, err = cli(capsys, "compare", str(lb), str(other))
    assert code == 0, err  # identical, verified folders
    edit_score(other, "a_only", "val", -0.1)
    before = snapshot(other)
    code, out, err = cli(capsys, "compare", str(lb), str(other))
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(rf"error: {re.escape(str(other))}/results/{BOARD}\.jsonl: a_only/seed0 "
                     r"\(unit \w+\) val accuracy: the row says .* give .*leaderboard --check "
                     rf"--leaderboard-dir {re.escape(str(other))}` lists every one", lines[0]), lines[0]
    assert snapshot(other) == before


# ------------------------------------------- a run folder's metrics.json against its predictions
def _edit_metrics(path, protocol, delta):
    data = json.loads(path.read_text())
    for s in data["scores"]:
        if s["protocol"] == protocol:
            s["value"] += delta
    path.write_text(json.dumps(data, indent=1))


@pytest.mark.parametrize("tamper", ["edited score", "other unit's predictions"])
def test_a_metrics_json_its_predictions_contradict_is_never_published(trained, capsys, tamper):
    """The run folder's metrics.json, from which the store heals, is itself verified against
    predictions.npz: an edited score (or the predictions of another unit) makes the unit one to
    evaluate again from its checkpoint -- no retraining, the true rows kept -- never rows to
    re-emit."""
    unit = trained.unit_dir("late_fusion")
    metrics = unit / "metrics.json"
    original = json.loads(metrics.read_text())
    if tamper == "edited score":
        _edit_metrics(metrics, "test", 0.25)
        why = r"its test accuracy is [\d.]+ but .*late_fusion.*predictions\.npz gives [\d.]+"
    else:
        (unit / "predictions.npz").write_bytes(
            (trained.unit_dir("a_only") / "predictions.npz").read_bytes())
        why = r"its \w+ accuracy is [\d.]+ but .*late_fusion.*predictions\.npz gives [\d.]+"
    mtimes = trained.mtimes()
    board = trained.board_md.read_bytes()
    code, _, err = trained.run(capsys=capsys)
    assert code == 0, err
    assert re.search(rf"{re.escape(str(metrics))}: unreadable or not verified \({why}\); "
                     r"re-evaluating late_fusion/seed0 from .*model\.pt \(no retraining\)", err), err
    assert trained.mtimes() == mtimes  # nothing retrained
    assert trained.results.read_bytes() == trained.original  # the true rows, kept as they were
    assert trained.board_md.read_bytes() == board
    again = json.loads(metrics.read_text())
    assert [s["value"] for s in again["scores"]] == [s["value"] for s in original["scores"]]
    code, out, err = check(capsys, trained.lb)
    assert code == 0, err


# ------------------------------------------------------------- checkpoints verified by digest
def test_unit_json_records_the_checkpoints_digest(trained):
    import hashlib

    for method in ("a_only", "b_only", "late_fusion"):
        unit = trained.unit_dir(method)
        recorded = json.loads((unit / "unit.json").read_text())["checkpoint_sha256"]
        assert recorded == hashlib.sha256((unit / "model.pt").read_bytes()).hexdigest()


def test_i2m2_refuses_an_expert_checkpoint_that_is_not_the_experts(trained, capsys):
    """Another method's model.pt copied over an expert's: I2M2 does not fine-tune from it."""
    expert = trained.unit_dir("a_only") / "model.pt"
    expert.write_bytes((trained.unit_dir("b_only") / "model.pt").read_bytes())
    board = trained.board_md.read_bytes()
    code, _, err = trained.run(capsys=capsys, methods=("i2m2",))
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(r"error: .*a_only.*model\.pt: cannot load the checkpoint of a_only/seed0 "
                     r"\(ValueError: it is not the checkpoint this unit trained: its sha256 is "
                     r"\w+…, unit\.json records \w+… .*\); delete .* \(or pass --force\) to "
                     r"retrain it", lines[0]), lines[0]
    assert trained.results.read_bytes() == trained.original
    assert trained.board_md.read_bytes() == board
    assert not list(trained.runs.rglob("i2m2/*/seed0/model.pt"))


def test_a_replaced_checkpoint_is_never_evaluated_as_the_units(trained, capsys):
    """A unit whose metrics.json cannot be read is re-evaluated from its checkpoint -- unless
    that is not the checkpoint it trained: then it is trained again."""
    unit = trained.unit_dir("late_fusion")
    (unit / "model.pt").write_bytes((trained.unit_dir("a_only") / "model.pt").read_bytes())
    (unit / "metrics.json").write_text("{")
    code, _, err = trained.run(capsys=capsys)
    assert code == 0, err
    assert re.search(r"late_fusion.*model\.pt: cannot load it either \(ValueError: it is not the "
                     r"checkpoint this unit trained: .*\); training late_fusion/seed0 again", err), err
    assert json.loads((unit / "unit.json").read_text())["checkpoint_sha256"] != \
        json.loads((trained.unit_dir("a_only") / "unit.json").read_text())["checkpoint_sha256"]
    code, _, err = check(capsys, trained.lb)
    assert code == 0, err
