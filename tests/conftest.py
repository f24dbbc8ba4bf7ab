"""Fixtures shared by the whole test suite (and by ``tests/reliability``, which pytest finds
below this folder): gin state cleared around every test, demo leaderboard rows, AV-MNIST fixture
files in MultiBench's layout."""
import shutil
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest
import torch

from i2m2bench.registry import load_plugins  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
# The suite's contributed methods (TFN, GMU) register through the plugin entry point, like any
# plugin's; the registry-wide contract tests are parametrised over them at collection time.
load_plugins()

AVMNIST_SIZES = (30, 6, 12)  # train, val, test rows (the real files hold 55,000 + 5,000 and 10,000)


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


# ------------------------------------------------------------------------ pretrained experts
def _check_experts_loaded(run, method_name: str, runs_dir) -> None:
    """Build ``method_name`` of ``run``'s suite, initialise it from the seed-0 checkpoints of the
    methods its ``method.pretrain`` names (under ``runs_dir``), and assert every expert's weights
    equal its donor's, tensor for tensor."""
    import i2m2bench
    from i2m2bench.harness.recipes import Checkpoint

    method, _ = run.resolver.method(method_name)
    ckpts = {m: next(runs_dir.rglob(f"{m}/*/seed0/model.pt")) for m in method.pretrain.values()}
    model = i2m2bench.build_fusion(method.fusion, run.task.spec, **method.options)
    i2m2bench.RECIPES.get(method.recipe).init(
        model, {e: Checkpoint(m, 0, ckpts[m]) for e, m in method.pretrain.items()})
    for expert, m in method.pretrain.items():
        donor = torch.load(ckpts[m], weights_only=True)
        got = model.experts()[expert].state_dict()
        assert set(got) == set(donor) and all(torch.equal(got[k], donor[k]) for k in donor)


@pytest.fixture
def check_experts_loaded():
    """``check_experts_loaded(run, method, runs_dir)``: the method's experts start from the
    weights of the units its ``method.pretrain`` names."""
    return _check_experts_loaded


# ------------------------------------------------------------------------ leaderboard rows
def _row(method, seed, protocol, value, unit="u1", family="inter", date="2026-01-01T00:00:00+00:00",
         metric="accuracy"):
    return {"board": "demo-embedded-demo", "suite": "demo", "dataset": "demo", "dataset_version": "1",
            "data_source": "embedded", "method": method, "label": method.upper(), "family": family,
            "fusion": "f", "recipe": "joint", "seed": seed, "protocol": protocol, "metric": metric,
            "value": value, "higher_is_better": True if protocol != "train" else None,
            "unit_hash": unit, "config_hash": "c", "train": {"optimizer": "sgd", "lr": 0.1,
            "weight_decay": 1e-4, "batch_size": 40, "epochs": 4, "patience": 4, "grad_clip": 8.0},
            "git_commit": "abc", "device": "cpu", "torch_version": "2.9.1", "date": date}


@pytest.fixture
def make_row():
    """Build one flat result row of the ``demo`` board: ``make_row(method, seed, protocol, value,
    unit=..., family=..., date=..., metric=...)``."""
    return _row


@pytest.fixture
def demo_rows():
    """A fresh list of the ``demo`` board's rows: two methods x two seeds on test, one shift set
    and a training-speed row, plus an older unit of ``beta`` that renderers must ignore."""
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.75), (0.7, 0.85)]):
        rows += [_row("alpha", seed, "test", a, family="unimodal"), _row("beta", seed, "test", b),
                 _row("alpha", seed, "shift:x", a - 0.1, family="unimodal"),
                 _row("beta", seed, "shift:x", b - 0.5),
                 _row("beta", seed, "train", 100.0 + seed, metric="samples_per_s")]
    # an older configuration of beta, which must be ignored
    rows.append(_row("beta", 0, "test", 0.99, unit="old", date="2025-01-01T00:00:00+00:00"))
    return rows


# ------------------------------------------------------------------------- AV-MNIST files
def _write_avmnist(root, sizes=AVMNIST_SIZES, image_shape=(784,), audio_shape=(112, 112), seed=0):
    rng = np.random.default_rng(seed)
    d = root / "avmnist"
    (d / "image").mkdir(parents=True)
    (d / "audio").mkdir()
    for split, n in (("train", sizes[0] + sizes[1]), ("test", sizes[2])):
        np.save(d / "image" / f"{split}_data.npy", rng.integers(0, 256, (n, *image_shape)).astype(np.float32))
        np.save(d / "audio" / f"{split}_data.npy", rng.integers(0, 256, (n, *audio_shape)).astype(np.uint8))
        np.save(d / f"{split}_labels.npy", rng.integers(0, 10, n).astype(np.int64))
    return d


@pytest.fixture
def write_avmnist():
    """Write small AV-MNIST files in MultiBench's layout: ``write_avmnist(root, sizes=...,
    image_shape=..., audio_shape=..., seed=...)`` returns ``root / "avmnist"``."""
    return _write_avmnist


# ------------------------------------------------------------------------ the example plugin
PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """The example plugin installed (no network, no dependencies) into a fresh target folder."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(PLUGIN, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(site), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site
