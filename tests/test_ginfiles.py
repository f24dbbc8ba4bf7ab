"""Gin files (i2m2bench.harness.ginfiles): installed suites, `include` lookup, scope checks."""
import logging
import re
import subprocess
import sys
from pathlib import Path

import gin
import pytest

from i2m2bench.harness import ginfiles
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.ginfiles import installed_suites
from i2m2bench.harness.ginfiles import check_scopes, parse_gin, resolve_gin_file, suites_dir

ROOT = Path(__file__).resolve().parents[1]
AVMNIST_METHODS = ['image_only', 'audio_only', 'intra_only', 'late_fusion', 'lrtf', 'early_fusion',
                   'tfn', 'gmu', 'i2m2_lf', 'i2m2_lrtf', 'i2m2_tfn', 'i2m2_gmu',
                   'i2m2_lf_inter_imputed', 'i2m2_ensemble']
SPECTRUM_METHODS = ['a_only', 'b_only', 'intra_only', 'late_fusion', 'lrtf', 'early_fusion', 'tfn',
                    'gmu', 'i2m2_lf', 'i2m2_lrtf']


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """A folder outside the repository, also the working directory (as for a plugin's user)."""
    assert ROOT not in tmp_path.resolve().parents
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_suites_are_installed_in_the_package_and_linked_from_the_repo_root():
    assert suites_dir() == ROOT / "i2m2bench" / "gin"
    assert {"base.gin", "avmnist.gin", "avmnist_smoke.gin", "dependency_spectrum.gin",
            "toy_smoke.gin"} <= {p.name for p in suites_dir().glob("*.gin")}
    assert (ROOT / "gin").is_symlink() and (ROOT / "gin").resolve() == suites_dir()
    setup = (ROOT / "setup.cfg").read_text()
    assert re.search(r"(?m)^i2m2bench = .*\bgin/\*\.gin\b", setup), "gin files not in package_data"


def test_a_gin_file_outside_the_repo_includes_an_installed_suite(outside):
    user = outside / "plugin" / "my_suite.gin"
    user.parent.mkdir()
    user.write_text("include 'avmnist_smoke.gin'\n\nsuite.name = 'my_avmnist'\n"
                    "late_fusion/train.lr = 0.05\n")
    parse_gin([user])
    assert gin.query_parameter("suite.name") == "my_avmnist"
    assert gin.query_parameter("suite.methods") == AVMNIST_METHODS
    assert gin.query_parameter("suite.seeds") == [0]  # from avmnist_smoke.gin
    assert gin.query_parameter("train.optimizer") == "sgd"  # from base.gin, via avmnist.gin
    assert gin.query_parameter("late_fusion/train.lr") == 0.05
    check_scopes(gin.query_parameter("suite.methods"))  # the user's scope is a method: no error


def test_includes_of_an_installed_suite_ignore_the_working_directory(outside):
    """`base.gin` in the working directory does not replace the one next to avmnist.gin."""
    (outside / "base.gin").write_text("train.optimizer = 'adam'\n")
    user = outside / "sub" / "mine.gin"
    user.parent.mkdir()
    user.write_text("include 'avmnist_smoke.gin'\n")
    parse_gin([user])
    assert gin.query_parameter("train.optimizer") == "sgd"


def test_a_local_base_gin_wins_over_the_installed_one(outside):
    mine, other = outside / "mine", outside / "other"
    mine.mkdir()
    other.mkdir()
    (mine / "base.gin").write_text("train.optimizer = 'adam'\ntrain.momentum = 0.5\n")
    (mine / "suite.gin").write_text("include 'base.gin'\nsuite.name = 'x'\n")
    (other / "suite.gin").write_text("include 'base.gin'\nsuite.name = 'y'\n")
    for _ in range(2):  # the lookup does not depend on what was parsed before
        parse_gin([mine / "suite.gin"])
        assert gin.query_parameter("train.optimizer") == "adam"
        assert gin.query_parameter("train.momentum") == 0.5
        parse_gin([other / "suite.gin"])  # no base.gin next to it: the installed one
        assert gin.query_parameter("train.optimizer") == "sgd"
        assert gin.query_parameter("train.momentum") == 0.0


def test_includes_resolve_next_to_the_including_file_at_any_depth(outside):
    (outside / "a" / "b").mkdir(parents=True)
    (outside / "top.gin").write_text("include 'a/mid.gin'\nsuite.name = 'top'\n")
    (outside / "a" / "mid.gin").write_text("include 'b/leaf.gin'\ntrain.epochs = 7\n")
    (outside / "a" / "b" / "leaf.gin").write_text("include 'base.gin'\ntrain.lr = 0.25\n")
    (outside / "a" / "b" / "base.gin").write_text("train.patience = 99\n")
    parse_gin([outside / "top.gin"])
    assert (gin.query_parameter("train.epochs"), gin.query_parameter("train.lr"),
            gin.query_parameter("train.patience")) == (7, 0.25, 99)


def test_parsing_logs_no_failed_lookups(outside, caplog):
    user = outside / "mine.gin"
    user.write_text("include 'avmnist_smoke.gin'\ninclude 'base.gin'\n")
    with caplog.at_level(logging.INFO):
        parse_gin([user], ["train.epochs = 2"])
        parse_gin(["avmnist_smoke"])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_gin_arg_names_an_installed_suite(outside):
    assert resolve_gin_file("avmnist.gin") == suites_dir() / "avmnist.gin"
    assert resolve_gin_file("avmnist_smoke") == suites_dir() / "avmnist_smoke.gin"
    assert resolve_gin_file("official/mimic.gin") == suites_dir() / "official" / "mimic.gin"
    assert resolve_gin_file("official/mimic") == suites_dir() / "official" / "mimic.gin"
    parse_gin(["official/nlvr2"])  # its include of '../nlvr2.gin' resolves next to it
    assert gin.query_parameter("suite.name") == "nlvr2_official"
    parse_gin(["toy_smoke"])
    assert gin.query_parameter("suite.name") == "toy_smoke"
    (outside / "toy_smoke.gin").write_text("suite.name = 'local'\n")  # an existing file wins
    parse_gin(["toy_smoke.gin"])
    assert gin.query_parameter("suite.name") == "local"


def test_gin_arg_that_is_a_folder_or_missing(outside):
    (outside / "suites").mkdir()
    (outside / "suites" / "a.gin").write_text("suite.name = 'a'\n")
    with pytest.raises(ConfigError, match=r"gin file .*suites: is a folder holding a\.gin"):
        parse_gin([outside / "suites"])
    with pytest.raises(ConfigError, match=r"gin file nope\.gin: not found .*avmnist_smoke"):
        parse_gin(["nope.gin"])
    with pytest.raises(ConfigError, match=r"gin file sub/avmnist\.gin: not found"):
        parse_gin(["sub/avmnist.gin"])  # a path with a folder is never an installed suite


def test_errors_name_the_real_file_and_line(outside):
    (outside / "base.gin").write_text("train.optimizer = 'sgd'\ntrain.learning_rate = 0.1\n")
    (outside / "suite.gin").write_text("include 'base.gin'\n")
    with pytest.raises(ConfigError) as err:
        parse_gin([outside / "suite.gin"])
    msg = str(err.value)
    assert re.search(r'(?s)learning_rate.*In file "' + re.escape(str(outside / "base.gin"))
                     + r'", line 2', msg), msg
    assert "@ginfile@" not in msg
    (outside / "missing.gin").write_text("suite.name = 'x'\ninclude 'nothere.gin'\n")
    with pytest.raises(ConfigError, match=r"(?s)nothere\.gin.*missing\.gin\", line 2"):
        parse_gin([outside / "missing.gin"])
    with pytest.raises(ConfigError, match=r"--gin-param \['train\.epochs = = 3'\]"):
        parse_gin([outside / "suite.gin"], ["train.epochs = = 3"])


def test_misspelled_scope_names_file_line_and_the_closest_method(outside):
    user = outside / "typo.gin"
    user.write_text("include 'avmnist_smoke.gin'\n# a typo below\ni2m2_ff/train.lr = 0.1\n")
    parse_gin([user])
    with pytest.raises(ConfigError) as err:
        check_scopes(gin.query_parameter("suite.methods"))
    msg = str(err.value)
    assert "'i2m2_ff'" in msg and f'file "{user}", line 3' in msg, msg
    assert "did you mean 'i2m2_lf'?" in msg and "i2m2_lf_inter_imputed" in msg, msg

    parse_gin(["avmnist_smoke.gin"], ["late_fusoin/train.lr = 0.2"])
    with pytest.raises(ConfigError, match=r"(?s)'late_fusoin'.*late_fusion.*--gin-param "
                                          r"'late_fusoin/train\.lr = 0\.2'"):
        check_scopes(gin.query_parameter("suite.methods"))


@pytest.mark.parametrize("name", ["avmnist", "avmnist_smoke", "dependency_spectrum",
                                  "dependency_spectrum_smoke", "toy_smoke"])
def test_every_installed_suite_binds_only_its_methods_scopes(name):
    parse_gin([name])
    check_scopes(gin.query_parameter("suite.methods"))
    assert set(ginfiles.bound_scopes()) <= set(gin.query_parameter("suite.methods"))
    assert set(ginfiles.bound_scopes()) & set(gin.query_parameter("suite.methods"))


def test_installed_suites_lists_the_suites_and_their_methods():
    suites = {s["name"]: s for s in installed_suites()}
    assert {"avmnist", "avmnist_smoke", "dependency_spectrum", "toy_smoke"} <= set(suites)
    assert "base" not in suites  # shared defaults, not a suite
    assert suites["avmnist"]["methods"] == AVMNIST_METHODS
    assert suites["avmnist_smoke"]["methods"] == AVMNIST_METHODS
    assert suites["dependency_spectrum"]["methods"] == SPECTRUM_METHODS
    assert suites["avmnist"]["dataset"] == "avmnist"
    assert suites["avmnist"]["file"] == suites_dir() / "avmnist.gin"
    assert suites["avmnist_official"]["file"] == suites_dir() / "official" / "avmnist.gin"
    assert suites["avmnist_official"]["dataset"] == "avmnist"
    assert all(s["error"] is None for s in suites.values())
    with pytest.raises(ValueError):  # the listing leaves no config behind
        gin.query_parameter("suite.name")


def test_installed_suites_reports_a_broken_file_and_goes_on(tmp_path, monkeypatch):
    (tmp_path / "good.gin").write_text("suite.name = 'good'\nsuite.dataset = 'toy'\n"
                                       "suite.methods = ['a']\n")
    (tmp_path / "broken.gin").write_text("suite.name = 'broken'\ntrain.nope = 1\n")
    monkeypatch.setattr(ginfiles, "suites_dir", lambda: tmp_path)
    suites = {s["name"]: s for s in installed_suites()}
    assert suites["good"]["methods"] == ["a"] and suites["good"]["error"] is None
    assert "nope" in suites["broken"]["error"] and suites["broken"]["methods"] == []


def test_cli_list_suites(tmp_path):
    r = subprocess.run([sys.executable, "-m", "i2m2bench", "list", "suites"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for name, file in [("avmnist", "avmnist.gin"), ("avmnist_smoke", "avmnist_smoke.gin"),
                       ("dependency_spectrum", "dependency_spectrum.gin")]:
        assert re.search(rf"(?m)^  {name} +{file}, dataset ", out), out
    assert "i2m2_lf_inter_imputed" in out and "a_only, b_only" in out, out
    assert "fusions:" not in out  # only the suites were asked for


def test_ginfiles_uses_only_gins_public_api():
    src = Path(ginfiles.__file__).read_text()
    assert not re.search(r"gin\.config\._|from gin\.config import _|_LOCATION_PREFIXES|_CONFIG\b",
                         src)
    assert not re.search(r"\bgin(\.\w+)*\._\w", src)  # no private name of any gin module
