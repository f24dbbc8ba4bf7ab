"""One board made on two machines: ``compare_boards``, the ``compare`` command and a board's
Across machines section, on constructed predictions whose marks are known."""
import numpy as np
import pytest

from i2m2bench.cli import main
from i2m2bench.harness.publish import prediction_path, render_all, replicas_of, stale_boards
from i2m2bench.harness.store import upsert_unit_rows
from i2m2bench.predictions import Predictions, save_predictions
from i2m2bench.reporting.machines import Side, compare_boards, comparison_text, machines_section
from i2m2bench.reporting.significance import Evidence

N = 400
BOARD = "demo"


def _pred(correct: np.ndarray, target: np.ndarray) -> Predictions:
    scores = np.full((len(target), 4), -5.0, dtype=np.float32)
    scores[np.arange(len(target)), np.where(correct, target, (target + 1) % 4)] = 0.0
    p = Predictions("multiclass", ("accuracy",))
    p.add("test", "test", scores, target)
    p.add("missing:a", "test", scores, target)
    return p


@pytest.fixture
def target():
    return np.random.default_rng(0).integers(0, 4, N)


@pytest.fixture
def masks():
    """Per method, three seeds' correctness masks: alpha clearly ahead of gamma; beta a hair
    behind alpha (tied), or -- as ``beta_far`` -- far behind."""
    rng = np.random.default_rng(1)
    alpha = [rng.random(N) < 0.9 for _ in range(3)]
    return {"alpha": alpha,
            "beta": [m.copy() for m in alpha],
            "beta_far": [rng.random(N) < 0.7 for _ in range(3)],
            "gamma": [rng.random(N) < 0.5 for _ in range(3)]}


def _side(make_row, name, masks, target, methods=("alpha", "beta", "gamma"), units=None):
    """Rows and predictions of a board whose ``methods`` take the given masks (``beta_far``
    stands in as ``beta`` when named ``beta_far``)."""
    rows, files = [], {}
    for method in methods:
        shown = "beta" if method == "beta_far" else method
        unit = (units or {}).get(shown, "u1")
        for seed, mask in enumerate(masks[method]):
            acc = float(mask.mean())
            rows += [make_row(shown, seed, "test", acc, unit=unit),
                     make_row(shown, seed, "missing:a", acc, unit=unit)]
            rows[-1]["kind"] = "missing"
            files[None, shown, unit, seed] = _pred(mask, target)
    return Side(name, rows, Evidence(lambda key: files.get(key))), files


def _table_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in md.splitlines()
            if ln.startswith("| ")]


def test_the_same_board_twice_agrees_everywhere_and_moves_nothing(make_row, masks, target):
    a, _ = _side(make_row, "here", masks, target)
    b, _ = _side(make_row, "there", masks, target)
    cmp = compare_boards(a, b)
    assert cmp.compared == ["alpha", "beta", "gamma"] and not cmp.other_hash
    assert [c.title for c in cmp.columns] == ["test accuracy", "missing:a accuracy"]
    assert all(c.agree for c in cmp.columns) and cmp.moves() == [0.0] * 6
    # alpha and its copy beta are tied; gamma is behind on both machines
    assert cmp.columns[0].marks[0] == {"alpha": "tied", "beta": "tied"}
    text = comparison_text(cmp)
    assert "test accuracy: SAME" in text and text.rstrip().endswith("2 of 2 marked columns agree")


def test_a_method_in_the_lead_on_one_machine_only_is_at_the_edge(make_row, masks, target):
    a, _ = _side(make_row, "here", masks, target)
    b, _ = _side(make_row, "there", masks, target, methods=("alpha", "beta_far", "gamma"))
    cmp = compare_boards(a, b)
    col = cmp.columns[0]
    assert not col.agree and col.marks[1] == {"alpha": "best"}
    assert col.moves()["beta"] == pytest.approx(
        abs(np.mean([m.mean() for m in masks["beta_far"]]) - np.mean([m.mean() for m in masks["beta"]])))
    assert "test accuracy: DIFFERENT" in comparison_text(cmp)
    md = "\n".join(machines_section(a, [b]))
    # leading on every machine: alpha; at the edge: beta (tied here, behind there)
    assert ["test accuracy", "`alpha`", "`beta`"] in _table_rows(md)
    assert "marks agree in 0 of 2 marked columns" in md
    # this board's cell and the other machine's, with each machine's marks
    beta_here = 100 * np.mean([m.mean() for m in masks["beta"]])
    beta_there = 100 * np.mean([m.mean() for m in masks["beta_far"]])
    assert f"*≈ {beta_here:.2f}* / {beta_there:.2f}" in md


def test_another_unit_hash_is_named_and_a_method_on_one_side_is_not_compared(make_row, masks, target):
    a, _ = _side(make_row, "here", masks, target)
    b, _ = _side(make_row, "there", masks, target, methods=("alpha", "beta"), units={"beta": "u2"})
    cmp = compare_boards(a, b)
    assert cmp.compared == ["alpha", "beta"] and cmp.other_hash == ["beta"] and cmp.one_side == ["gamma"]
    text = comparison_text(cmp)
    assert "unit hashes differ (other settings, or other code): beta" in text
    assert "on one side only: gamma" in text
    # marks over alpha and beta alone on both sides (gamma left out): tied on each
    assert cmp.columns[0].marks == ({"alpha": "tied", "beta": "tied"},) * 2
    assert "(`beta` with another unit hash: other settings or code)" in "\n".join(machines_section(a, [b]))


def test_a_board_with_settings_is_refused_by_name(make_row, masks, target):
    a, _ = _side(make_row, "here", masks, target)
    b = Side("sweep", [{**r, "setting": "s1"} for r in a.rows], a.evidence)
    with pytest.raises(ValueError, match="sweep: a board with settings"):
        compare_boards(a, b)


def _folder(root, make_row, masks, target, methods=("alpha", "beta", "gamma")):
    side, files = _side(make_row, str(root), masks, target, methods)
    upsert_unit_rows(root / "results" / f"{BOARD}.jsonl", side.rows)
    for key, pred in files.items():
        save_predictions(prediction_path(root, BOARD, key), pred)
    return root


def test_a_folder_with_a_replica_renders_across_machines_and_check_watches_it(
        tmp_path, make_row, masks, target):
    lb = _folder(tmp_path / "lb", make_row, masks, target)
    replica = _folder(lb / "machines" / "avx2", make_row, masks, target, ("alpha", "beta_far", "gamma"))
    written = render_all(lb)
    assert replica / f"{BOARD}.md" in written and lb / f"{BOARD}.md" in written
    md = (lb / f"{BOARD}.md").read_text()
    assert "## Across machines" in md
    assert "**`avx2`** — cpu: 3 method(s) compared, every unit hash the same" in md
    assert "## Across machines" not in (replica / f"{BOARD}.md").read_text()
    assert stale_boards(lb) == []
    # the replica's beta now as good as here: its own board and the main board's section are stale
    for seed, mask in enumerate(masks["beta"]):
        save_predictions(prediction_path(replica, BOARD, (None, "beta", "u1", seed)), _pred(mask, target))
    stale = stale_boards(lb)
    assert [s.split(": ")[0] for s in stale] == [str(replica / f"{BOARD}.md"), str(lb / f"{BOARD}.md")]
    render_all(lb)
    assert stale_boards(lb) == [] and "marks agree in 2 of 2" in (lb / f"{BOARD}.md").read_text()


def test_compare_command_exits_by_agreement(tmp_path, make_row, masks, target, capsys):
    here = _folder(tmp_path / "here", make_row, masks, target)
    same = _folder(tmp_path / "same", make_row, masks, target)
    other = _folder(tmp_path / "other", make_row, masks, target, ("alpha", "beta_far", "gamma"))
    assert main(["compare", str(here), str(same)]) == 0
    assert "2 of 2 marked columns agree" in capsys.readouterr().out
    assert main(["compare", str(here), str(other)]) == 1
    assert "test accuracy: DIFFERENT" in capsys.readouterr().out
    assert main(["compare", str(here), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'}: no such leaderboard folder" in err and "Traceback" not in err
    assert main(["compare", str(here), str(same), "--board", "nope"]) == 2
    assert "no board 'nope'; the boards there are: demo" in capsys.readouterr().err


def test_the_machines_named_are_those_of_the_latest_units(make_row, masks, target):
    a, _ = _side(make_row, "here", masks, target)
    older = {**make_row("alpha", 0, "test", 0.1, unit="old", date="2025-01-01T00:00:00+00:00"),
             "device": "cuda"}  # a superseded unit made elsewhere: not this board's machine
    a = Side(a.name, a.rows + [older], a.evidence)
    assert compare_boards(a, a).machines == (["cpu"], ["cpu"])


def test_an_empty_replica_is_no_replica(tmp_path, make_row, masks, target):
    lb = _folder(tmp_path / "lb", make_row, masks, target)
    empty = lb / "machines" / "empty" / "results"
    empty.mkdir(parents=True)
    (empty / f"{BOARD}.jsonl").write_text("")
    assert replicas_of(lb, BOARD) == []
    _folder(lb / "machines" / "avx2", make_row, masks, target)
    assert [r.name for r in replicas_of(lb, BOARD)] == ["avx2"]


def test_a_replica_says_how_it_was_made_and_a_simulation_is_labelled(tmp_path, make_row, masks,
                                                                      target):
    """machine.json beside a replica's results: its note follows the machine's line, and a
    simulated one (kernels forced on another CPU) is labelled so; a malformed one is refused by
    name."""
    import json

    lb = _folder(tmp_path / "lb", make_row, masks, target)
    sim = _folder(lb / "machines" / "avx2", make_row, masks, target)
    real = _folder(lb / "machines" / "real", make_row, masks, target)
    (sim / "machine.json").write_text(json.dumps({"simulated": True, "note": "forced AVX2"}))
    (real / "machine.json").write_text(json.dumps({"simulated": False, "note": "an AVX2 EPYC"}))
    render_all(lb)
    md = (lb / f"{BOARD}.md").read_text()
    assert "**`avx2`** — cpu (**simulated** — forced AVX2): 3 method(s)" in md
    assert "**`real`** — cpu (an AVX2 EPYC): 3 method(s)" in md
    assert stale_boards(lb) == []
    (sim / "machine.json").write_text(json.dumps({"simulated": "yes"}))
    with pytest.raises(ValueError, match=r"avx2/machine\.json: expected an object with a string "
                                         r"\"note\" and a boolean \"simulated\""):
        replicas_of(lb, BOARD)


def test_a_forced_kernel_is_in_the_record_and_on_the_label(monkeypatch):
    """The numerics record names what the math libraries dispatch on, and an environment
    variable forcing a kernel choice is recorded and shown: a forced-kernel run never passes for
    the machine it imitates. (Any x86-64 CPU: 'default' is a capability every one has.)"""
    import torch

    from i2m2bench.numerics import DISPATCH_ENV, ISA_FLAGS, numerics, numerics_label

    for name in DISPATCH_ENV:
        monkeypatch.delenv(name, raising=False)
    plain = numerics(torch.device("cpu"))
    assert "dispatch_env" not in plain and "(forced" not in numerics_label(plain)
    assert set(plain["math"]) >= {"blas"}
    assert all(f in ISA_FLAGS for f in plain.get("isa", []))  # /proc/cpuinfo's, where it exists
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    forced = numerics(torch.device("cpu"))
    assert forced["dispatch_env"] == {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert forced != plain
    assert numerics_label(forced).endswith(
        f"{plain['cpu_capability']} (forced: MKL_ENABLE_INSTRUCTIONS=AVX2), "
        f"{plain['threads']} threads")
