"""The ``torch`` PoE backend: the best plain-PyTorch expression.

log_softmax(sum_k w_k log_softmax(z_k)) = log_softmax(sum_k w_k z_k) (the per-expert normalisers
are row constants), so the product is one sum of logits followed by PyTorch's own
``log_softmax`` / ``cross_entropy`` kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from i2m2bench.poe.reference import select_present


def summed_logits(zs: list[torch.Tensor], weights: torch.Tensor | None,
                  mask: torch.Tensor | None) -> torch.Tensor:
    total = None
    for k, z in enumerate(zs):
        term = z if weights is None else z * weights[k].to(z.dtype)
        term = select_present(term, None if mask is None else mask[:, k])
        total = term if total is None else total + term
    return total


def log_softmax(zs, weights, mask):
    return F.log_softmax(summed_logits(zs, weights, mask), dim=-1)


def nll(zs, target, weights, mask, reduction):
    return F.cross_entropy(summed_logits(zs, weights, mask), target, reduction=reduction)


def bernoulli_logits(zs, weights, mask):
    return summed_logits(zs, weights, mask)


def bce(zs, target, weights, mask, reduction):
    z = summed_logits(zs, weights, mask)
    return F.binary_cross_entropy_with_logits(z, target.to(z.dtype), reduction=reduction)
