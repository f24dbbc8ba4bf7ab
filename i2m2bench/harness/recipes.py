"""Recipes: how a method's model gets its weights before (or instead of) training.

A recipe is a small frozen dataclass held in ``RECIPES``: whether the harness trains the model
afterwards, what ``method.pretrain`` maps (nothing, each expert, or the whole model) and how it
initialises a model from *resolved* checkpoints. The runner resolves the units a recipe depends
on, trains them first, and hands their checkpoint paths over; a recipe never calls back into the
runner.

* ``joint`` — all experts trained together from scratch on the combined loss;
* ``pretrain_then_finetune`` — each expert starts from a trained method, then all are fine-tuned
  jointly (I2M2's AV-MNIST recipe, Madaan et al., NeurIPS 2024);
* ``evaluate_only`` — no training: the whole model is another method's trained model (same
  seed), evaluated under this method's options (e.g. I2M2 with its inter expert imputed);
* ``ensemble`` — no training: each expert is a separately trained method (same seed) and the
  fusion combines them at evaluation as it would after joint training (for I2M2 and intra-only:
  the product of experts). The official code's post-hoc ensembles of separately trained experts
  (FastMRI's ``--ensemble``, ``fastMRI/classifier.py``: 106-143 at I2M2 ``7742765f``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from i2m2bench.fusion.base import Fusion
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.checkpoints import load_checkpoint, recorded_digest
from i2m2bench.registry import Registry


@dataclass(frozen=True)
class Checkpoint:
    """A trained unit's weights, as resolved by the runner for a recipe."""

    method: str
    seed: int
    path: Path


Initialise = Callable[[Fusion, Mapping[str, Checkpoint]], None]


@dataclass(frozen=True)
class Recipe:
    """``slots``: what ``method.pretrain`` maps — ``"none"`` (it must be empty), ``"experts"``
    (each expert of the fusion to a method) or ``"model"`` (``{'model': <method>}``)."""

    description: str
    trains: bool = True
    slots: Literal["none", "experts", "model"] = "none"
    initialise: Initialise | None = None

    @property
    def uses_pretrain(self) -> bool:
        return self.slots != "none"

    def check_map(self, name: str, model: Fusion, pretrain: Mapping[str, str]) -> None:
        """Refuse a ``method.pretrain`` map this recipe cannot use (``name``: the recipe)."""
        if self.slots == "none":
            if pretrain:
                raise ConfigError(f"recipe {name!r} takes no method.pretrain (got {dict(pretrain)})")
            return
        if not pretrain:
            raise ConfigError(f"recipe {name!r} needs a method.pretrain map from "
                              + ("experts to methods" if self.slots == "experts" else
                                 "'model' to a method"))
        if self.slots == "model":
            if set(pretrain) != {"model"}:
                raise ConfigError(f"recipe {name!r} needs method.pretrain = {{'model': <method>}}; "
                                  f"got {dict(pretrain)}")
            return
        experts = model.experts()
        missing, unknown = set(experts) - set(pretrain), set(pretrain) - set(experts)
        if missing or unknown:
            raise ConfigError(f"method.pretrain must map each expert {sorted(experts)} to a method; "
                              f"missing {sorted(missing)}, unknown {sorted(unknown)}")

    def init(self, model: Fusion, checkpoints: Mapping[str, Checkpoint]) -> None:
        if self.initialise is not None:
            self.initialise(model, checkpoints)


RECIPES: Registry[Recipe] = Registry("recipe")


def _state(ck: Checkpoint) -> dict:
    try:
        return load_checkpoint(ck.path, recorded_digest(ck.path))  # the expert it trained
    except Exception as exc:  # truncated or foreign file where our checkpoint should be
        raise ConfigError(f"{ck.path}: cannot load the checkpoint of {ck.method}/seed{ck.seed} "
                          f"({type(exc).__name__}: {exc}); delete {ck.path.parent} (or pass "
                          "--force) to retrain it") from exc


def _load_experts(model: Fusion, checkpoints: Mapping[str, Checkpoint]) -> None:
    experts = model.experts()
    for expert, ck in checkpoints.items():
        try:
            experts[expert].load_state_dict(_state(ck))
        except RuntimeError as exc:
            raise ConfigError(f"expert {expert!r} cannot be initialised from method {ck.method!r}: "
                              f"the architectures differ ({exc})") from exc


def _load_model(model: Fusion, checkpoints: Mapping[str, Checkpoint]) -> None:
    ck = checkpoints["model"]
    try:
        model.load_state_dict(_state(ck))
    except RuntimeError as exc:
        raise ConfigError(f"method {ck.method!r}'s weights do not fit this method's model: {exc}") from exc


RECIPES.add("joint", Recipe("all experts trained together from scratch on the combined loss"))
RECIPES.add("pretrain_then_finetune", Recipe(
    "each expert initialised from a trained method, then all fine-tuned jointly (I2M2, AV-MNIST)",
    slots="experts", initialise=_load_experts))
RECIPES.add("evaluate_only", Recipe(
    "no training: another method's trained model, evaluated under this method's options",
    trains=False, slots="model", initialise=_load_model))
RECIPES.add("ensemble", Recipe(
    "no training: each expert a separately trained method, combined by the fusion at evaluation "
    "(a post-hoc product of experts)", trains=False, slots="experts", initialise=_load_experts))
