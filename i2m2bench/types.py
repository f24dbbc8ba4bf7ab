"""The shared contracts: what a task is, what a batch is, what a fusion strategy returns.

Modalities are addressed by name everywhere. A split comes in two kinds behind one interface
(:class:`DataSplit`): in memory (:class:`Split`, whole tensors in the compact dtype they are stored
in, uint8 for AV-MNIST-style data) and on disk (:class:`i2m2bench.data.common.disk.DiskSplit`,
``.npy`` files read in place, streamed by a DataLoader in index batches). Either way a batch is
normalised when it is drawn, by one function (:func:`model_input`: ``ModalitySpec.scale``,
``offset``, per-channel ``mean``/``std``; token ids stay int64), so the hot loop never collates
per-sample Python objects, and the loop never knows which kind it iterates.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping

import torch

ProblemType = Literal["multiclass", "multilabel", "soft-score"]
ExpertLogits = dict[str, torch.Tensor]  # expert name -> logits (B, C)


ModalityKind = Literal["image", "spectrogram", "vector", "sequence", "volume", "timeseries", "tokens",
                       "image_pair"]

#: Every modality kind, and what its per-sample ``shape`` is:
#: image (C, H, W); spectrogram (C, F, T); vector (D,) — or precomputed features of any shape;
#: sequence (T, d); volume (C, D, H, W); timeseries (T, F); tokens (T,) integer ids, padded with
#: ``pad_id``; image_pair (2, C, H, W) — two images per sample (NLVR2).
MODALITY_KINDS: tuple[str, ...] = ("image", "spectrogram", "vector", "sequence", "volume",
                                   "timeseries", "tokens", "image_pair")

#: The per-sample rank each newer kind requires (the older kinds are not checked: loaders in the
#: wild use them loosely, e.g. ``vector`` for precomputed (K, d) features).
KIND_SHAPES: dict[str, str] = {"volume": "(C, D, H, W)", "timeseries": "(T, F)", "tokens": "(T,)",
                               "image_pair": "(2, C, H, W)"}

#: The per-sample axis that holds channels (what ``ModalitySpec.mean`` / ``std`` are given per):
#: the first for images, spectrograms and volumes, the channel axis of each image of a pair,
#: the feature axis (last) for vectors, sequences and time series (MIMIC's per-feature z-score).
CHANNEL_AXIS: dict[str, int] = {"image": 0, "spectrogram": 0, "volume": 0, "image_pair": 1,
                                "vector": -1, "sequence": -1, "timeseries": -1}


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality: ``shape`` is per sample (no batch dim), ``kind`` (one of
    :data:`MODALITY_KINDS`) says what the axes mean and guides encoders and perturbations.

    Normalisation (:func:`model_input`, applied when a batch is drawn, in this order): stored
    values × ``scale``, + ``offset``, then per channel (``mean``, ``std``: one value per channel
    — the axis :data:`CHANNEL_AXIS` names — or a single value for all) ``(x − mean) / std``.
    Every step is skipped at its default, so a spec with defaults gives exactly ``x.float()``.
    E.g. uint8 pixels: ``scale=1/255``; MR phase in [−π, π] to [0, 1]: ``scale=1/(2π),
    offset=0.5`` (or to [−1, 1]: ``std=(π,)``); per-feature z-scores: ``mean=..., std=...``.

    ``tokens`` modalities hold integer ids (stored in any integer dtype, handed to the model as
    int64, never scaled): ``pad_id`` pads them (the padding mask is ``x != pad_id``; a missing
    modality is imputed with it) and ``vocab_size`` (ids in [0, vocab_size)) sizes the text
    encoders' embeddings. ``encoder_options``: options for the modality's own ``encoder`` (used
    only when that encoder is built, e.g. ``{"inner": "lenet"}`` for ``pair``); options a
    strategy passes (``width``) win.
    """

    name: str
    shape: tuple[int, ...]
    kind: ModalityKind
    encoder: str = "mlp"  # default encoder registry name for this modality
    scale: float = 1.0  # multiply stored values by this to get model inputs (1/255 for uint8)
    offset: float = 0.0  # then add this
    mean: tuple[float, ...] | None = None  # then subtract this per channel (CHANNEL_AXIS)
    std: tuple[float, ...] | None = None  # then divide by this per channel
    pad_id: int = 0  # tokens: the padding id
    vocab_size: int | None = None  # tokens: ids lie in [0, vocab_size)
    encoder_options: tuple[tuple[str, object], ...] = ()  # options for ``encoder`` (a dict is accepted)
    #: a derived input: features computed from these modalities (the joint feature of a frozen
    #: vision-language backbone); absent whenever one of them is (:func:`derive_presence`),
    #: never removed by a protocol on its own, and no intra-modality expert of its own
    derived_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"modality {self.name!r}"
        set_ = lambda f, v: object.__setattr__(self, f, v)  # noqa: E731 (frozen dataclass)
        set_("shape", tuple(int(s) for s in self.shape))
        set_("derived_from", tuple(self.derived_from))
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"{where}: unknown kind {self.kind!r}; expected one of "
                             f"{', '.join(MODALITY_KINDS)}")
        want = KIND_SHAPES.get(self.kind)
        rank = None if want is None else len(want.strip("()").rstrip(",").split(","))
        if rank is not None and len(self.shape) != rank or (
                self.kind == "image_pair" and self.shape[:1] != (2,)):
            raise ValueError(f"{where}: a {self.kind} modality has per-sample shape {want}; got "
                             f"{self.shape}")
        if isinstance(self.encoder_options, Mapping):
            set_("encoder_options", tuple(sorted(self.encoder_options.items())))
        for field_ in ("mean", "std"):
            v = getattr(self, field_)
            if v is None:
                continue
            if self.kind == "tokens":
                break
            v = (float(v),) if isinstance(v, (int, float)) else tuple(float(t) for t in v)
            set_(field_, v)
            channels = self.shape[CHANNEL_AXIS[self.kind]] if self.shape else 1
            if len(v) not in (1, channels):
                raise ValueError(
                    f"{where}: {field_} has {len(v)} values; expected one per channel ({channels}: "
                    f"axis {CHANNEL_AXIS[self.kind]} of {self.kind} shape {self.shape}) or a single "
                    "value for all")
            if field_ == "std" and any(not s > 0 for s in v):
                raise ValueError(f"{where}: std must be > 0 for every channel; got {v}")
        if self.kind == "tokens":
            if (self.scale, self.offset, self.mean, self.std) != (1.0, 0.0, None, None):
                raise ValueError(f"{where}: a tokens modality holds integer ids and is never "
                                 "normalised; leave scale, offset, mean and std at their defaults")
            if self.vocab_size is not None and not 0 <= self.pad_id < self.vocab_size:
                raise ValueError(f"{where}: pad_id {self.pad_id} is not an id of its vocabulary "
                                 f"[0, {self.vocab_size})")

    @property
    def options(self) -> dict:
        """``encoder_options`` as a dict."""
        return dict(self.encoder_options)


def _per_channel(values: tuple[float, ...], spec: ModalitySpec, dim: int, batched: bool,
                 like: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor that broadcasts over ``spec``'s channel axis of a (B, *shape)
    (``batched``) or (*shape) tensor of ``dim`` dimensions."""
    t = torch.tensor(values, dtype=like.dtype, device=like.device)
    if len(values) == 1:
        return t.view(*([1] * dim)) if dim else t.view(())
    axis = CHANNEL_AXIS[spec.kind] % len(spec.shape) + int(batched)
    shape = [1] * dim
    shape[axis] = len(values)
    return t.view(shape)


def model_input(x: torch.Tensor, spec: ModalitySpec, *, inplace: bool = False) -> torch.Tensor:
    """The model input of a batch ``x`` (B, *shape) of stored values of ``spec``: float32,
    × ``scale``, + ``offset``, then ``(x − mean) / std`` per channel — each step only where it
    is not at its default, so defaults give exactly ``x.float()`` (and ``scale`` alone exactly
    ``x.float().mul_(scale)``). Tokens come back as int64 ids, untouched.

    ``inplace``: ``x`` is a fresh gathered batch the caller owns, so a float32 ``x`` may be
    normalised in place (what :meth:`Split.batch` and ``DiskSplit`` do); else ``x`` is never
    modified. Both :class:`Split` and ``DiskSplit`` call this, so they give bit-identical
    batches."""
    if spec.kind == "tokens":
        if torch.is_floating_point(x) or x.dtype == torch.bool:
            raise ValueError(f"modality {spec.name!r} holds tokens and must be stored as integer "
                             f"ids; got {x.dtype}")
        return x if x.dtype == torch.int64 else x.long()
    y = x.float()
    if not inplace and y is x and (spec.scale != 1.0 or spec.offset != 0.0
                                   or spec.mean is not None or spec.std is not None):
        y = y.clone()
    if spec.scale != 1.0:
        y = y.mul_(spec.scale)
    if spec.offset != 0.0:
        y = y.add_(spec.offset)
    if spec.mean is not None:
        y = y.sub_(_per_channel(spec.mean, spec, y.dim(), True, y))
    if spec.std is not None:
        y = y.div_(_per_channel(spec.std, spec, y.dim(), True, y))
    return y


def model_input_mean(stored_mean: torch.Tensor | None, spec: ModalitySpec,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """The mean model input (float32, per-sample shape) given the mean stored value
    ``stored_mean`` (float64, per-sample shape): :func:`model_input`'s affine steps applied in
    float64 (with defaults exactly ``(stored_mean * scale).float()``). For tokens, the value a
    missing sample is imputed with: ``pad_id`` everywhere (int64; ``stored_mean`` unused, may be
    None), never an average of ids."""
    if spec.kind == "tokens":
        dev = device if device is not None else (None if stored_mean is None else stored_mean.device)
        return torch.full(spec.shape, spec.pad_id, dtype=torch.int64, device=dev)
    m = stored_mean * spec.scale
    if spec.offset != 0.0:
        m = m + spec.offset
    if spec.mean is not None:
        m = m - _per_channel(spec.mean, spec, m.dim(), False, m)
    if spec.std is not None:
        m = m / _per_channel(spec.std, spec, m.dim(), False, m)
    return m.float()


def padding_mask(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """Bool (B, T): the real (non-padding) tokens of a tokens batch ``x`` (B, T)."""
    return x != spec.pad_id


@dataclass(frozen=True)
class TaskSpec:
    """What a task is. ``problem``: ``multiclass`` (one of ``num_classes`` classes), ``multilabel``
    (``num_classes`` = L independent binary labels) or ``soft-score`` (a target score in [0, 1]
    per class, as VQA's answers). ``metric`` is the primary metric (checkpoint selection by
    default, robustness tables) and ``metrics`` the others the task declares; every one is a name
    in ``i2m2bench.metrics.METRICS`` (or ``<metric>/<label>``), and boards show them all.
    ``higher_is_better`` comes from the primary metric's registry entry; the field is kept for
    old callers (None: the metric's direction; when set, it must agree)."""

    name: str
    version: str
    modalities: tuple[ModalitySpec, ...]
    problem: ProblemType
    num_classes: int
    labels: tuple[str, ...] = ()
    metric: str = "accuracy"
    higher_is_better: bool | None = None
    source: Literal["real", "embedded", "synthetic"] = "real"  # synthetic: generated, no real counterpart
    description: str = ""
    metrics: tuple[str, ...] = ()  # declared metrics besides ``metric``
    #: The complex image two modalities are read from, when they are (FastMRI):
    #: ``("polar", magnitude, phase)`` -- model inputs ``|z|`` (any scale) and ``angle(z)`` in
    #: radians -- or ``("cartesian", real, imag)``; what ``perturb:complex:<kind>`` corrupts
    #: before splitting it again (:mod:`i2m2bench.perturbations`). ``()``: none.
    complex_image: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [m.name for m in self.modalities]
        if self.complex_image:
            form, *pair = self.complex_image
            if form not in ("polar", "cartesian") or len(pair) != 2 or any(
                    n not in names for n in pair):
                raise ValueError(f"task {self.name!r}: complex_image must be ('polar' or "
                                 "'cartesian', modality, modality) naming two of its modalities "
                                 f"({', '.join(names)}); got {self.complex_image}")
        sources = {m.name for m in self.modalities if not m.derived_from}
        for m in self.modalities:
            bad = [d for d in m.derived_from if d not in sources]
            if bad:
                raise ValueError(f"task {self.name!r}: modality {m.name!r} is derived from "
                                 f"{', '.join(map(repr, bad))}, which is no (underived) modality "
                                 f"of the task ({', '.join(names)})")

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def source_modalities(self) -> tuple[str, ...]:
        """The modalities that are inputs of their own (not derived from others): what the
        missing-modality protocols remove and what intra-modality experts are built for."""
        return tuple(m.name for m in self.modalities if not m.derived_from)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(
            f"task {self.name!r} has no modality {name!r}; its modalities are "
            f"{', '.join(self.modality_names)}"
        )


def derive_presence(spec: TaskSpec, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``present`` (source modality -> bool (B,)) completed with every derived modality: present
    where all the modalities it is derived from are."""
    out = dict(present)
    for m in spec.modalities:
        if m.derived_from:
            mask = out[m.derived_from[0]]
            for d in m.derived_from[1:]:
                mask = mask & out[d]
            out[m.name] = mask
    return out


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # modality -> float model input (B, *shape); int64 ids for tokens
    target: torch.Tensor  # (B,) int64 multiclass; (B, L) 0/1 multilabel; (B, C) in [0, 1] soft-score
    present: dict[str, torch.Tensor] | None = None  # modality -> bool (B,); None = all present

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def availability(self, modality: str) -> torch.Tensor:
        """Bool (B,) mask of samples where ``modality`` is present."""
        if self.present is None or modality not in self.present:
            return torch.ones(len(self), dtype=torch.bool, device=self.target.device)
        return self.present[modality]


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [start, stop) of a batch of ``n`` that data-parallel rank ``rank`` of ``world``
    trains on: contiguous, sizes differing by at most one (the first ``n % world`` ranks take one
    more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard_rows(index, shard: tuple[int, int] | None):
    """Rank ``shard[0]``'s part of one batch's row ``index`` (a tensor or array) under
    :func:`shard_bounds`; ``index`` itself for ``shard=None``. A rank whose part is empty (a last
    batch with fewer rows than ranks) gets the batch's first row as a stand-in, which the
    training loop weighs 0, so that every rank takes every step."""
    if shard is None:
        return index
    start, stop = shard_bounds(len(index), *shard)
    return index[start:stop] if stop > start else index[:1]


class DataSplit(ABC):
    """What the harness needs of a split, whatever holds its data.

    ``target`` (N, ...) lives in memory on the split's device (metrics need it without reading
    inputs); inputs are read only as batches: :meth:`batch` (any rows) and :meth:`batches` (a
    whole pass in index batches, the hot loop). Batches hold float model inputs on the split's
    device, normalised exactly as :meth:`Split.batch` does, so both kinds give bit-identical
    batches for the same rows.
    """

    name: str
    target: torch.Tensor
    groups: torch.Tensor | None = None  # (N,) int64 sample groups (NLVR2's consistency); None: none

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def device(self) -> torch.device:
        return self.target.device

    @abstractmethod
    def to(self, device: torch.device | str) -> "DataSplit":
        """The same split with batches (and ``target``) on ``device``."""

    @abstractmethod
    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Rows ``index`` (int64, any device) as one normalised batch."""

    @abstractmethod
    def batches(self, spec: TaskSpec, batch_size: int, order: torch.Tensor | None = None,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """One pass: batches of ``batch_size`` consecutive entries of ``order`` (a CPU int64
        tensor of row indices; None: rows 0..N-1 in turn), in that order; the last may be
        shorter. ``shard=(rank, world)``: of each such batch only the rows that data-parallel
        rank ``rank`` of ``world`` trains on (:func:`shard_rows`)."""

    @abstractmethod
    def mean(self, modality: str) -> torch.Tensor:
        """Mean stored value of ``modality`` per input position (float64, on the split's device;
        before ``ModalitySpec.scale``), summed in float64 without a float copy of the data."""

    def input_mean(self, spec: ModalitySpec) -> torch.Tensor:
        """The mean model input of modality ``spec`` per input position (float32; what a missing
        sample is imputed with under ``impute_with='mean'``): :func:`model_input_mean` of
        :meth:`mean`. For tokens: ``pad_id`` everywhere (int64), and no data are read."""
        if spec.kind == "tokens":
            return model_input_mean(None, spec, self.device)
        return model_input_mean(self.mean(spec.name), spec)


@dataclass
class Split(DataSplit):
    """A whole split in memory: ``inputs[m]`` is (N, *shape) in its stored dtype."""

    inputs: dict[str, torch.Tensor]
    target: torch.Tensor
    name: str = ""
    groups: torch.Tensor | None = None  # (N,) sample groups, kept on the CPU (metrics only)

    def __post_init__(self) -> None:
        n = int(self.target.shape[0])
        for m, x in self.inputs.items():
            if int(x.shape[0]) != n:
                raise ValueError(
                    f"split {self.name!r}: modality {m!r} has {x.shape[0]} samples but there are "
                    f"{n} targets"
                )
        if self.groups is not None and tuple(self.groups.shape) != (n,):
            raise ValueError(f"split {self.name!r}: groups have shape {tuple(self.groups.shape)}; "
                             f"expected ({n},), one group id per sample")

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split({m: x.to(device) for m, x in self.inputs.items()}, self.target.to(device),
                     self.name, self.groups)

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Gather rows ``index`` and normalise them to model inputs (:func:`model_input`)."""
        inputs = {}
        for m in spec.modalities:
            inputs[m.name] = model_input(self.inputs[m.name].index_select(0, index), m, inplace=True)
        return Batch(inputs, self.target.index_select(0, index))

    def batches(self, spec: TaskSpec, batch_size: int, order: torch.Tensor | None = None,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """Gathered where the inputs live (the split's device; host memory for a
        :class:`HostSplit`), one ``index_select`` per modality (no DataLoader)."""
        device = next(iter(self.inputs.values())).device if self.inputs else self.target.device
        if order is None and shard is None:
            n = len(self)
            for start in range(0, n, batch_size):
                yield self.batch(torch.arange(start, min(start + batch_size, n), device=device), spec)
            return
        order = (torch.arange(len(self)) if order is None else order).to(device)
        for start in range(0, int(order.shape[0]), batch_size):
            yield self.batch(shard_rows(order[start:start + batch_size], shard), spec)

    def mean(self, modality: str) -> torch.Tensor:
        return self.inputs[modality].sum(0, dtype=torch.float64) / len(self)


class HostSplit(Split):
    """An in-memory split too large for the GPU: inputs stay in host memory (pinned when CUDA is
    present, so that copies overlap compute), each batch is gathered there and copied to
    ``device``; ``target`` (what metrics read) lives on ``device``. Batches are bit-identical to
    those of the same split held on ``device`` (the same :func:`model_input`, applied after the
    copy). Made by :func:`place_split`."""

    def __init__(self, split: Split, device: torch.device | str) -> None:
        pin = torch.cuda.is_available() and torch.device(device).type == "cuda"
        inputs = {m: x.cpu().pin_memory() if pin else x.cpu() for m, x in split.inputs.items()}
        super().__init__(inputs, split.target.to(device), split.name, split.groups)

    def to(self, device: torch.device | str) -> "Split":
        return place_split(Split(self.inputs, self.target, self.name, self.groups), device)

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        dev = self.target.device
        host = index.detach().to("cpu", torch.int64)
        inputs = {}
        for m in spec.modalities:
            rows = self.inputs[m.name].index_select(0, host)
            if rows.device.type == "cpu" and dev.type == "cuda":
                rows = rows.pin_memory()
            inputs[m.name] = model_input(rows.to(dev, non_blocking=True), m, inplace=True)
        return Batch(inputs, self.target.index_select(0, index.to(dev)))

    def mean(self, modality: str) -> torch.Tensor:
        return super().mean(modality).to(self.target.device)


#: The share of the GPU's free memory that an in-memory split may take on the GPU; a larger one
#: stays in (pinned) host memory and streams (:class:`HostSplit`).
GPU_SPLIT_SHARE = 0.5


def place_split(split: DataSplit, device: torch.device | str, free_bytes: int | None = None) -> DataSplit:
    """``split`` on ``device``: an in-memory split whose inputs take more than
    :data:`GPU_SPLIT_SHARE` of the GPU's free memory (``free_bytes``; default
    ``torch.cuda.mem_get_info``) stays in host memory and streams (:class:`HostSplit`); any
    other split moves (:meth:`DataSplit.to`; an on-disk split streams anyway)."""
    device = torch.device(device)
    if device.type != "cuda" or type(split) is not Split:
        return split.to(device)
    need = sum(x.numel() * x.element_size() for x in split.inputs.values())
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return split.to(device) if need <= GPU_SPLIT_SHARE * free_bytes else HostSplit(split, device)


@dataclass
class Task:
    """What a dataset builder returns: the spec, the standard splits and named shift test sets."""

    spec: TaskSpec
    splits: Mapping[str, DataSplit]  # "train", "val", "test"
    shifts: Mapping[str, DataSplit] = field(default_factory=dict)  # name -> distribution-shift test set
    options: dict = field(default_factory=dict)  # the resolved builder options (for provenance)
