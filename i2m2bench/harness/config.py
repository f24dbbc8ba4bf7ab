"""The gin surface of a suite: frozen, gin-configurable dataclasses (the schema of every setting).

* ``suite.*`` (:class:`SuiteConfig`): the dataset, the methods, seeds, protocols, sweep, layout;
* ``method.*`` (:class:`MethodConfig`), bound under each method's scope
  (``i2m2_lf/method.fusion = 'i2m2'``): the fusion strategy, its options, the recipe and the
  methods whose trained weights a recipe starts from;
* ``train.*`` (:class:`TrainConfig`), globally or per method (``i2m2_lf/train.lr = 0.01``);
* ``embedded_schedule.overrides`` (:class:`EmbeddedSchedule`): ``train.*`` values replaced when
  the task resolves to embedded data.

Each default lives in one place — the dataclass field — and nothing re-reads a setting with a
``.get(key, default)``. Settings are validated when the dataclass is built; errors name the
binding.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Mapping

import gin

from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.protocols import DEFAULT_LEVELS

_LABEL = re.compile(r"[A-Za-z0-9._-]+")
#: ``train.loss`` values; which apply to a task depends on its problem type (fusion.base.LOSSES).
LOSS_NAMES = ("auto", "nll", "bce", "soft_ce")


@gin.configurable("train")
@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one method (gin: ``train.*``, per method ``<method>/train.*``).

    Defaults follow MultiBench's ``training_structures`` as used by the I2M2 code: plain SGD
    (no momentum), weight decay 1e-4; values per dataset are set (and cited) in ``gin/*.gin``.

    ``loss``: the training loss of the combined output, ``'auto'`` (the problem type's default:
    NLL for multiclass, Bernoulli-PoE BCE for multilabel, ``'bce'`` for soft-score) or one the
    task's problem type allows (``i2m2bench.fusion.base.LOSSES``; soft-score: ``'bce'`` or
    ``'soft_ce'``). ``select_on``: the validation metric that selects the checkpoint and drives
    early stopping (its direction from ``i2m2bench.metrics.METRICS``); None: the task's primary
    metric. Both are checked against the task before any training, naming the binding.

    ``patience``: training stops after this many consecutive epochs without a strict
    improvement of the selection metric; None never stops early. The default, 11, is the
    official I2M2 loops' rule ``if early_stop and patience > 10: break`` with the counter raised
    once per epoch without improvement (divyam3897/I2M2 @ 7742765,
    ``avmnist_and_mimic/training_structures/inter_modality.py`` lines 223-263; the same in
    ``intra_modality.py`` and ``inter_and_intra_modality.py``); their unimodal loop never stops
    early (``unimodal.py``: ``early_stop=False``), which a suite states with ``patience = None``.
    """

    lr: float = 0.01
    epochs: int = 30
    batch_size: int = 40
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 1e-4
    grad_clip: float | None = 8.0
    patience: int | None = 11
    eval_batch_size: int = 1000
    loss: str = "auto"
    select_on: str | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"train.optimizer must be 'sgd', 'adam' or 'adamw'; got {self.optimizer!r}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"train.loss must be one of {', '.join(map(repr, LOSS_NAMES))}; got "
                             f"{self.loss!r}")
        if self.select_on is not None and (not isinstance(self.select_on, str) or not self.select_on):
            raise ValueError(f"train.select_on must be a metric name (or None: the task's primary "
                             f"metric); got {self.select_on!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"train.patience must be a whole number >= 1 or None (never stop "
                             f"early); got {self.patience!r}")
        for name in ("lr", "epochs", "batch_size", "eval_batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name} must be > 0; got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@gin.configurable("embedded_schedule")
@dataclass(frozen=True)
class EmbeddedSchedule:
    """``train.*`` settings replaced when the task resolves to embedded data (a shorter schedule).

    Bound globally or per method (``i2m2_lf/embedded_schedule.overrides = {...}``); the
    leaderboard shows the schedule each method actually used. A setting given explicitly on the
    command line (``--gin-param "i2m2_lf/train.epochs = 50"`` or ``"train.epochs = 50"``) is not
    overridden: ``keep`` names those settings.
    """

    overrides: Mapping = field(default_factory=dict)

    def apply(self, train: TrainConfig, method: str, keep: set[str] | frozenset = frozenset()) -> TrainConfig:
        overrides = {k: v for k, v in self.overrides.items() if k not in keep}
        if not overrides:
            return train
        try:
            return replace(train, **overrides)
        except TypeError as exc:
            raise ConfigError(f"{method}/embedded_schedule.overrides: {exc}") from exc


@gin.configurable("method")
@dataclass(frozen=True)
class MethodConfig:
    """One method of a suite, bound under the method's scope (``i2m2_lf/method.fusion = 'i2m2'``).

    ``pretrain`` maps the slots a recipe fills (expert names of the fusion, see
    ``Fusion.experts``, or ``'model'`` for the whole model) to the methods of the suite whose
    trained weights fill them. ``protocols`` replaces ``suite.protocols`` for this method.
    """

    fusion: str = gin.REQUIRED
    label: str | None = None
    options: Mapping = field(default_factory=dict)
    recipe: str = "joint"
    pretrain: Mapping = field(default_factory=dict)
    protocols: tuple | None = None

    def __post_init__(self) -> None:
        for name in ("options", "pretrain"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"method.{name} must be a dict; got {getattr(self, name)!r}")
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "pretrain", dict(self.pretrain))
        if self.protocols is not None:
            object.__setattr__(self, "protocols", tuple(self.protocols))


@gin.configurable("suite")
@dataclass(frozen=True)
class SuiteConfig:
    """The suite: which dataset, which methods (each defined under its own gin scope), seeds.

    ``sweep`` (optional) maps setting labels to dataset-option overrides: the whole suite runs
    once per setting, all settings' rows going to one results file (each row names its
    ``setting``). ``layout`` names the leaderboard layout (``i2m2bench.reporting.LAYOUTS``)
    that renders the suite's rows. ``protocols`` and ``levels``: see
    :mod:`i2m2bench.harness.protocols`. ``reference``: the method whose robustness curves the
    effective-robustness metric compares against (late fusion: the most common inter-only
    baseline of the suite, and I2M2's default inter expert).
    """

    name: str = gin.REQUIRED
    dataset: str = gin.REQUIRED
    methods: tuple = gin.REQUIRED
    dataset_options: Mapping = field(default_factory=dict)
    seeds: tuple = (0, 1, 2)
    protocols: tuple = ("test", "shift:*")
    sweep: Mapping | None = None
    layout: str = "standard"
    levels: tuple = DEFAULT_LEVELS
    reference: str = "late_fusion"

    def __post_init__(self) -> None:
        sweep = self.sweep
        if sweep is not None and (not isinstance(sweep, Mapping) or not sweep
                                  or not all(isinstance(v, Mapping) for v in sweep.values())):
            raise ConfigError(f"suite.sweep must map setting labels to dicts of dataset options; "
                              f"got {sweep!r}")
        for label in sweep or {}:  # labels become folder names under --out
            if not isinstance(label, str) or not _LABEL.fullmatch(label) or set(label) == {"."}:
                raise ConfigError(f"suite.sweep: setting label {label!r} must be letters, digits, "
                                  "'.', '_' or '-' (it names a run folder)")
        if not isinstance(self.dataset_options, Mapping):
            raise ConfigError(f"suite.dataset_options must be a dict; got {self.dataset_options!r}")
        set_ = object.__setattr__
        set_(self, "methods", tuple(self.methods))
        set_(self, "seeds", tuple(int(s) for s in self.seeds))
        set_(self, "protocols", tuple(self.protocols))
        set_(self, "levels", tuple(float(v) for v in self.levels))
        set_(self, "dataset_options", dict(self.dataset_options))
        set_(self, "sweep", {k: dict(v) for k, v in sweep.items()} if sweep else None)

    def settings(self) -> dict[str | None, dict]:
        """Setting label -> dataset options (one unlabelled setting when there is no sweep)."""
        if not self.sweep:
            return {None: dict(self.dataset_options)}
        return {label: {**self.dataset_options, **o} for label, o in self.sweep.items()}


def read_suite() -> SuiteConfig:
    """The parsed suite (gin must have been parsed)."""
    try:
        return SuiteConfig()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"suite definition: {type(exc).__name__}: {exc}") from exc


def read_method(name: str, embedded: bool, explicit: set[str] | frozenset = frozenset()
                ) -> tuple[MethodConfig, TrainConfig]:
    """Method ``name``'s settings under its gin scope, with the embedded schedule applied except
    to the ``train.*`` settings in ``explicit`` (given on the command line:
    :func:`i2m2bench.harness.ginfiles.explicit_train_settings`)."""
    with gin.config_scope(name):
        try:
            method = MethodConfig()
            train = TrainConfig()
            schedule = EmbeddedSchedule()
        except ConfigError as exc:
            raise ConfigError(f"method {name!r}: {exc}") from exc
        except Exception as exc:
            raise ConfigError(f"method {name!r}: {type(exc).__name__}: {exc} (bind it as "
                              f"{name}/method.fusion = '...' in the gin file)") from exc
    if not embedded:
        return method, train
    return method, schedule.apply(train, name, keep=explicit)
