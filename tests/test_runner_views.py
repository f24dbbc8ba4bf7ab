"""What a user sees of a run, and how units are identified: the plan (``--dry-run``), progress
lines with an ETA, the console summary, TensorBoard logs, file modes, provenance, unit hashes that
cover the code (plugins included), plugin loading switches, and failures counted once."""
import importlib
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from i2m2bench import cli
from i2m2bench.fusion.base import FUSIONS, ContractError, build_fusion, check_outputs
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.store import read_records, read_rows
from i2m2bench.registry import PluginError, load_plugins
from i2m2bench.testing import random_batch, tiny_spec

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "gin" / "toy_smoke.gin")
FAST = ["embedded_schedule.overrides = {'epochs': 1, 'patience': 1, 'batch_size': 64}"]


def _actions(run):
    return {item.unit.key: item.action for item in run.plan}


@pytest.mark.slow
def test_dry_run_lists_train_skip_and_reevaluate_and_writes_nothing(tmp_path):
    out, lb = tmp_path / "runs", tmp_path / "lb"
    plan = run_suite([TOY], FAST, seeds=[0], out=out, results_dir=lb, progress=False, dry_run=True)
    # dependencies come before their dependents, each unit once
    keys = [item.unit.key for item in plan.plan]
    assert len(keys) == len(set(keys)) == 6
    assert keys.index("a_only/seed0") < keys.index("i2m2/seed0")
    assert set(_actions(plan).values()) == {"train"}
    assert not out.exists() and not lb.exists()  # nothing written

    run_suite([TOY], FAST, seeds=[0], out=out, results_dir=lb, progress=False)
    again = run_suite([TOY], FAST, seeds=[0], out=out, results_dir=lb, progress=False, dry_run=True)
    assert set(_actions(again).values()) == {"skip"}
    assert [i.unit.unit_hash for i in again.plan] == [i.unit.unit_hash for i in plan.plan]

    results = lb / "results" / "toy_smoke-embedded-toy.jsonl"
    before = results.read_bytes()
    more = run_suite([TOY], FAST + ["suite.protocols = ['test', 'missing:a']"], seeds=[0], out=out,
                     results_dir=lb, progress=False, dry_run=True)
    assert set(_actions(more).values()) == {"evaluate"}
    assert results.read_bytes() == before  # a dry run writes nothing
    done = run_suite([TOY], FAST + ["suite.protocols = ['test', 'missing:a']"], seeds=[0], out=out,
                     results_dir=lb, progress=False)
    assert sorted(s["unit"] for s in done.summary) == sorted(keys)  # re-evaluations are reported
    assert all("missing:a" in s for s in done.summary)


@pytest.mark.slow
def test_cli_dry_run_progress_and_summary(tmp_path, capsys):
    args = ["run", "--gin", TOY, "--seeds", "0", "--out", str(tmp_path / "r"),
            "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress", *sum((["--gin-param", b] for b in FAST), [])]
    assert cli.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 6 to train, 0 to re-evaluate, 0 done already" in out and "i2m2/seed0" in out
    assert "a <- a_only/seed0" in out  # what the I2M2 unit starts from
    assert not (tmp_path / "r").exists()

    assert cli.main(args) == 0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if "] unit " in ln]
    assert [ln.split("] unit ")[1].split()[0] for ln in lines] == [f"{k}/6" for k in range(1, 7)]
    assert "ETA —" in lines[0] and "ETA 0:" in lines[1] and "elapsed 0:" in lines[-1]
    # the console summary holds the board's numbers: the mean test accuracy of i2m2, in percent
    rows = read_rows(tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl")
    acc = next(r["value"] for r in rows if r["method"] == "i2m2" and r["protocol"] == "test")
    assert "i2m2" in cap.out and f"{100 * acc:.2f}" in cap.out


@pytest.mark.slow
def test_tensorboard_logs_loss_and_validation_per_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_suite([TOY], ["embedded_schedule.overrides = {'epochs': 2, 'patience': 2, 'batch_size': 64}"],
              methods=["a_only"], seeds=[0], out=tmp_path / "r", results_dir=tmp_path / "lb",
              progress=False, tensorboard=tmp_path / "tb")
    folder = tmp_path / "tb" / "toy_smoke-embedded-toy" / "a_only" / "seed0"
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train/loss", "val/accuracy"}
    history = json.loads(next((tmp_path / "r").rglob("unit.json")).read_text())["history"]
    logged = [e.value for e in acc.Scalars("val/accuracy")]
    assert logged == pytest.approx([h["val"] for h in history]) and len(logged) == 2


@pytest.mark.slow
def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        run = run_suite([TOY], FAST, methods=["a_only"], seeds=[0], out=tmp_path / "r",
                        results_dir=tmp_path / "lb", progress=False)
    finally:
        os.umask(old)
    files = [run.results_path, tmp_path / "lb" / "toy_smoke-embedded-toy.md",
             *(p for p in (tmp_path / "r").rglob("*") if p.is_file())]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {"model.pt", "metrics.json", "unit.json", "operative_config.gin"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.slow
def test_provenance_once_per_file_names_the_suite_commit_and_plugins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run from outside the repository
    run = run_suite([TOY], FAST, methods=["a_only", "b_only"], seeds=[0], out=tmp_path / "r",
                    results_dir=tmp_path / "lb", progress=False)
    lines = [json.loads(x) for x in run.results_path.read_text().splitlines()]
    provs = [x for x in lines if x["record"] == "provenance"]
    assert len(provs) == 1 and len(lines) == 3  # provenance once, one record per unit
    prov = provs[0]
    assert prov["git_commit"] != "unknown" and len(prov["git_commit"].split("+")[0]) == 12
    assert prov["plugins"].get("i2m2bench")  # the suite's own contrib entry point
    assert all(u["provenance"] == prov["id"] for u in lines if u["record"] == "unit")


PLUGIN_V1 = '''
import torch
from i2m2bench import FUSIONS
from i2m2bench.fusion.late import LateFusion

@FUSIONS.register("probe_fusion")
class ProbeFusion(LateFusion):
    def forward(self, batch):
        return super().forward(batch)
'''


@pytest.mark.slow
def test_unit_hash_covers_a_plugins_code(tmp_path, monkeypatch):
    """Editing a plugin's forward (same name, same options) gives a new unit hash."""
    mod = tmp_path / "probe_plugin_mod.py"
    mod.write_text(textwrap.dedent(PLUGIN_V1))
    monkeypatch.syspath_prepend(str(tmp_path))
    gin_file = tmp_path / "suite.gin"
    gin_file.write_text(f"include '{TOY}'\nimport probe_plugin_mod\n"
                        "late_fusion/method.fusion = 'probe_fusion'\n")
    try:
        def hashes():
            run = run_suite([str(gin_file)], FAST, seeds=[0], out=tmp_path / "r",
                            results_dir=tmp_path / "lb", progress=False, dry_run=True)
            return {i.unit.key: i.unit.unit_hash for i in run.plan}

        first = hashes()
        mod.write_text(textwrap.dedent(PLUGIN_V1).replace("return super().forward(batch)",
                                                          "out = super().forward(batch)\n        return out"))
        FUSIONS.remove("probe_fusion")
        importlib.reload(sys.modules["probe_plugin_mod"])
        second = hashes()
    finally:
        FUSIONS.remove("probe_fusion")
        sys.modules.pop("probe_plugin_mod", None)
    changed = {k for k in first if first[k] != second[k]}
    # the edited strategy's unit, and I2M2 which starts from it; nothing else
    assert changed == {"late_fusion/seed0", "i2m2/seed0"}


def test_plugins_can_be_switched_off(monkeypatch):
    class BrokenEntryPoint:
        name, value, dist = "broken", "nowhere.module", None

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [BrokenEntryPoint()])
    with pytest.raises(PluginError, match="broken.*nowhere.module.*ImportError"):
        load_plugins(force=True)
    monkeypatch.setenv("I2M2BENCH_PLUGINS", "0")
    assert load_plugins(force=True) == []


def test_cli_no_plugins_skips_the_entry_points(capsys, monkeypatch):
    monkeypatch.delenv("I2M2BENCH_PLUGINS", raising=False)
    import subprocess

    env = {**os.environ}
    with_plugins = subprocess.run([sys.executable, "-m", "i2m2bench", "list", "fusions"],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
    without = subprocess.run([sys.executable, "-m", "i2m2bench", "--no-plugins", "list", "fusions"],
                             capture_output=True, text=True, env=env, cwd=ROOT)
    assert with_plugins.returncode == without.returncode == 0
    assert "tfn" in with_plugins.stdout and "i2m2bench.contrib.tfn" in with_plugins.stdout
    assert "tfn" not in without.stdout and "i2m2" in without.stdout


def test_a_broken_inter_expert_is_named_not_i2m2():
    from i2m2bench.fusion.late import LateFusion

    @FUSIONS.register("half_width_inter")
    class HalfWidth(LateFusion):
        def forward(self, batch):
            (z,) = super().forward(batch).values()
            return {"inter": z[:, :1]}  # breaks the (batch, classes) rule

    try:
        spec = tiny_spec()
        model = build_fusion("i2m2", spec, inter="half_width_inter")
        with pytest.raises(ContractError) as err:
            check_outputs("i2m2", model.eval(), random_batch(spec))
        msg = str(err.value)
        assert msg.startswith("fusion 'half_width_inter'") and "HalfWidth" in msg and "shape" in msg
    finally:
        FUSIONS.remove("half_width_inter")


@pytest.mark.slow
def test_a_failed_unit_is_counted_once(tmp_path, capsys):
    code = cli.main(["run", "--gin", TOY, "--seeds", "0", "--out", str(tmp_path / "r"),
                     "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress",
                     "--gin-param", "a_only/train.lr = 1e30", "--gin-param", "a_only/train.grad_clip = None",
                     "--gin-param", FAST[0]])
    assert code == 3
    err = capsys.readouterr().err
    failed = [ln.strip() for ln in err.split("FAILED (recorded")[1].splitlines()[1:] if ln.strip()]
    assert len(failed) == len(set(failed)) == 2, failed  # a_only itself, and i2m2 that starts from it
    assert sum(ln.startswith("a_only/seed0") for ln in failed) == 1
    assert sum(ln.startswith("i2m2/seed0") and "expert source a_only/seed0 failed" in ln for ln in failed) == 1
    _, units = read_records(tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl")
    failed_records = [u for u in units if "failed" in u["info"]]
    assert sorted(u["method"] for u in failed_records) == ["a_only", "i2m2"]


@pytest.mark.parametrize("entry", ["build_task", "check_fusion", "run_suite"])
def test_library_entry_points_load_plugins_themselves(entry, monkeypatch, tmp_path):
    import i2m2bench
    from i2m2bench import testing

    loaded = []

    class EntryPoint:
        name, value, dist = "probe", "probe.module", None

        def load(self):
            loaded.append(self.name)

    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [EntryPoint()])
    monkeypatch.setattr("i2m2bench.registry._plugins_loaded", False)  # as in a fresh process
    monkeypatch.delenv("I2M2BENCH_PLUGINS", raising=False)
    calls = {"build_task": lambda: i2m2bench.build_task("toy"),
             "check_fusion": lambda: testing.check_fusion("late_fusion"),
             "run_suite": lambda: run_suite([TOY], FAST, methods=["a_only"], seeds=[0],
                                            out=tmp_path / "r", results_dir=tmp_path / "lb",
                                            dry_run=True)}
    calls[entry]()
    assert loaded == ["probe"]


def test_including_an_installed_suite_may_keep_a_subset_of_its_methods(tmp_path):
    """A plugin's suite that includes ours and lists fewer methods is fine; a typo of its own is
    still an error naming its file and line."""
    from i2m2bench.harness.config import read_suite
    from i2m2bench.harness.errors import ConfigError
    from i2m2bench.harness.ginfiles import check_scopes, parse_gin

    mine = tmp_path / "mine.gin"
    mine.write_text("include 'avmnist_smoke.gin'\nsuite.methods = ['image_only', 'audio_only', 'i2m2_lf']\n")
    parse_gin([mine])
    check_scopes(list(read_suite().methods))  # late_fusion etc. are bound only in our files
    mine.write_text(mine.read_text() + "image_onyl/train.lr = 0.5\n")
    parse_gin([mine])
    with pytest.raises(ConfigError, match=r"'image_onyl'.*did you mean 'image_only'.*mine\.gin\", line 3"):
        check_scopes(list(read_suite().methods))


def test_unknown_name_says_when_plugins_are_off(monkeypatch):
    monkeypatch.setenv("I2M2BENCH_PLUGINS", "0")
    with pytest.raises(KeyError, match="plugins are switched off"):
        FUSIONS.get("no_such_fusion")
    monkeypatch.setenv("I2M2BENCH_PLUGINS", "1")
    with pytest.raises(KeyError) as err:
        FUSIONS.get("no_such_fusion")
    assert "switched off" not in str(err.value)


def test_store_keeps_lines_it_does_not_understand_and_adds_scores_once(tmp_path, make_row):
    from i2m2bench.harness import store

    path = tmp_path / "results" / "b.jsonl"
    store.upsert_unit_rows(path, [make_row("alpha", 0, "test", 0.5)])
    legacy = json.dumps({"protocol": "test", "value": 0.9, "unit_hash": "old", "seed": 0})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(legacy + "\n" + '{"record": "unit", "torn\n')
    base = {k: v for k, v in make_row("beta", 0, "test", 0.0).items()
            if k not in store.SCORE_FIELDS and k not in store.PROVENANCE_FIELDS and k != "date"}
    score = {"protocol": "missing:a", "kind": "missing", "metric": "accuracy", "value": 0.4,
             "higher_is_better": True, "curve": None, "level": None}
    for _ in range(2):  # the same scores added twice (a resumed evaluation re-run) are stored once
        rec, prov = store.make_record(base, {"git_commit": "abc", "device": "cpu", "torch_version": "x"},
                                      [score], {"eval_seconds": 1.0}, "2026-01-02T00:00:00+00:00")
        store.upsert_unit(path, rec, prov, replace=False)
    text = path.read_text(encoding="utf-8")
    assert legacy in text and '{"record": "unit", "torn' in text  # never deleted
    rows = [r for r in store.read_rows(path) if r["method"] == "beta"]
    assert [(r["protocol"], r["value"]) for r in rows if r["protocol"] != "train"] == [("missing:a", 0.4)]


def test_code_fingerprint_of_classes_without_a_file_and_with_stdlib_bases():
    import abc
    import types as pytypes

    from i2m2bench.fusion.late import LateFusion
    from i2m2bench.harness.units import code_fingerprint

    mod = pytypes.ModuleType("notebook_cell_mod")  # like a class defined in a notebook: no __file__
    sys.modules[mod.__name__] = mod
    try:
        exec("from i2m2bench.fusion.late import LateFusion\nimport abc\n"
             "class Cell(LateFusion, abc.ABC):\n    pass\n", mod.__dict__)
        fp = code_fingerprint(mod.Cell(tiny_spec()))
    finally:
        del sys.modules[mod.__name__]
    assert "notebook_cell_mod" in fp["modules"]  # hashed from its qualified name, no crash
    assert not any(m.split(".")[0] in ("abc", "typing", "torch") for m in fp["modules"])
    assert fp["distributions"] == []  # ours are covered by the suite digest
    assert code_fingerprint(LateFusion(tiny_spec()))["suite"] == fp["suite"]


@pytest.mark.slow
def test_a_failed_forced_retrain_is_retried_next_time(tmp_path, monkeypatch):
    from i2m2bench.harness import unit_runner
    from i2m2bench.harness.training import NaNLossError

    kw = dict(methods=["a_only"], seeds=[0], out=tmp_path / "r", results_dir=tmp_path / "lb", progress=False)
    run_suite([TOY], FAST, **kw)

    def nan(*args, **kwargs):
        raise NaNLossError("a_only/seed0: loss is nan at epoch 0, step 0")

    monkeypatch.setattr(unit_runner, "train_model", nan)
    failed = run_suite([TOY], FAST, force=True, **kw)
    assert len(failed.failures) == 1
    monkeypatch.undo()
    again = run_suite([TOY], FAST, dry_run=True, **kw)
    assert _actions(again) == {"a_only/seed0": "train"}  # not "skip" on the old metrics.json
