"""Every registered fusion strategy meets the contract (i2m2bench.testing.check_fusion)."""
import re

import pytest
import torch

import i2m2bench
from i2m2bench.data.avmnist import MODALITIES
from i2m2bench.fusion.base import FUSIONS, ContractError, Fusion, build_fusion, check_outputs
from i2m2bench.testing import check_fusion, random_batch, tiny_spec
from i2m2bench.types import TaskSpec


@pytest.mark.parametrize("problem", ["multiclass", "multilabel", "soft-score"])
@pytest.mark.parametrize("name", i2m2bench.FUSIONS.names())
def test_contract_on_vectors(name, problem):
    check_fusion(name, tiny_spec(problem=problem))


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


# --- the checks themselves: each deliberately broken strategy is refused, naming its rule ------
class _Sound(Fusion):
    """A minimal correct strategy (one expert on modality a); each subclass breaks one rule."""
    combine = "single"

    def __init__(self, spec):
        super().__init__(spec)
        self.head = torch.nn.Linear(6, spec.num_classes)

    def expert_modalities(self):
        return {"inter": ("a",)}

    def forward(self, batch):
        return {"inter": self.head(batch.inputs["a"])}


class _WrongExpertNames(_Sound):
    def forward(self, batch):
        return {"fused": self.head(batch.inputs["a"])}


class _WrongShape(_Sound):
    def __init__(self, spec):
        super().__init__(spec)
        self.head = torch.nn.Linear(6, spec.num_classes + 1)


class _NaNLogits(_Sound):
    def forward(self, batch):
        z = self.head(batch.inputs["a"])
        return {"inter": torch.cat([z[:1] * float("nan"), z[1:]])}


class _TwoExpertsButSingle(_Sound):
    def expert_modalities(self):
        return {"inter": ("a",), "other": ("a",)}

    def forward(self, batch):
        z = self.head(batch.inputs["a"])
        return {"inter": z, "other": 2 * z}


class _UnknownModality(_Sound):
    def expert_modalities(self):
        return {"inter": ("a", "c")}


class _DeadParameter(_Sound):
    def __init__(self, spec):
        super().__init__(spec)
        self.unused = torch.nn.Linear(3, 3)


class _NotThePaperFormula(_Sound):
    def log_probs(self, logits, batch):
        return torch.log_softmax(2 * next(iter(logits.values())), -1)  # a sharpened softmax


class _Nondeterministic(_Sound):
    def forward(self, batch):
        z = self.head(batch.inputs["a"])
        return {"inter": z + torch.rand_like(z)}  # fresh noise on every call, eval mode too


OUTPUT_RULES = [  # broken outputs: found by check_fusion and by check_outputs (before training)
    pytest.param(_WrongExpertNames,
                 r"expert_modalities\(\) names \['inter'\] but forward returned \['fused'\]",
                 id="wrong_expert_names"),
    pytest.param(_WrongShape,
                 r"expert 'inter' logits have shape \(6, 4\), expected \(6, 3\) \(batch, classes\)",
                 id="wrong_shape"),
    pytest.param(_NaNLogits, r"expert 'inter' logits are not finite floats", id="nan_logits"),
    pytest.param(_TwoExpertsButSingle,
                 r"combine='single' but forward returned 2 experts \['inter', 'other'\]",
                 id="single_with_two_experts"),
    pytest.param(_UnknownModality, r"expert 'inter' reads unknown modalities \['c'\]", id="unknown_modality"),
]
BEHAVIOUR_RULES = [  # broken behaviour: only the full check_fusion can see these
    pytest.param(_DeadParameter,
                 r"parameters get no gradient from the loss: \['unused.weight', 'unused.bias'\]",
                 id="dead_parameter"),
    pytest.param(_NotThePaperFormula, r"combined output differs from the paper's PoE formula",
                 id="not_the_paper_formula"),
    pytest.param(_Nondeterministic, r"same seed gave different outputs for 'inter'", id="nondeterministic"),
]


@pytest.fixture
def register():
    """Register strategies under temporary names; they are removed again after the test."""
    names = []

    def add(cls):
        name = f"_test_{cls.__name__.strip('_').lower()}"
        FUSIONS.add(name, cls)
        names.append(name)
        return name

    yield add
    for name in names:
        FUSIONS.remove(name)
    assert not set(names) & set(FUSIONS.names()), "temporary strategies left registered"


def test_the_sound_strategy_meets_the_contract(register):
    # the control: each broken strategy below differs from this one by a single rule
    name = register(_Sound)
    check_fusion(name)
    check_outputs(name, build_fusion(name, tiny_spec()), random_batch(tiny_spec()))


@pytest.mark.parametrize("cls,rule", OUTPUT_RULES + BEHAVIOUR_RULES)
def test_check_fusion_refuses_a_broken_strategy_naming_the_rule(register, cls, rule):
    name = register(cls)
    with pytest.raises(AssertionError, match=rf"^fusion {re.escape(repr(name))}: (.*; )?{rule}"):
        check_fusion(name)


@pytest.mark.parametrize("cls,rule", OUTPUT_RULES)
def test_check_outputs_refuses_a_broken_strategy_naming_it_and_the_rule(register, cls, rule):
    name = register(cls)
    where = re.escape(f"fusion {name!r} ({cls.__module__}.{cls.__qualname__}) breaks the fusion contract: ")
    with pytest.raises(ContractError, match=rf"^{where}(.*; )?{rule}"):
        check_outputs(name, build_fusion(name, tiny_spec()), random_batch(tiny_spec()))
