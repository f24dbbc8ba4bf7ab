"""The ``reference`` PoE backend: the paper's formula, kept verbatim for comparison.

Official I2M2 code (Madaan et al., 2024): ``num = sum_k log_softmax(z_k)``;
``out = num - logsumexp(num)``; then cross-entropy on ``out``. K+2 passes over memory forward and
as many backward. Weights multiply each expert's log-probabilities; masked experts contribute 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def select_present(t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``t`` where ``keep`` (one flag per row) is True, zero elsewhere (``t`` itself without a
    mask); a missing expert's rows may hold NaN, which never reaches the sum."""
    if keep is None:
        return t
    return torch.where(keep.unsqueeze(1), t, torch.zeros((), dtype=t.dtype, device=t.device))


def log_softmax(zs: list[torch.Tensor], weights: torch.Tensor | None,
                mask: torch.Tensor | None) -> torch.Tensor:
    num = 0
    for k, z in enumerate(zs):
        keep = None if mask is None else mask[:, k]
        term = F.log_softmax(select_present(z, keep), dim=-1)  # a missing expert's logits may be NaN
        if weights is not None:
            term = term * weights[k].to(term.dtype)
        num = num + select_present(term, keep)
    return num - torch.logsumexp(num, dim=-1, keepdim=True)


def nll(zs, target, weights, mask, reduction):
    return F.nll_loss(log_softmax(zs, weights, mask), target, reduction=reduction)


def bernoulli_logits(zs, weights, mask):
    total = 0
    for k, z in enumerate(zs):
        term = z if weights is None else z * weights[k].to(z.dtype)
        total = total + select_present(term, None if mask is None else mask[:, k])
    return total


def bce(zs, target, weights, mask, reduction):
    z = bernoulli_logits(zs, weights, mask)
    return F.binary_cross_entropy_with_logits(z, target.to(z.dtype), reduction=reduction)
