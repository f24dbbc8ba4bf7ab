"""Product of experts (PoE): the combination rule of I2M2 and intra-only models.

For K softmax experts with logits z_k (B, C), weights w_k and availability mask m (B, K):

    log p(y | x) = log_softmax( sum_k m_bk * w_k * log_softmax(z_k) )_y

(Madaan et al., NeurIPS 2024, "Jointly Modeling Inter- & Intra-Modality Dependencies for
Multi-modal Learning", Sec. 3; w_k = 1 in the paper). Since log_softmax(z_k) = z_k - lse(z_k) and
the row constant lse(z_k) cancels in the outer log_softmax, this equals
``log_softmax(sum_k m_bk * w_k * z_k)`` exactly — the identity every fast backend uses.
Bernoulli (sigmoid) experts combine by summing logits: logit p = sum_k m_bk * w_k * z_k.

Public API (names are stable): :func:`poe_log_softmax`, :func:`poe_nll`,
:func:`poe_bernoulli_logits`, :func:`poe_bce`. ``logits`` is a (K, B, C) tensor or a sequence of
K (B, C) tensors; ``weights`` a (K,) tensor; ``mask`` a bool (B, K) tensor, True where expert k
is available for sample b. A row with no available expert is an error naming the rows.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

Logits = Union[torch.Tensor, Sequence[torch.Tensor]]

BACKENDS = ("reference", "torch")


def _as_list(logits: Logits) -> list[torch.Tensor]:
    if isinstance(logits, torch.Tensor):
        if logits.dim() != 3:
            raise ValueError(f"stacked expert logits must be (K, B, C); got shape {tuple(logits.shape)}")
        return list(logits.unbind(0))
    out = list(logits)
    if not out:
        raise ValueError("poe needs at least one expert; got an empty sequence of logits")
    shape = out[0].shape
    for k, z in enumerate(out):
        if z.dim() != 2 or z.shape != shape:
            raise ValueError(
                f"expert {k} logits have shape {tuple(z.shape)}; every expert must be (B, C) = "
                f"{tuple(shape)}"
            )
    return out


def _check(zs: list[torch.Tensor], weights: torch.Tensor | None, mask: torch.Tensor | None):
    k = len(zs)
    b = zs[0].shape[0]
    if weights is not None and tuple(weights.shape) != (k,):
        raise ValueError(f"weights must have shape (K,) = ({k},); got {tuple(weights.shape)}")
    if mask is not None:
        if tuple(mask.shape) != (b, k) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape (B, K) = ({b}, {k}); got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        empty = (~mask.any(dim=1)).nonzero().flatten()
        if empty.numel():
            rows = empty[:10].tolist()
            more = f" (and {empty.numel() - 10} more)" if empty.numel() > 10 else ""
            raise ValueError(
                f"poe: rows {rows}{more} have no available expert (mask all False); "
                "at least one expert must be present per sample"
            )


def _coef(k: int, weights, mask, like: torch.Tensor) -> list[torch.Tensor | float | None]:
    """Per-expert multiplier: None (1), a float, or a (B, 1) tensor; masked rows get 0."""
    out: list = []
    for i in range(k):
        w = None if weights is None else weights[i].to(like.dtype)
        if mask is not None:
            m = mask[:, i].to(like.dtype).unsqueeze(1)
            out.append(m if w is None else m * w)
        else:
            out.append(w)
    return out


def _weighted(z: torch.Tensor, c, mask_col: torch.Tensor | None) -> torch.Tensor:
    if mask_col is not None:  # masked experts may hold garbage (even NaN): select, never multiply
        z = torch.where(mask_col.unsqueeze(1), z, torch.zeros((), dtype=z.dtype, device=z.device))
    return z if c is None else z * c


# ---------------------------------------------------------------------------- reference
def _reference_log_softmax(zs, weights, mask):
    """The paper's formula, kept verbatim: num = sum_k log_softmax(z_k); out = num - lse(num)."""
    coefs = _coef(len(zs), weights, mask, zs[0])
    num = 0
    for i, z in enumerate(zs):
        term = _weighted(F.log_softmax(z, dim=-1), coefs[i], None if mask is None else mask[:, i])
        num = num + term
    return num - torch.logsumexp(num, dim=-1, keepdim=True)


# -------------------------------------------------------------------------------- torch
def _summed_logits(zs, weights, mask):
    coefs = _coef(len(zs), weights, mask, zs[0])
    total = None
    for i, z in enumerate(zs):
        term = _weighted(z, coefs[i], None if mask is None else mask[:, i])
        total = term if total is None else total + term
    return total


def _torch_log_softmax(zs, weights, mask):
    return F.log_softmax(_summed_logits(zs, weights, mask), dim=-1)


def _pick(backend: str) -> str:
    if backend == "auto":
        return "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown poe backend {backend!r}; expected 'auto' or one of {BACKENDS}")
    return backend


def poe_log_softmax(logits: Logits, weights: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Normalised log-probabilities (B, C) of the product of K softmax experts."""
    zs = _as_list(logits)
    _check(zs, weights, mask)
    if _pick(backend) == "reference":
        return _reference_log_softmax(zs, weights, mask)
    return _torch_log_softmax(zs, weights, mask)


def poe_nll(logits: Logits, target: torch.Tensor, weights: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, reduction: str = "mean",
            backend: str = "auto") -> torch.Tensor:
    """Negative log-likelihood of ``target`` (B,) under the product of experts."""
    zs = _as_list(logits)
    _check(zs, weights, mask)
    if _pick(backend) == "reference":
        return F.nll_loss(_reference_log_softmax(zs, weights, mask), target, reduction=reduction)
    return F.cross_entropy(_summed_logits(zs, weights, mask), target, reduction=reduction)


def poe_bernoulli_logits(logits: Logits, weights: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Logits (B, C) of the product of K independent-Bernoulli (sigmoid) experts."""
    zs = _as_list(logits)
    _check(zs, weights, mask)
    _pick(backend)
    return _summed_logits(zs, weights, mask)


def poe_bce(logits: Logits, target: torch.Tensor, weights: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, reduction: str = "mean",
            backend: str = "auto") -> torch.Tensor:
    """Binary cross-entropy (soft targets in [0, 1] allowed) of the Bernoulli product."""
    z = poe_bernoulli_logits(logits, weights, mask, backend)
    return F.binary_cross_entropy_with_logits(z, target.to(z.dtype), reduction=reduction)


__all__ = ["poe_log_softmax", "poe_nll", "poe_bernoulli_logits", "poe_bce", "BACKENDS"]
