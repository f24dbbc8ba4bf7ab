"""A dataset builder gets only the options it declares: ``build_task`` refuses any other one before
the builder runs, and says which options the builder accepts."""
import pytest

from i2m2bench.data import DATASETS, accepts_data_root, build_task, builder_options


def test_an_undeclared_data_root_is_refused_naming_dataset_and_option():
    with pytest.raises(TypeError, match=r"dataset 'toy' has no option 'data_root'.*the options it "
                                        r"accepts are: classes, data_seed, dim, n_eval, n_train, "
                                        r"noise, source$"):
        build_task("toy", data_root="/x")


def test_a_misspelt_option_gets_a_did_you_mean():
    with pytest.raises(TypeError, match=r"dataset 'dependency_spectrum' has no option 'inter_shar' "
                                        r"\(did you mean 'inter_share'"):
        build_task("dependency_spectrum", inter_shar=0.5)
    # avmnist's embedded options (forwarded to avdigits) are declared too, so they are checked
    with pytest.raises(TypeError, match=r"dataset 'avmnist' has no options 'max_trian' \(did you "
                                        r"mean 'max_train'\?\), 'sourse' \(did you mean 'source'"):
        build_task("avmnist", max_trian=10, sourse="embedded")


@pytest.fixture
def temporary_dataset():
    names = []

    def add(name, builder):
        DATASETS.add(name, builder)
        names.append(name)

    yield add
    for name in names:
        DATASETS.remove(name)


def test_refused_before_the_builder_runs(temporary_dataset):
    calls = []
    temporary_dataset("_spy", lambda n=1: calls.append(n))
    with pytest.raises(TypeError, match=r"dataset '_spy' has no option 'm'.*accepts are: n$"):
        build_task("_spy", m=2)
    assert calls == []


def test_declared_options_and_data_root():
    assert accepts_data_root("avmnist") is True
    assert accepts_data_root("toy") is False
    assert accepts_data_root("dependency_spectrum") is False
    assert accepts_data_root("avdigits") is False
    assert builder_options("toy") == {"n_train", "n_eval", "classes", "dim", "noise", "data_seed",
                                      "source"}
    assert builder_options("avmnist") == {"source", "data_root", "split_sizes", "image_energy",
                                          "audio_snr_db", "noise_seed", "max_train", "max_eval"}
    assert "data_root" not in builder_options("dependency_spectrum")
    with pytest.raises(KeyError, match="unknown dataset 'toyy'"):
        builder_options("toyy")


def test_a_builder_taking_kwargs_is_not_checked(temporary_dataset):
    temporary_dataset("_open", lambda **kw: kw)
    assert accepts_data_root("_open") is True
    assert build_task("_open", anything=1, data_root="/x") == {"anything": 1, "data_root": "/x"}


# The resolved options are hashed into unit identities: they must stay exactly as they were.
@pytest.mark.parametrize("name,options,expected", [
    ("avmnist", {"source": "embedded"},
     {"source": "embedded", "image_energy": 0.25, "audio_snr_db": -9.0, "noise_seed": 0,
      "max_train": None, "max_eval": None,
      "sha256": "1fb697df6e7f79a72bb57e2cd61b95cbea699efe69f826aee0213eb7a6360dda"}),
    ("dependency_spectrum", {"inter_share": 0.5},
     {"n_train": 4000, "n_eval": 2000, "classes": 4, "dim": 16, "inter_share": 0.5,
      "intra_snr": 2.0, "inter_snr": 3.0, "data_seed": 0}),
    ("toy", {}, {"n_train": 512, "n_eval": 256, "classes": 4, "dim": 16, "noise": 1.5,
                 "data_seed": 0}),
])
def test_resolved_options_are_unchanged(name, options, expected):
    got = build_task(name, **options).options
    assert got == expected
    assert list(got) == list(expected)  # same keys in the same order
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
