"""Extending the suite from outside: the example plugin package installed into a temporary
environment, and clear errors for plugins that fail to import, clash or break the contract."""
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2m2bench import registry
from i2m2bench.cli import main
from i2m2bench.fusion.base import FUSIONS
from i2m2bench.registry import PluginError

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


def _in_env(site, *args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.slow
def test_list_shows_the_plugin_fusion(plugin_site, tmp_path):
    proc = _in_env(plugin_site, "-m", "i2m2bench", "list", "fusions", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.split()[:1] == ["film"])
    assert "i2m2bench_example_plugin.film.FiLMFusion" in line
    assert "tfn" in proc.stdout and "gmu" in proc.stdout


@pytest.mark.slow
def test_the_plugin_suite_trains_and_evaluates_end_to_end(plugin_site, tmp_path):
    lb = tmp_path / "lb"
    proc = _in_env(plugin_site, "-m", "i2m2bench", "run", "--gin",
                   str(PLUGIN / "gin" / "toy_film.gin"), "--out", str(tmp_path / "runs"),
                   "--leaderboard-dir", str(lb), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    board = (lb / "toy_film-embedded-toy.md").read_text()
    for label in ("FiLM (plugin) (`film`)", "I2M2 (inter: FiLM plugin) (`i2m2_film`)"):
        row = next(ln for ln in board.splitlines() if ln.startswith(f"| {label}"))
        cells = [c.strip() for c in row.split("|")]
        test_acc = float(cells[6].strip("*≈ ").split()[0])  # Method, Fusion, Recipe, Seeds, test, ...
        assert 100 / 4 < test_acc <= 100, row  # trained: above chance on the 4-class toy task


@pytest.mark.slow
def test_the_plugin_passes_its_own_contract_tests(plugin_site):
    proc = _in_env(plugin_site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


# --- errors ------------------------------------------------------------------------------
class _EP:
    def __init__(self, name, value, fn, dist="someone-plugin"):
        self.name, self.value, self._fn = name, value, fn
        self.dist = type("D", (), {"name": dist})()

    def load(self):
        return self._fn()


def test_plugin_registering_a_taken_name_is_refused_with_both_origins(monkeypatch):
    def clash():
        @FUSIONS.register("late_fusion")
        class Mine(FUSIONS.get("unimodal")):
            pass

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [_EP("mine", "mypkg.fusions", clash, "my-fusions")])
    with pytest.raises(PluginError) as err:
        registry.load_plugins(force=True)
    msg = str(err.value)
    assert "entry point 'mine' = 'mypkg.fusions' from package 'my-fusions'" in msg
    assert "'late_fusion' is already registered (by i2m2bench.fusion.late.LateFusion)" in msg
    assert FUSIONS.origin("late_fusion") == "i2m2bench.fusion.late.LateFusion"  # untouched


def test_cli_reports_a_plugin_that_fails_to_import(monkeypatch, capsys):
    def boom():
        raise ModuleNotFoundError("No module named 'torch_scatter'")

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [_EP("graphs", "graphfusion", boom, "graph-fusion")])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert "entry point 'graphs' = 'graphfusion' from package 'graph-fusion'" in err
    assert "torch_scatter" in err and "Traceback" not in err


BAD_PLUGIN = '''
import torch
import i2m2bench

@i2m2bench.FUSIONS.register("{name}")
class Bad(i2m2bench.Fusion):
    combine = "single"

    def __init__(self, spec):
        super().__init__(spec)
        self.lin = torch.nn.Linear(16, spec.num_classes + {extra})

    def expert_modalities(self):
        return {{"inter": ("a", "b")}}

    def forward(self, batch):
        return {{"{key}": self.lin(batch.inputs["a"])}}
'''


@pytest.mark.parametrize("case,extra,key,pattern", [
    ("shape", 1, "inter", r"expert 'inter' logits have shape \(4, 5\), expected \(4, 4\)"),
    ("names", 0, "fused", r"expert_modalities\(\) names \['inter'\] but forward returned \['fused'\]"),
])
def test_a_plugin_that_breaks_the_contract_is_refused_before_training(
        case, extra, key, pattern, capsys, tmp_path, monkeypatch):
    """One file and one gin line (``import <module>``) add a fusion; a broken one is named."""
    import re

    name = f"bad_{case}"
    module = f"badplugin_{case}"
    (tmp_path / f"{module}.py").write_text(BAD_PLUGIN.format(name=name, extra=extra, key=key))
    monkeypatch.syspath_prepend(str(tmp_path))
    gin = tmp_path / "suite.gin"
    gin.write_text(f"import {module}\ninclude '{ROOT / 'gin' / 'toy_smoke.gin'}'\n"
                   f"late_fusion/method.fusion = '{name}'\nlate_fusion/method.options = {{}}\n")
    try:
        code = main(["run", "--gin", str(gin), "--out", str(tmp_path / "runs"),
                     "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"])
    finally:
        FUSIONS.remove(name)
        sys.modules.pop(module, None)
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(rf"method 'late_fusion': fusion '{name}' \({module}\.Bad\) breaks the fusion "
                     rf"contract: .*{pattern}", err), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("model.pt"))
    assert not (tmp_path / "lb" / "results").exists() or not any((tmp_path / "lb" / "results").iterdir())
