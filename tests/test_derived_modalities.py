"""Derived inputs (``ModalitySpec.derived_from``): a frozen backbone's joint feature is absent with
any modality it is computed from, is never removed on its own, and has no intra expert; and the
official vision-language head."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from i2m2bench.fusion import build_fusion
from i2m2bench.harness.protocols import ProtocolError, expand
from i2m2bench.types import Batch, ModalitySpec, Split, Task, TaskSpec, derive_presence


def _spec() -> TaskSpec:
    return TaskSpec("vl", "1", (ModalitySpec("image", (6,), "vector", "identity"),
                                ModalitySpec("text", (5,), "vector", "identity"),
                                ModalitySpec("joint", (7,), "vector", "identity",
                                             derived_from=("image", "text"))),
                    "multiclass", 3)


def _task(n: int = 8) -> Task:
    spec = _spec()
    g = torch.Generator().manual_seed(0)
    split = lambda name: Split({m.name: torch.randn(n, *m.shape, generator=g)  # noqa: E731
                                for m in spec.modalities}, torch.randint(0, 3, (n,), generator=g), name)
    return Task(spec, {k: split(k) for k in ("train", "val", "test")}, {})


def test_derived_from_must_name_source_modalities():
    with pytest.raises(ValueError, match="derived from 'audio'"):
        TaskSpec("x", "1", (ModalitySpec("a", (2,), "vector"),
                            ModalitySpec("j", (2,), "vector", derived_from=("audio",))), "multiclass", 2)
    assert _spec().source_modalities == ("image", "text")


def test_derive_presence_is_the_and_of_the_sources():
    p = {"image": torch.tensor([True, True, False, False]), "text": torch.tensor([True, False, True, False])}
    out = derive_presence(_spec(), p)
    assert out["joint"].tolist() == [True, False, False, False]
    assert out["image"] is p["image"]


def test_protocols_remove_sources_and_the_derived_input_follows():
    task = _task()
    protos = {p.key: p for p in expand(["missing:*", "missing_rate:0.5"], task)}
    assert set(protos) == {"missing:image", "missing:text", "missing_rate:0.5"}
    batch = task.splits["test"].batch(torch.arange(8), task.spec)
    out = protos["missing:image"].transform(task, 0)(batch, 0)
    assert not out.present["image"].any() and out.present["text"].all() and not out.present["joint"].any()
    rated = protos["missing_rate:0.5"].transform(task, 0)(batch, 0)
    assert torch.equal(rated.present["joint"], rated.present["image"] & rated.present["text"])
    with pytest.raises(ProtocolError, match="derived from image, text"):
        expand(["missing:joint"], task)


def test_i2m2_with_a_joint_inter_expert_drops_it_with_either_source():
    spec = _spec()
    model = build_fusion("i2m2", spec, inter="unimodal",
                         inter_options={"modality": "joint", "width": None, "hidden": 14,
                                        "head": "ln_gelu"},
                         intra_options={"width": None, "hidden": 8, "head": "ln_gelu"})
    assert set(model.intra_experts) == {"image", "text"}  # no intra expert of the joint feature
    head = model.inter_expert.head
    assert [type(m) for m in head] == [nn.Linear, nn.LayerNorm, nn.GELU, nn.Linear]
    task = _task(4)
    batch = task.splits["test"].batch(torch.arange(4), spec)
    present = derive_presence(spec, {"image": torch.tensor([True, False, True, True]),
                                     "text": torch.tensor([True, True, False, True])})
    b = Batch(batch.inputs, batch.target, present)
    mask = model.availability_mask(model(b), b)  # columns: image, text, inter
    assert mask.tolist() == [[True, True, True], [False, True, False], [True, False, False],
                             [True, True, True]]


def test_ln_gelu_head_needs_hidden_units():
    with pytest.raises(ValueError, match="needs hidden > 0"):
        build_fusion("unimodal", _spec(), modality="image", width=None, hidden=0, head="ln_gelu")
    with pytest.raises(ValueError, match="'mlp' or 'ln_gelu'"):
        build_fusion("unimodal", _spec(), modality="image", width=None, head="transformer")
