"""Every registered fusion strategy meets the contract (i2m2bench.testing.check_fusion)."""
import pytest
import torch

import i2m2bench
from i2m2bench.data.avmnist import MODALITIES
from i2m2bench.testing import check_fusion, random_batch, tiny_spec
from i2m2bench.types import TaskSpec


@pytest.mark.parametrize("name", i2m2bench.FUSIONS.names())
def test_contract_on_vectors(name):
    check_fusion(name)


AVMNIST_OPTIONS = {
    "unimodal": {"modality": "audio", "width": 3},
    "early_fusion": {"width": 2},
    "late_fusion": {"operator": "lrtf", "width": 2, "rank": 3},
    "intra_only": {"intra_options": {"width": 2}},
    "i2m2": {"inter": "early_fusion", "inter_options": {"width": 2}, "intra_options": {"width": 2},
             "inter_missing": "impute", "weights": [1.0, 0.5, 2.0]},
}


@pytest.mark.parametrize("name", sorted(AVMNIST_OPTIONS))
def test_contract_on_avmnist_shapes(name):
    spec = TaskSpec("avmnist", "t", MODALITIES, "multiclass", 10)
    check_fusion(name, spec, AVMNIST_OPTIONS[name], batch_size=4)


def test_lenet_feature_sizes_match_the_paper():
    from i2m2bench.encoders.lenet import LeNet

    spec = TaskSpec("avmnist", "t", MODALITIES, "multiclass", 10)
    img, aud = LeNet(spec.modality("image"), width=6), LeNet(spec.modality("audio"), width=3)
    assert (img.extra_blocks, img.out_dim) == (3, 8 * 6)
    assert (aud.extra_blocks, aud.out_dim) == (5, 32 * 3)
    assert img(torch.zeros(2, 1, 28, 28)).shape == (2, 48)
    assert aud(torch.zeros(2, 1, 112, 112)).shape == (2, 96)


def test_i2m2_experts_and_names():
    model = i2m2bench.build_fusion("i2m2", tiny_spec())
    assert list(model(random_batch(tiny_spec()))) == ["a", "b", "inter"]
    assert set(model.experts()) == {"a", "b", "inter"}


def test_broken_strategy_fails_the_contract():
    from i2m2bench.fusion.base import FUSIONS, Fusion

    class Lost(Fusion):
        combine = "single"

        def __init__(self, spec):
            super().__init__(spec)
            self.layers = [torch.nn.Linear(6, spec.num_classes)]  # plain list: never trained
            self.head = torch.nn.Linear(6, spec.num_classes)

        def expert_modalities(self):
            return {"inter": ("a",)}

        def forward(self, batch):
            return {"inter": self.head(batch.inputs["a"])}

    FUSIONS.add("_lost", Lost)
    try:
        check_fusion("_lost")  # the head is a registered module, so this one passes...

        class Dead(Lost):
            def __init__(self, spec):
                super().__init__(spec)
                self.unused = torch.nn.Linear(3, 3)

        FUSIONS.add("_dead", Dead)
        with pytest.raises(AssertionError, match="parameters get no gradient.*unused"):
            check_fusion("_dead")
    finally:
        FUSIONS.remove("_lost")
        FUSIONS.remove("_dead")
