"""The gin surface of a suite: frozen, gin-configurable dataclasses (the schema of every setting).

* ``suite.*`` (:class:`SuiteConfig`): the dataset, the methods, seeds, protocols, sweep, layout;
* ``method.*`` (:class:`MethodConfig`), bound under each method's scope
  (``i2m2_lf/method.fusion = 'i2m2'``): the fusion strategy, its options, the recipe and the
  methods whose trained weights a recipe starts from;
* ``train.*`` (:class:`TrainConfig`), globally or per method (``i2m2_lf/train.lr = 0.01``);
* ``embedded_schedule.overrides`` (:class:`EmbeddedSchedule`): ``train.*`` values replaced when
  the task resolves to embedded data.

Each default lives in one place — the dataclass field — and nothing re-reads a setting with a
``.get(key, default)``. Settings are validated when the dataclass is built, before any data is
loaded or any unit trained: types (a whole-number setting given ``2.5``, ``'3'`` or ``True`` is
refused, never rounded), signs and ranges, NaN/Inf, empty or duplicate lists, and names that
become folders (:func:`check_plain_name`). A refused setting raises :class:`SettingError`, which
:func:`read_suite` and :func:`read_method` turn into one line naming the binding as gin resolved
it (``a_only/train.lr`` or ``train.lr``) and the file and line that set it
(:func:`i2m2bench.harness.ginfiles.binding_location`).

The value checks themselves (and the checks of a run's arguments) are
:mod:`i2m2bench.harness.checks`; devices :mod:`i2m2bench.harness.devices`.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Mapping

import gin

from i2m2bench.harness.checks import (SettingError, check_board_name, check_finite, check_label,
                                      check_no_duplicates, check_plain_name, check_real,
                                      check_sequence, check_whole, is_real_number,
                                      is_whole_number, kind_name, out_of_range_seed)
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.protocols import DEFAULT_LEVELS

#: ``train.class_weights`` values: none, or from the training labels' class frequencies.
CLASS_WEIGHTS = (None, "balanced")
#: ``train.sampler`` values: a permutation per epoch, or draws weighted by positive-label count.
SAMPLERS = (None, "positive_count")
PRECISIONS = ("fp32", "bf16")  # train.precision
#: ``train.loss`` values; which apply to a task depends on its problem type (fusion.base.LOSSES).
LOSS_NAMES = ("auto", "nll", "bce", "soft_ce")
#: Protocol heads that draw robustness curves, whose effective robustness compares with
#: ``suite.reference`` (:mod:`i2m2bench.harness.protocols`).
CURVE_PROTOCOLS = ("perturb:", "missing_rate:")


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@gin.configurable("train")
@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one method (gin: ``train.*``, per method ``<method>/train.*``).

    Defaults follow MultiBench's ``training_structures`` as used by the I2M2 code: plain SGD
    (no momentum), weight decay 1e-4; values per dataset are set (and cited) in ``gin/*.gin``.
    ``optimizer``: ``'sgd'`` (with ``momentum``), ``'adam'``, ``'adamw'`` or ``'rmsprop'``
    (PyTorch's defaults otherwise: RMSprop with alpha 0.99, eps 1e-8, no momentum -- the official
    MIMIC loops' ``torch.optim.RMSprop(params, lr, weight_decay)``). ``betas``: Adam(W)'s
    (beta1, beta2), None for PyTorch's (0.9, 0.999) (the official vision-language heads use
    (0.9, 0.98)).

    ``loss``: the training loss of the combined output, ``'auto'`` (the problem type's default:
    NLL for multiclass, Bernoulli-PoE BCE for multilabel, ``'bce'`` for soft-score) or one the
    task's problem type allows (``i2m2bench.fusion.base.LOSSES``; soft-score: ``'bce'`` or
    ``'soft_ce'``). ``select_on``: the validation metric that selects the checkpoint and drives
    early stopping (its direction from ``i2m2bench.metrics.METRICS``); None: the task's primary
    metric. Both are checked against the task before any training, naming the binding.
    ``class_weights``: None (unweighted) or ``'balanced'`` -- multilabel tasks only: each label's
    two classes weighted N / (2 N_c) from the training targets (scikit-learn's "balanced"
    heuristic), as the official FastMRI code weights its per-label cross-entropies (its weights
    file is not public: ``i2m2bench.harness.training.balanced_class_weights``).
    ``sampler``: None (each epoch one permutation of the training samples) or
    ``'positive_count'`` -- multilabel tasks only: each epoch draws N training samples with
    replacement, each weighted 1 / (the number of training samples with as many positive labels),
    as the official FastMRI data module's ``WeightedRandomSampler`` (divyam3897/mri-robustness @
    d12968b, ``src/data/knee_data.py`` L155-175, L230-237;
    ``i2m2bench.harness.training.positive_count_weights``).

    ``precision``: ``'fp32'`` (default) or ``'bf16'``: training and evaluation under
    ``torch.autocast`` with bfloat16 (matmuls and convolutions in bfloat16, reductions and the
    PoE kernels in float32; ``i2m2bench.harness.training.autocast``); it is part of the unit's
    settings, so of its hash and of every row.

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
    class_weights: str | None = None
    sampler: str | None = None
    betas: tuple | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        """Every field's type and range (:class:`SettingError` naming ``train.<field>``); values
        are kept as given (the unit hash covers them)."""
        if self.optimizer not in OPTIMIZERS:
            raise SettingError("train.optimizer", f"train.optimizer must be one of "
                               f"{', '.join(map(repr, OPTIMIZERS))}; got {self.optimizer!r}")
        if self.loss not in LOSS_NAMES:
            raise SettingError("train.loss", f"train.loss must be one of "
                               f"{', '.join(map(repr, LOSS_NAMES))}; got {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise SettingError("train.precision", f"train.precision must be one of "
                               f"{', '.join(map(repr, PRECISIONS))}; got {self.precision!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise SettingError("train.class_weights", f"train.class_weights must be one of "
                               f"{', '.join(map(repr, CLASS_WEIGHTS))}; got {self.class_weights!r}")
        if self.sampler not in SAMPLERS:
            raise SettingError("train.sampler", f"train.sampler must be one of "
                               f"{', '.join(map(repr, SAMPLERS))}; got {self.sampler!r}")
        if self.select_on is not None and (not isinstance(self.select_on, str) or not self.select_on):
            raise SettingError("train.select_on", f"train.select_on must be a metric name (or None: "
                               f"the task's primary metric); got {self.select_on!r}")
        if self.patience is not None and (not is_whole_number(self.patience) or self.patience < 1):
            raise SettingError("train.patience", f"train.patience must be a whole number >= 1 or "
                               f"None (never stop early); got {self.patience!r}")
        check_real("train.lr", self.lr, low=0.0, low_open=True, rng="> 0")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            check_whole(f"train.{name}", getattr(self, name))
        check_real("train.momentum", self.momentum, low=0.0, high=1.0, high_open=True, rng="in [0, 1)")
        check_real("train.weight_decay", self.weight_decay, low=0.0, rng=">= 0")
        if self.grad_clip is not None:
            check_real("train.grad_clip", self.grad_clip, low=0.0, low_open=True,
                  rng="> 0, or None for no clipping")
        if self.betas is not None:
            if self.optimizer not in ("adam", "adamw"):
                raise SettingError("train.betas", f"train.betas applies to 'adam' and 'adamw'; "
                                   f"train.optimizer is {self.optimizer!r}")
            if (not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2
                    or not all(is_real_number(b) and 0.0 <= b < 1.0 for b in self.betas)):
                raise SettingError("train.betas", f"train.betas must be two numbers in [0, 1) "
                                   f"(or None: PyTorch's (0.9, 0.999)); got {self.betas!r}")
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def as_dict(self) -> dict:
        return asdict(self)


@gin.configurable("embedded_schedule")
@dataclass(frozen=True)
class EmbeddedSchedule:
    """``train.*`` settings (``overrides``) and ``method.options`` entries (``options``) replaced
    when the task resolves to embedded data (a shorter schedule, a narrower network).

    Bound globally or per method (``i2m2_lf/embedded_schedule.overrides = {...}``); the
    leaderboard shows the schedule each method actually used. A setting given explicitly on the
    command line (``--gin-param "i2m2_lf/train.epochs = 50"`` or ``"train.epochs = 50"``) is not
    overridden: ``keep`` names those settings.
    """

    overrides: Mapping = field(default_factory=dict)
    #: ``method.options`` entries replaced on embedded data (e.g. a narrower network for a small
    #: stand-in: ``{'width': 8}``); each replaces the option of that name as a whole.
    options: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.options, Mapping):
            raise SettingError("embedded_schedule.options", "embedded_schedule.options must be a "
                               f"dict of method.options entries; got {self.options!r}")
        binding = "embedded_schedule.overrides"
        if not isinstance(self.overrides, Mapping):
            raise SettingError(binding, f"{binding} must be a dict of train.* settings; got "
                               f"{self.overrides!r}")
        names = [f.name for f in fields(TrainConfig)]
        for key in self.overrides:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingError(binding, f"{binding}: {key!r} is no train.* setting{hint}; the "
                                   f"settings are {', '.join(names)}")

    def apply(self, train: TrainConfig, method: str, keep: set[str] | frozenset = frozenset()) -> TrainConfig:
        """``train`` with the overrides (except those in ``keep``) replaced, checked as
        ``train.*`` settings are (:class:`SettingError` naming the override)."""
        overrides = {k: v for k, v in self.overrides.items() if k not in keep}
        if not overrides:
            return train
        try:
            return replace(train, **overrides)
        except SettingError as exc:
            key = exc.binding.split(".", 1)[1]
            raise SettingError("embedded_schedule.overrides",
                               f"embedded_schedule.overrides[{key!r}] = {overrides.get(key)!r}: "
                               f"{exc.message}") from exc
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
                raise SettingError(f"method.{name}", f"method.{name} must be a dict; got "
                                   f"{getattr(self, name)!r}")
        for name in ("fusion", "recipe"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingError(f"method.{name}", f"method.{name} must be a name; got "
                                   f"{getattr(self, name)!r}")
        check_label(self.label)
        for slot, source in self.pretrain.items():
            if not isinstance(slot, str) or not isinstance(source, str):
                raise SettingError("method.pretrain", "method.pretrain must map slot names to "
                                   f"method names; got {dict(self.pretrain)!r}")
        check_finite("method.options", self.options)
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "pretrain", dict(self.pretrain))
        if self.protocols is not None:
            protocols = check_sequence("method.protocols", self.protocols, "protocol names",
                                  empty_ok=True)
            if not all(isinstance(p, str) for p in protocols):
                raise SettingError("method.protocols", "method.protocols must be a list of "
                                   f"protocol names; got {self.protocols!r}")
            object.__setattr__(self, "protocols", protocols)


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
    baseline of the suite, and I2M2's default inter expert). ``boards``: ``'one'`` (default:
    every sweep setting's rows on one board, as the dependency spectrum's) or ``'per_setting'``
    (one board and results file per setting, ``<suite>-<setting>[-embedded-<dataset>]``: for
    settings that are different tasks, such as MIMIC-III's three). ``official``: the
    official-behaviour switches to turn on (none by default; names in
    :data:`i2m2bench.harness.official.OFFICIAL`, ``list official``); each applies to the methods it
    changes (``gin/official/<dataset>.gin`` turns on every switch of a dataset).

    Checked here: ``name`` and each of ``methods`` and the ``sweep`` labels are plain names
    (:func:`check_plain_name`: they name folders); ``methods`` and ``seeds`` are non-empty lists
    without duplicates, seeds whole numbers (``1.0`` or ``0.5`` are refused, not truncated);
    ``levels`` are numbers in (0, 1] (level 0 is the test score itself, see
    :mod:`~i2m2bench.harness.protocols`); ``dataset_options`` and each sweep entry are dicts with
    no NaN/Inf. :func:`read_suite` then checks ``reference`` against ``methods``.
    """

    name: str = gin.REQUIRED
    dataset: str = gin.REQUIRED
    methods: tuple = gin.REQUIRED
    dataset_options: Mapping = field(default_factory=dict)
    #: dataset options for the embedded data only (the smoke suites' small sizes): defaults under
    #: ``dataset_options`` when the data are embedded, left out (with a note) on real data
    embedded_options: Mapping = field(default_factory=dict)
    seeds: tuple = (0, 1, 2)
    protocols: tuple = ("test", "shift:*")
    sweep: Mapping | None = None
    layout: str = "standard"
    levels: tuple = DEFAULT_LEVELS
    reference: str = "late_fusion"
    boards: str = "one"
    official: tuple = ()

    def __post_init__(self) -> None:
        check_board_name(check_plain_name(self.name, "suite name", "suite.name"))
        if self.boards not in ("one", "per_setting"):
            raise SettingError("suite.boards", f"suite.boards must be 'one' (every sweep setting on "
                               f"one board) or 'per_setting'; got {self.boards!r}")  # names the board and run folders
        if not isinstance(self.dataset, str) or not self.dataset:
            raise SettingError("suite.dataset", f"suite.dataset must be a dataset name; got "
                               f"{self.dataset!r}")
        methods = check_sequence("suite.methods", self.methods, "method names")
        for m in methods:  # each names a run folder
            check_plain_name(m, "method name", "suite.methods")
        check_no_duplicates("suite.methods", methods)
        seeds = check_sequence("suite.seeds", self.seeds, "whole numbers")
        for s in seeds:
            if not is_whole_number(s):
                raise SettingError("suite.seeds", f"suite.seeds must be whole numbers, not a "
                                   f"{kind_name(s)} such as {s!r} (never rounded); got {list(seeds)!r}")
        if (bad := out_of_range_seed(seeds)) is not None:
            raise SettingError("suite.seeds", f"suite.seeds: seed {bad} is outside [0, 2**32) (NumPy "
                               f"seeds with 32 bits: a larger seed would repeat a smaller one); "
                               f"got {list(seeds)!r}")
        check_no_duplicates("suite.seeds", seeds)
        protocols = check_sequence("suite.protocols", self.protocols, "protocol names", empty_ok=True)
        if not all(isinstance(p, str) for p in protocols):
            raise SettingError("suite.protocols", f"suite.protocols must be a list of protocol "
                               f"names; got {list(protocols)!r}")
        levels = check_sequence("suite.levels", self.levels, "levels in (0, 1]")
        for v in levels:
            check_real("suite.levels", v, low=0.0, high=1.0, low_open=True,
                  rng="in (0, 1] (level 0 is the test score itself)")
        check_no_duplicates("suite.levels", levels)
        for name in ("layout", "reference"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingError(f"suite.{name}", f"suite.{name} must be a name; got "
                                   f"{getattr(self, name)!r}")
        sweep = self.sweep
        if sweep is not None and (not isinstance(sweep, Mapping) or not sweep
                                  or not all(isinstance(v, Mapping) for v in sweep.values())):
            raise SettingError("suite.sweep", f"suite.sweep must map setting labels to dicts of "
                               f"dataset options; got {sweep!r}")
        for label in sweep or {}:  # labels become folder names under --out
            check_plain_name(label, "setting label", "suite.sweep")
        if not isinstance(self.dataset_options, Mapping):
            raise SettingError("suite.dataset_options", f"suite.dataset_options must be a dict of "
                               f"dataset options; got {self.dataset_options!r}")
        check_finite("suite.dataset_options", self.dataset_options)
        if not isinstance(self.embedded_options, Mapping):
            raise SettingError("suite.embedded_options", f"suite.embedded_options must be a dict "
                               f"of dataset options; got {self.embedded_options!r}")
        check_finite("suite.embedded_options", self.embedded_options)
        for label, options in (sweep or {}).items():
            check_finite("suite.sweep", options, f"[{label!r}]")
        set_ = object.__setattr__
        set_(self, "methods", methods)
        set_(self, "seeds", tuple(int(s) for s in seeds))
        set_(self, "protocols", protocols)
        set_(self, "levels", tuple(float(v) for v in levels))
        set_(self, "official", check_sequence("suite.official", self.official,
                                              "official-behaviour switch names", empty_ok=True))
        set_(self, "dataset_options", dict(self.dataset_options))
        set_(self, "embedded_options", dict(self.embedded_options))
        set_(self, "sweep", {k: dict(v) for k, v in sweep.items()} if sweep else None)

    def settings(self) -> dict[str | None, dict]:
        """Setting label -> dataset options (one unlabelled setting when there is no sweep)."""
        if not self.sweep:
            return {None: dict(self.dataset_options)}
        return {label: {**self.dataset_options, **o} for label, o in self.sweep.items()}


def _located(exc: SettingError, scope: str | None = None, prefix: str = "") -> SettingError:
    """``exc`` as one line: its message, the binding as written and where it was set."""
    from i2m2bench.harness.ginfiles import binding_location

    found = binding_location(exc.binding, scope)
    where = f"; set at {found[1]}: {found[0]}" if found else ""
    return SettingError(exc.binding, f"{prefix}{exc.message}{where}")


def _message(exc: Exception) -> str:
    """An exception's own message, without the context gin appends to it."""
    return getattr(exc, "message", None) or str(exc).split("\n  In call to configurable")[0]


def _curve_protocols(protocols) -> list[str]:
    return [p for p in protocols or () if str(p).startswith(CURVE_PROTOCOLS)]


def _check_reference(suite: SuiteConfig) -> None:
    """``suite.reference`` must name a method of ``suite.methods`` when the user set it, or when
    it is the default and the suite's protocols draw curves (whose effective robustness compares
    with it). A reference inherited from an installed suite that the user's file includes and
    keeps only some methods of is allowed: the board's ER column then reads "—" until the
    reference's rows are in the results file. ``--methods`` may leave the reference out (its rows
    may come from an earlier run)."""
    from i2m2bench.harness.ginfiles import binding_location

    if suite.reference in suite.methods:
        return
    mine = binding_location("suite.reference", user_only=True)
    anywhere = binding_location("suite.reference")
    curves = _curve_protocols(suite.protocols)
    if mine is None and (anywhere is not None or not curves):
        return
    close = difflib.get_close_matches(suite.reference, list(suite.methods), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if mine is not None:
        why = f"set at {mine[1]}: {mine[0]}"
    else:
        why = (f"suite.reference = {suite.reference!r} (the default), and suite.protocols "
               f"{curves} draw curves whose effective robustness is measured against it")
    raise SettingError("suite.reference", f"suite.reference {suite.reference!r} names no method "
                       f"of suite.methods {list(suite.methods)}{hint}: {why}; set "
                       "suite.reference to one of them")


def read_suite() -> SuiteConfig:
    """The parsed suite (gin must have been parsed), with every method's settings checked too
    (:func:`read_method`), so that a bad setting is refused before any data is loaded; a refused
    setting names its binding and the file and line that set it."""
    from i2m2bench.harness.ginfiles import explicit_train_settings

    try:
        suite = SuiteConfig()
    except SettingError as exc:
        raise _located(exc) from exc
    except ConfigError as exc:
        raise ConfigError(_message(exc)) from exc
    except Exception as exc:
        raise ConfigError(f"suite definition: {type(exc).__name__}: {exc}") from exc
    _check_reference(suite)
    for name in suite.methods:
        read_method(name, embedded=False, explicit=explicit_train_settings(name))
    return suite


def read_method(name: str, embedded: bool, explicit: set[str] | frozenset = frozenset()
                ) -> tuple[MethodConfig, TrainConfig]:
    """Method ``name``'s settings under its gin scope, with the embedded schedule applied except
    to the ``train.*`` settings in ``explicit`` (given on the command line:
    :func:`i2m2bench.harness.ginfiles.explicit_train_settings`). The schedule is checked even when
    the data are not embedded. A refused setting names the binding as gin resolved it
    (``<name>/train.lr`` or ``train.lr``) and the file and line that set it."""
    prefix = f"method {name!r}: "
    with gin.config_scope(name):
        try:
            method = MethodConfig()
            train = TrainConfig()
            schedule = EmbeddedSchedule()
        except SettingError as exc:
            raise _located(exc, name, prefix) from exc
        except ConfigError as exc:
            raise ConfigError(prefix + _message(exc)) from exc
        except Exception as exc:
            msg = _message(exc)
            hint = (f" (bind it as {name}/method.fusion = '...' in the gin file)"
                    if "Required bindings" in msg and "fusion" in msg else "")
            raise ConfigError(f"{prefix}{type(exc).__name__}: {msg}{hint}") from exc
    try:
        scheduled = schedule.apply(train, name, keep=explicit)
    except SettingError as exc:
        raise _located(exc, name, prefix) from exc
    if embedded and schedule.options:
        method = replace(method, options={**dict(method.options), **dict(schedule.options)})
    return method, (scheduled if embedded else train)
