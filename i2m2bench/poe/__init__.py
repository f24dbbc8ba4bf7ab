"""Product of experts (PoE): the combination rule of I2M2 and intra-only models.

For K softmax experts with logits z_k (B, C), weights w_k and availability mask m (B, K):

    log p(y | x) = log_softmax( sum_k m_bk * w_k * log_softmax(z_k) )_y

(Madaan et al., NeurIPS 2024, "Jointly Modeling Inter- & Intra-Modality Dependencies for
Multi-modal Learning"; w_k = 1 in the paper). Since log_softmax(z_k) = z_k - lse(z_k) and the row
constant lse(z_k) cancels in the outer log_softmax, this equals ``log_softmax(sum_k m_bk w_k z_k)``
exactly — the identity every fast backend uses. Bernoulli (sigmoid) experts combine by summing
logits: logit p = sum_k m_bk w_k z_k.

Public API (names are stable): :func:`poe_log_softmax`, :func:`poe_nll`,
:func:`poe_bernoulli_logits`, :func:`poe_bce`. ``logits`` is a (K, B, C) tensor or a sequence of
K (B, C) tensors; ``weights`` a (K,) tensor of constants; ``mask`` a bool (B, K) tensor, True
where expert k is available for sample b. A row with no available expert is an error naming it.

Backends: ``reference`` (the paper's formula, verbatim), ``torch`` (sum of logits + PyTorch's
kernels), ``fused`` (custom autograd, one pass, see ``fused.py``), ``triton`` (CUDA kernel, see
``triton_backend.py``); ``auto`` picks the fastest correct one for the device, dtype and size
(measured in ``benchmarks/test_poe_throughput.py``, published in ``leaderboards/poe_kernel.md``).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from i2m2bench.poe import fused, reference, torch_backend, triton_backend

Logits = Union[torch.Tensor, Sequence[torch.Tensor]]

BACKENDS = ("reference", "torch", "fused", "triton")

# Below this many logits per expert (B * C) the one-kernel-per-op ``torch`` backend wins on
# CPU: the fused backend's per-chunk dispatch costs more than the memory traffic it saves.
FUSED_MIN_ELEMENTS = 1 << 16


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
            raise ValueError(f"expert {k} logits have shape {tuple(z.shape)}; every expert must be "
                             f"(B, C) = {tuple(shape)}")
    return out


def _check(zs: list[torch.Tensor], weights: torch.Tensor | None, mask: torch.Tensor | None) -> None:
    k, b = len(zs), zs[0].shape[0]
    if weights is not None and tuple(weights.shape) != (k,):
        raise ValueError(f"weights must have shape (K,) = ({k},); got {tuple(weights.shape)}")
    if mask is not None:
        if tuple(mask.shape) != (b, k) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape (B, K) = ({b}, {k}); got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        empty = (~mask.any(dim=1)).nonzero().flatten()
        if empty.numel():
            rows = empty[:10].tolist()
            more = f" (and {empty.numel() - 10} more)" if empty.numel() > 10 else ""
            raise ValueError(f"poe: rows {rows}{more} have no available expert (mask all False); "
                             "at least one expert must be present per sample")


def _prepare(logits: Logits, weights, mask, reduction: str | None = None) -> list[torch.Tensor]:
    zs = _as_list(logits)
    _check(zs, weights, mask)
    if reduction is not None and reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    return zs


def _pick(backend: str, zs: list[torch.Tensor]) -> str:
    if backend == "auto":
        dev = zs[0].device
        if dev.type == "cuda" and len(zs) <= triton_backend.MAX_EXPERTS and triton_backend.available(dev):
            return "triton"
        return "fused" if zs[0].numel() >= FUSED_MIN_ELEMENTS else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown poe backend {backend!r}; expected 'auto' or one of {BACKENDS}")
    if backend == "triton" and not triton_backend.available(zs[0].device):
        raise RuntimeError(f"poe backend 'triton' needs triton and a CUDA device (or "
                           f"TRITON_INTERPRET=1 on CPU); logits are on {zs[0].device}")
    return backend


def _coefs(weights: torch.Tensor | None, k: int) -> list[float]:
    return [1.0] * k if weights is None else [float(w) for w in weights.detach().cpu()]


def poe_log_softmax(logits: Logits, weights: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Normalised log-probabilities (B, C) of the product of K softmax experts."""
    zs = _prepare(logits, weights, mask)
    b = _pick(backend, zs)
    if b == "reference":
        return reference.log_softmax(zs, weights, mask)
    if b == "torch":
        return torch_backend.log_softmax(zs, weights, mask)
    fn = fused.log_softmax if b == "fused" else triton_backend.log_softmax
    return fn(_coefs(weights, len(zs)), mask, zs)


def poe_nll(logits: Logits, target: torch.Tensor, weights: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, reduction: str = "mean",
            backend: str = "auto") -> torch.Tensor:
    """Negative log-likelihood of ``target`` (B,) under the product of experts."""
    zs = _prepare(logits, weights, mask, reduction)
    b = _pick(backend, zs)
    if b == "reference":
        return reference.nll(zs, target, weights, mask, reduction)
    if b == "torch":
        return torch_backend.nll(zs, target, weights, mask, reduction)
    fn = fused.FusedNLL if b == "fused" else triton_backend.TritonNLL
    return fn.apply(target, _coefs(weights, len(zs)), mask, reduction, *zs)


def poe_bernoulli_logits(logits: Logits, weights: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Logits (B, C) of the product of K independent-Bernoulli (sigmoid) experts.

    A single weighted sum: every backend but ``reference`` computes it the same way.
    """
    zs = _prepare(logits, weights, mask)
    if _pick(backend, zs) == "reference":
        return reference.bernoulli_logits(zs, weights, mask)
    return torch_backend.bernoulli_logits(zs, weights, mask)


def poe_bce(logits: Logits, target: torch.Tensor, weights: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, reduction: str = "mean",
            backend: str = "auto") -> torch.Tensor:
    """Binary cross-entropy (soft targets in [0, 1] allowed) of the Bernoulli product.

    ``fused`` and ``triton`` share the fused one-pass loss-and-gradient function (``triton``
    has no dedicated BCE kernel: the element-wise loss is a single pass already).
    """
    zs = _prepare(logits, weights, mask, reduction)
    b = _pick(backend, zs)
    if b == "reference":
        return reference.bce(zs, target, weights, mask, reduction)
    if b == "torch" or reduction == "none":
        return torch_backend.bce(zs, target, weights, mask, reduction)
    return fused.FusedBCE.apply(target, _coefs(weights, len(zs)), mask, reduction, *zs)


__all__ = ["poe_log_softmax", "poe_nll", "poe_bernoulli_logits", "poe_bce", "BACKENDS"]
