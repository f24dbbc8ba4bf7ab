"""The plugin's own tests: the same contract checks i2m2bench runs on its built-in fusions."""
import i2m2bench
import i2m2bench_example_plugin  # noqa: F401  (registers 'film', as the entry point does)
from i2m2bench.testing import check_fusion, tiny_spec
from i2m2bench.types import ModalitySpec, TaskSpec


def test_film_is_registered_by_the_plugin_module():
    assert i2m2bench.FUSIONS.origin("film").startswith("i2m2bench_example_plugin.")


def test_the_entry_point_is_advertised():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="i2m2bench.plugins") if e.name == "film"]
    assert ep.value == "i2m2bench_example_plugin"


def test_film_meets_the_fusion_contract():
    check_fusion("film")


def test_film_meets_the_contract_with_three_modalities():
    spec = TaskSpec("three", "0", (*tiny_spec().modalities, ModalitySpec("c", (4,), "vector")),
                    "multiclass", 3)
    check_fusion("film", spec)


def test_film_as_the_inter_expert_of_i2m2():
    check_fusion("i2m2", options={"inter": "film", "inter_options": {"width": 8, "hidden": 8},
                                  "intra_options": {"width": 8}})
