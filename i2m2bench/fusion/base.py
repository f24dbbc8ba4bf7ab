"""The fusion-strategy contract.

A strategy is one ``nn.Module`` built from the ``TaskSpec`` and its options. Its ``forward``
returns named expert logits — ``{"image": z, "audio": z, "inter": z}`` for I2M2, one entry for
inter-only models — and it declares how they are combined (``combine``: ``"poe"`` or
``"single"``) and how a missing modality is treated (``missing``). The harness only calls
:meth:`Fusion.log_probs` / :meth:`Fusion.loss`; it never branches on a strategy's name.

Per problem type (``TaskSpec.problem``) the experts are combined and trained as follows:

* ``multiclass`` — softmax experts, categorical PoE (``poe_log_softmax``), negative
  log-likelihood (``poe_nll``);
* ``multilabel`` — one sigmoid expert per label, Bernoulli PoE per label: logit p = sum_k w_k z_k
  (``poe_bernoulli_logits``; the official FastMRI code's per-head two-way softmax product is
  the same), binary cross-entropy (``poe_bce``); with class weights (``train.class_weights``,
  set by the harness as :attr:`Fusion.class_weights`, (L, 2)), per label the weighted mean
  sum_i w[l, y_il] bce_il / sum_i w[l, y_il], summed over labels -- what the official FastMRI
  code computes with one ``nn.CrossEntropyLoss(weight=...)`` per two-way head
  (``divyam3897/I2M2`` @ 7742765, ``fastMRI/module.py`` L64-68, L178-183);
* ``soft-score`` — softmax experts, categorical PoE as for multiclass, trained against per-class
  target scores with one of two losses (``train.loss``, see :data:`LOSSES`): ``bce`` (default) —
  per-answer binary cross-entropy × C of the combined scores, as the official VQA code of I2M2
  does (``divyam3897/I2M2``, ``vqa_nlvr/fiber/modules/objectives.py``: BCE-with-logits × C on the
  normalised log-probabilities of the product for I2M2 and intra-only, on the raw logits for a
  single expert); ``soft_ce`` — soft-target cross-entropy of the PoE distribution,
  -sum_c t_c log p_c per sample (targets used as given, not renormalised).
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from i2m2bench.poe import poe_bce, poe_bernoulli_logits, poe_log_softmax, poe_nll
from i2m2bench.registry import Registry
from i2m2bench.types import Batch, ExpertLogits, TaskSpec

#: The losses each problem type can be trained with (``train.loss``); the first is ``'auto'``.
LOSSES: dict[str, tuple[str, ...]] = {"multiclass": ("nll",), "multilabel": ("bce",),
                                      "soft-score": ("bce", "soft_ce")}


def resolve_loss(kind: str, problem: str) -> str:
    """The loss ``kind`` (``'auto'`` = the problem type's default) for ``problem``; a kind that
    does not apply raises ``ValueError`` naming the ones that do."""
    kinds = LOSSES.get(problem)
    if kinds is None:
        raise ValueError(f"unknown problem type {problem!r}; expected one of {sorted(LOSSES)}")
    if kind == "auto":
        return kinds[0]
    if kind not in kinds:
        raise ValueError(f"loss {kind!r} does not apply to {problem} tasks; choose 'auto' "
                         f"(= {kinds[0]!r}) or one of {list(kinds)}")
    return kind


class Fusion(nn.Module):
    combine: ClassVar[Literal["poe", "single"]] = "single"
    family: ClassVar[str] = "other"  # leaderboard grouping: unimodal | intra | inter | i2m2 | other
    missing: str = "impute"  # how absent modalities are handled: "impute" inputs or "drop" experts
    loss_kind: str = "auto"  # the training loss (train.loss, set by the harness): see LOSSES
    #: multilabel: (L, 2) weight of class 0 / 1 per label in the loss (train.class_weights, set
    #: by the harness); None: unweighted
    class_weights: torch.Tensor | None = None

    def __init__(self, spec: TaskSpec, impute_with: Literal["zeros", "mean"] = "zeros") -> None:
        super().__init__()
        if impute_with not in ("zeros", "mean"):
            raise ValueError(f"impute_with must be 'zeros' or 'mean'; got {impute_with!r}")
        self.spec = spec
        self.poe_backend = "auto"
        self.impute_with = impute_with
        for m in spec.modalities:  # training-set mean input per modality (set by the harness)
            self.register_buffer(f"_mean_{m.name}", torch.zeros(m.shape), persistent=True)

    @classmethod
    def example_options(cls, spec: TaskSpec) -> dict:
        """Options that build a small instance for ``spec`` (used by the contract checks)."""
        return {}

    # -- to implement -------------------------------------------------------------------
    def forward(self, batch: Batch) -> ExpertLogits:  # pragma: no cover - abstract
        raise NotImplementedError

    def expert_modalities(self) -> dict[str, tuple[str, ...]]:
        """Expert name -> the modalities it reads (drives the availability mask)."""
        raise NotImplementedError

    def experts(self) -> dict[str, nn.Module]:
        """Named experts that can be pretrained alone (``pretrain_then_finetune``)."""
        return {}

    # -- provided -------------------------------------------------------------------------
    def set_input_means(self, means: dict[str, torch.Tensor]) -> None:
        """Record the training mean of each modality (used when ``impute_with='mean'``)."""
        for module in self.modules():  # this strategy and any strategies nested in it
            if isinstance(module, Fusion):
                for name, mean in means.items():
                    getattr(module, f"_mean_{name}").copy_(mean)

    def imputed(self, batch: Batch, modality: str) -> torch.Tensor:
        """The inputs of ``modality`` with absent samples replaced by zeros or the training mean."""
        x = batch.inputs[modality]
        if batch.present is None or modality not in batch.present:
            return x
        if self.impute_with == "mean":
            fill = getattr(self, f"_mean_{modality}")
        else:  # zeros; token ids are "imputed" with padding, whatever its id
            m = self.spec.modality(modality)
            fill = m.pad_id if m.kind == "tokens" else 0.0
        return impute(x, batch.present[modality], fill)

    def expert_weights(self) -> torch.Tensor | None:
        return None

    def availability_mask(self, logits: ExpertLogits, batch: Batch) -> torch.Tensor | None:
        """Bool (B, K): expert k usable for sample b. Imputing experts are always usable."""
        if batch.present is None or self.combine != "poe":
            return None
        mods = self.expert_modalities()
        cols = []
        for name in logits:
            avail = torch.ones(len(batch), dtype=torch.bool, device=batch.target.device)
            if self.expert_drops(name):
                for m in mods[name]:
                    avail = avail & batch.availability(m)
            cols.append(avail)
        return torch.stack(cols, dim=1)

    def expert_drops(self, name: str) -> bool:
        """Whether expert ``name`` is dropped (rather than fed imputed inputs) when inputs are absent."""
        return self.missing == "drop"

    def log_probs(self, logits: ExpertLogits, batch: Batch) -> torch.Tensor:
        """Combined prediction: log-probabilities (multiclass, soft-score) or Bernoulli logits
        per label (multilabel)."""
        zs = list(logits.values())
        bernoulli = self.spec.problem == "multilabel"
        if self.combine == "single":
            if len(zs) != 1:
                raise ValueError(f"{type(self).__name__} declares combine='single' but returned "
                                 f"{len(zs)} experts: {list(logits)}")
            return zs[0] if bernoulli else F.log_softmax(zs[0], dim=-1)
        mask = self.availability_mask(logits, batch)
        if bernoulli:
            return poe_bernoulli_logits(zs, self.expert_weights(), mask, backend=self.poe_backend)
        return poe_log_softmax(zs, self.expert_weights(), mask, backend=self.poe_backend)

    def loss(self, logits: ExpertLogits, batch: Batch, kind: str | None = None) -> torch.Tensor:
        """Training loss on the combined output only (as in the paper). ``kind``: one of
        :data:`LOSSES` for the task's problem type, or ``'auto'``; None: ``self.loss_kind``
        (``train.loss``, set by the harness)."""
        kind = resolve_loss(self.loss_kind if kind is None else kind, self.spec.problem)
        zs = list(logits.values())
        mask = self.availability_mask(logits, batch)
        if kind == "nll":
            return poe_nll(zs, batch.target, self.expert_weights(), mask, backend=self.poe_backend)
        if self.spec.problem == "multilabel":
            if self.class_weights is None:
                return poe_bce(zs, batch.target, self.expert_weights(), mask, backend=self.poe_backend)
            per = poe_bce(zs, batch.target, self.expert_weights(), mask, reduction="none",
                          backend=self.poe_backend)  # (B, L)
            w = self.class_weights.to(per.dtype)
            t = batch.target.to(per.dtype)
            sample_w = w[:, 0] * (1 - t) + w[:, 1] * t  # (B, L): the weight of each target's class
            return ((sample_w * per).sum(0) / sample_w.sum(0)).sum()
        lp = self.log_probs(logits, batch)  # (B, C) log-probabilities of the categorical product
        target = batch.target.to(lp.dtype)  # (B, C) scores in [0, 1]
        if kind == "soft_ce":
            return -(target * lp).sum(1).mean()
        # bce, as the official VQA code: C x mean BCE-with-logits of the combined scores (the
        # product's log-probabilities; a single expert's raw logits)
        scores = zs[0] if self.combine == "single" else lp
        return F.binary_cross_entropy_with_logits(scores, target) * target.shape[1]


FUSIONS: Registry[type[Fusion]] = Registry("fusion", Fusion)


class ContractError(ValueError):
    """A strategy's outputs break the fusion contract; the message says which rule and how."""


def output_problems(model: Fusion, logits, batch: Batch) -> list[str]:
    """What is wrong with ``logits = model(batch)`` under the contract (empty list: nothing)."""
    if not isinstance(logits, dict) or not logits:
        return [f"forward must return a non-empty dict of expert logits; got {type(logits).__name__}"]
    problems = []
    want = (len(batch), model.spec.num_classes)
    for k, z in logits.items():
        if not isinstance(z, torch.Tensor):
            problems.append(f"expert {k!r} is a {type(z).__name__}, not a tensor")
        elif tuple(z.shape) != want:
            problems.append(f"expert {k!r} logits have shape {tuple(z.shape)}, expected {want} "
                            "(batch, classes)")
        elif not torch.is_floating_point(z) or not bool(torch.isfinite(z).all()):
            problems.append(f"expert {k!r} logits are not finite floats")
    if model.combine not in ("poe", "single"):
        problems.append(f"combine must be 'poe' or 'single'; got {model.combine!r}")
    elif model.combine == "single" and len(logits) != 1:
        problems.append(f"combine='single' but forward returned {len(logits)} experts {list(logits)}")
    try:
        mods = model.expert_modalities()
    except NotImplementedError:
        return problems + ["expert_modalities() is not implemented"]
    if set(mods) != set(logits):
        problems.append(f"expert_modalities() names {sorted(mods)} but forward returned "
                        f"{sorted(logits)}")
    for k, ms in mods.items():
        unknown = set(ms) - set(model.spec.modality_names)
        if unknown:
            problems.append(f"expert {k!r} reads unknown modalities {sorted(unknown)}")
    return problems


def registered_name(model: Fusion) -> str | None:
    """The name under which ``model``'s class is registered in ``FUSIONS`` (None if it is not)."""
    return next((n for n in FUSIONS.names() if FUSIONS.get(n) is type(model)), None)


def check_outputs(name: str, model: Fusion, batch: Batch) -> None:
    """Run ``model`` on ``batch`` and raise :class:`ContractError` naming the strategy, the
    module that registered it and every broken rule. Strategies nested inside ``model`` (I2M2's
    inter expert, possibly a plugin's) are checked first, each under its own name and class, so
    the error blames the strategy that broke the contract."""
    for sub in model.modules():
        if sub is not model and isinstance(sub, Fusion):
            check_outputs(registered_name(sub) or type(sub).__qualname__, sub, batch)
    where = f"fusion {name!r} ({FUSIONS.origin(name) if name in FUSIONS else type(model).__qualname__})"
    try:
        with torch.no_grad():
            logits = model(batch)
    except Exception as exc:
        raise ContractError(f"{where}: forward failed on a batch of {len(batch)} samples of task "
                            f"{model.spec.name!r}: {type(exc).__name__}: {exc}") from exc
    problems = output_problems(model, logits, batch)
    if problems:
        raise ContractError(f"{where} breaks the fusion contract: " + "; ".join(problems))


def build_fusion(name: str, spec: TaskSpec, **options) -> Fusion:
    cls = FUSIONS.get(name)
    try:
        return cls(spec, **options)
    except TypeError as exc:
        raise TypeError(f"fusion {name!r} options {options}: {exc}") from exc


def impute(x: torch.Tensor, present: torch.Tensor | None, fill: torch.Tensor | float = 0.0):
    """Replace the rows of ``x`` (B, ...) whose ``present`` (B,) is False by ``fill``."""
    if present is None or bool(present.all()):
        return x
    keep = present.view(-1, *([1] * (x.dim() - 1)))
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return torch.where(keep, x, fill_t)
