import importlib.metadata

import pytest

import i2m2bench
from i2m2bench import registry
from i2m2bench.fusion.base import Fusion
from i2m2bench.registry import PluginError, Registry, RegistryError, UnknownNameError


def test_register_get_names_and_origin():
    reg = Registry("widget")

    @reg.register("alpha")
    def alpha():
        return 1

    assert reg.get("alpha") is alpha and reg["alpha"]() == 1
    assert "alpha" in reg and reg.names() == ["alpha"] and len(reg) == 1
    assert reg.origin("alpha").endswith("alpha")


def test_duplicate_is_refused_and_names_the_first():
    reg = Registry("widget")
    reg.add("x", object)
    with pytest.raises(RegistryError, match=r"widget 'x' is already registered \(by builtins.object\)"):
        reg.add("x", int)
    assert reg.get("x") is object  # the first registration is intact


def test_unknown_name_suggests_close_names_and_lists_all():
    with pytest.raises(UnknownNameError) as err:
        i2m2bench.FUSIONS.get("late_fusoin")
    msg = str(err.value)
    assert "Did you mean 'late_fusion'" in msg
    for name in ("early_fusion", "i2m2", "intra_only", "late_fusion", "unimodal"):
        assert name in msg
    assert isinstance(err.value, KeyError)


def test_unknown_name_without_close_match_still_lists_known():
    with pytest.raises(KeyError, match="Known dataset names: .*avmnist") as err:
        i2m2bench.DATASETS.get("zzzz")
    assert "Did you mean" not in str(err.value)


def test_base_class_is_checked():
    reg = Registry("fusion", Fusion)
    with pytest.raises(RegistryError, match="must be a subclass of Fusion"):
        reg.add("bad", dict)


def test_builtin_registries_are_populated():
    assert {"avmnist", "avdigits", "toy"} <= set(i2m2bench.DATASETS.names())
    assert {"lenet", "mlp", "identity"} <= set(i2m2bench.ENCODERS.names())
    assert {"unimodal", "early_fusion", "late_fusion", "intra_only", "i2m2"} <= set(i2m2bench.FUSIONS.names())
    assert {"joint", "pretrain_then_finetune"} <= set(i2m2bench.RECIPES.names())


class _EP:
    def __init__(self, name, value, fn):
        self.name, self.value, self._fn = name, value, fn
        self.dist = type("D", (), {"name": "someone-plugin"})()

    def load(self):
        return self._fn()


def test_plugins_are_loaded_from_entry_points(monkeypatch):
    seen = []
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [_EP("mine", "pkg.mod", lambda: seen.append(group))])
    assert registry.load_plugins(force=True) == ["mine"]
    assert seen == ["i2m2bench.plugins"]


def test_failing_plugin_names_entry_point_and_package(monkeypatch):
    def boom():
        raise ImportError("No module named 'pkg'")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [_EP("mine", "pkg.mod", boom)])
    with pytest.raises(PluginError, match=r"entry point 'mine' = 'pkg.mod' from package 'someone-plugin'.*No module named"):
        registry.load_plugins(force=True)
