"""Every gin file parses, defines a valid suite, and every method builds on its task's shapes."""
import re
from pathlib import Path

import gin
import pytest

import i2m2bench
from i2m2bench.data.avmnist import MODALITIES
from i2m2bench.data.fastmri import task_spec as fastmri_spec
from i2m2bench.data.mimic import task_spec as mimic_spec
from i2m2bench.data.nlvr2 import task_spec as nlvr2_spec
from i2m2bench.data.vqa_vs import task_spec as vqa_vs_spec
from i2m2bench.data.synthetic.spectrum import task_spec as spectrum_spec
from i2m2bench.harness.config import (EmbeddedSchedule, MethodConfig, SuiteConfig, TrainConfig,
                                      read_suite)
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.ginfiles import bound_scopes, parse_gin
from i2m2bench.data.fastmri.parts import as_real_imag
from i2m2bench.types import ModalitySpec, Task, TaskSpec

GIN_DIR = Path(__file__).resolve().parents[1] / "gin"
GIN_FILES = sorted(p for p in GIN_DIR.glob("*.gin") if p.name != "base.gin")

SPECS = {
    "avmnist": TaskSpec("avmnist", "t", MODALITIES, "multiclass", 10),
    "toy": TaskSpec("toy", "t", (ModalitySpec("a", (16,), "vector"), ModalitySpec("b", (16,), "vector")),
                    "multiclass", 4),
    "dependency_spectrum": spectrum_spec(classes=4, dim=16),
    **{name: i2m2bench.build_task(name, n_train=4, n_eval=4).spec
       for name in ("toy_multilabel", "toy_soft", "toy_kinds")},
    "fastmri": fastmri_spec("real", (320, 320), 1.0, 1.0, encoder_options={"pool": 10}),
    "mimic": mimic_spec("mortality", "real"),  # the ICD-9 tasks build the same models, 2 classes
    "vqa_vs": vqa_vs_spec("real", (768, 768, 1536), ("yes", "no", "2")),  # FIBER's feature sizes
    "nlvr2": nlvr2_spec("real", (1536, 768, 3072)),
}


def _included_suites_methods(path) -> set[str]:
    """The methods of the suites ``path`` includes (their bindings may stay unused: a suite that
    includes another may list only some of its methods, as the harness allows)."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"include '([^']+)'", line.strip())
        if m and m.group(1) != "base.gin":
            parse_gin([GIN_DIR / m.group(1)])
            out |= set(read_suite().methods) | _included_suites_methods(GIN_DIR / m.group(1))
    return out


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: p.name)
def test_gin_file_defines_buildable_methods(path):
    included = _included_suites_methods(path)
    parse_gin([path])
    suite = read_suite()
    assert isinstance(suite, SuiteConfig) and suite.methods and suite.seeds
    assert set(bound_scopes()) <= set(suite.methods) | included, \
        "bindings for methods not in suite.methods"
    spec = SPECS[suite.dataset]
    if (suite.dataset_options or {}).get("modalities") == "real_imag":  # FastMRI's other pair
        spec = as_real_imag(Task(spec, {})).spec
    for name in suite.methods:
        with gin.config_scope(name):
            m = MethodConfig()
            TrainConfig()  # validates the method's train.* bindings (test_bad_train_binding_...)
            EmbeddedSchedule()
        i2m2bench.RECIPES.get(m.recipe)
        model = i2m2bench.build_fusion(m.fusion, spec, **m.options)
        for expert, dep in m.pretrain.items():
            assert dep in suite.methods, f"{name}: pretrain source {dep!r} is not a method"
            with gin.config_scope(dep):
                d = MethodConfig()
            donor = i2m2bench.build_fusion(d.fusion, spec, **d.options)
            target = model if expert == "model" else model.experts()[expert]  # evaluate_only: whole
            target.load_state_dict(donor.state_dict())  # same architecture


@pytest.mark.parametrize("binding,message", [
    pytest.param("a_only/train.lr = 0.0", r"train\.lr must be > 0; got 0\.0", id="lr=0"),
    pytest.param("a_only/train.lr = -0.1", r"train\.lr must be > 0; got -0\.1", id="lr<0"),
    pytest.param("a_only/train.epochs = 0", r"train\.epochs must be > 0; got 0", id="epochs=0"),
    pytest.param("a_only/train.batch_size = 0", r"train\.batch_size must be > 0; got 0", id="batch_size=0"),
    pytest.param("a_only/train.eval_batch_size = -1", r"train\.eval_batch_size must be > 0; got -1",
                 id="eval_batch_size<0"),
    pytest.param("a_only/train.optimizer = 'sgdd'",
                 r"train\.optimizer must be one of 'sgd', 'adam', 'adamw', 'rmsprop'; got 'sgdd'", id="optimizer=sgdd"),
    pytest.param("a_only/train.loss = 'mse'",
                 r"train\.loss must be one of 'auto', 'nll', 'bce', 'soft_ce'; got 'mse'", id="loss=mse"),
    pytest.param("a_only/train.select_on = ''", r"train\.select_on must be a metric name",
                 id="select_on=''"),
])
def test_bad_train_binding_is_rejected_naming_it(tmp_path, binding, message):
    path = tmp_path / "bad_train.gin"
    path.write_text(f"include '{GIN_DIR / 'toy_smoke.gin'}'\n{binding}\n")
    parse_gin([path])
    with gin.config_scope("a_only"), pytest.raises(ValueError, match=message):
        TrainConfig()
    # the scoped binding stays in its scope: another method gets the suite's own train.lr
    with gin.config_scope("b_only"):
        assert TrainConfig().lr == 0.05


def test_avmnist_gin_carries_the_official_hyperparameters():
    parse_gin([GIN_DIR / "avmnist.gin"])
    lrs = {}
    for name in read_suite().methods:
        with gin.config_scope(name):
            t = TrainConfig()
            if MethodConfig().recipe == "ensemble":  # trains nothing: no learning rate to check
                continue
        lrs[name] = t.lr
        # official loops: `patience > 10` stops (11 epochs); the unimodal loop never stops early
        patience = None if name in ("image_only", "audio_only") else 11
        assert (t.optimizer, t.momentum, t.weight_decay, t.epochs, t.batch_size, t.grad_clip,
                t.patience) == ("sgd", 0.0, 1e-4, 30, 40, 8.0, patience)
    fine_tune = {m: 0.01 for m in ("i2m2_lf", "i2m2_lrtf", "i2m2_tfn", "i2m2_gmu", "i2m2_lf_inter_imputed")}
    assert lrs == {"image_only": 0.01, "audio_only": 0.01, "intra_only": 0.1, "late_fusion": 0.1,
                   "lrtf": 0.1, "early_fusion": 0.1, "tfn": 0.1, "gmu": 0.1, **fine_tune}


def test_unknown_binding_is_an_error_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("include 'base.gin'\ntrain.learning_rate = 0.1\n")
    (tmp_path / "base.gin").write_text((GIN_DIR / "base.gin").read_text())
    with pytest.raises(ConfigError, match=r"(?s)learning_rate.*bad.gin.*line 2"):
        parse_gin([bad])


def test_gin_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "syntax.gin"
    bad.write_text("train.lr = 0.1\ntrain.epochs = = 3\n")
    with pytest.raises(ConfigError, match=r"(?s)syntax.gin.*2"):
        parse_gin([bad])


def test_missing_gin_file():
    with pytest.raises(ConfigError, match="gin file nope.gin: not found"):
        parse_gin(["nope.gin"])
