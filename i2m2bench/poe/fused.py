"""The ``fused`` PoE backend: custom autograd functions built from row-chunked torch ops.

Using log_softmax(sum_k w_k log_softmax(z_k)) = log_softmax(sum_k w_k z_k), each function makes one
pass over the K expert logits, a chunk of rows at a time, so every intermediate of a chunk stays
in cache: the weighted sum, its max, exp and normaliser. ``poe_nll``/``poe_bce`` compute the
gradient in that same pass (softmax - onehot, or sigmoid - target, already scaled by the
reduction) into one (B, C) buffer, which backward hands to every expert whose coefficient is 1 —
no per-expert intermediate is materialised. Forward+backward thus reads the logits once and
writes one B x C buffer; the paper's formula needs K+2 passes each way.

Accumulation is in float32 for half/bfloat16 inputs. Weights are constants (no gradient).
The sum of logits must stay finite: |sum_k w_k z_k| below the dtype's maximum.
"""
from __future__ import annotations

import torch

# Rows per chunk: about CHUNK_ELEMS elements, so a chunk's intermediates fit in L2.
CHUNK_ELEMS = 1 << 16


def _rows_per_chunk(c: int) -> int:
    return max(1, CHUNK_ELEMS // max(c, 1))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _accumulate(out: torch.Tensor, zs: list[torch.Tensor], coefs: list[float],
                mask: torch.Tensor | None) -> None:
    """out = sum_k coefs[k] * mask[:, k] * zs[k] for one chunk (masked entries never read)."""
    for k, z in enumerate(zs):
        if mask is not None:  # select, never multiply: a missing expert may hold NaN
            z = torch.where(mask[:, k:k + 1], z, torch.zeros((), dtype=z.dtype, device=z.device))
        if k == 0:
            if coefs[0] == 1.0:
                out.copy_(z)
            else:
                torch.mul(z, coefs[0], out=out)
        else:
            out.add_(z, alpha=coefs[k])


def _expert_grads(g: torch.Tensor, coefs: list[float], mask: torch.Tensor | None,
                  needs: tuple[bool, ...], dtype: torch.dtype) -> list[torch.Tensor | None]:
    """d/dz_k = coefs[k] * mask[:, k] * g; experts with coefficient 1 and no mask share ``g``."""
    g = g if g.dtype == dtype else g.to(dtype)
    out = []
    for k, c in enumerate(coefs):
        if not needs[k]:
            out.append(None)
        elif mask is None:
            out.append(g if c == 1.0 else g * c)
        else:
            out.append(torch.where(mask[:, k:k + 1], g * c if c != 1.0 else g,
                                   torch.zeros((), dtype=g.dtype, device=g.device)))
    return out


def _row_lse(s: torch.Tensor, e: torch.Tensor | None = None):
    """(max, exp(s - max) written into e, sum) of a chunk; rows that are all -inf stay finite."""
    m = s.amax(1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=m.dtype, device=m.device))
    e = torch.sub(s, m, out=e) if e is not None else s - m
    e.exp_()
    return m, e, e.sum(1, keepdim=True)


def _scaled(grad: torch.Tensor, go: torch.Tensor, per_row: bool) -> torch.Tensor:
    """grad * go; a plain ``loss.backward()`` (go == 1) needs no pass and no new buffer.

    Never in place: the saved buffer must survive a second backward (``retain_graph=True``).
    """
    if per_row:
        return grad * go.to(grad.dtype).unsqueeze(1)
    if go.item() == 1.0:
        return grad
    return grad * go.to(grad.dtype)


class FusedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target, coefs, mask, reduction, *zs):
        b, c = zs[0].shape
        acc = _acc_dtype(zs[0].dtype)
        grad = torch.empty((b, c), dtype=acc, device=zs[0].device)  # the one (B, C) buffer
        loss = torch.empty(b, dtype=acc, device=zs[0].device)
        scale = 1.0 / b if reduction == "mean" else 1.0
        step = _rows_per_chunk(c)
        work = torch.empty((min(step, b), c), dtype=acc, device=zs[0].device)
        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            s = grad[r0:r1]  # (R, C) weighted sum of logits, then the gradient
            _accumulate(s, [z[r0:r1] for z in zs], coefs, None if mask is None else mask[r0:r1])
            t = target[r0:r1].unsqueeze(1)  # (R, 1)
            m, e, tot = _row_lse(s, work[: r1 - r0])
            loss[r0:r1] = (m + tot.log() - s.gather(1, t)).squeeze(1)
            torch.div(e, tot.div_(scale), out=s)  # softmax * scale
            s.scatter_add_(1, t, torch.full_like(t, -scale, dtype=acc))  # - onehot * scale
        ctx.coefs, ctx.reduction, ctx.in_dtype = coefs, reduction, zs[0].dtype
        ctx.save_for_backward(grad, mask)
        out = loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
        return out.to(zs[0].dtype)

    @staticmethod
    def backward(ctx, go):
        grad, mask = ctx.saved_tensors
        grad = _scaled(grad, go, ctx.reduction == "none")
        grads = _expert_grads(grad, ctx.coefs, mask, ctx.needs_input_grad[4:], ctx.in_dtype)
        return (None, None, None, None, *grads)


class FusedLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coefs, mask, *zs):
        b, c = zs[0].shape
        acc = _acc_dtype(zs[0].dtype)
        out = torch.empty((b, c), dtype=acc, device=zs[0].device)
        step = _rows_per_chunk(c)
        work = torch.empty((min(step, b), c), dtype=acc, device=zs[0].device)
        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            s = out[r0:r1]
            _accumulate(s, [z[r0:r1] for z in zs], coefs, None if mask is None else mask[r0:r1])
            m, _, tot = _row_lse(s, work[: r1 - r0])
            s.sub_(m + tot.log())
        ctx.coefs, ctx.in_dtype = coefs, zs[0].dtype
        ctx.save_for_backward(out, mask)
        return out if out.dtype == zs[0].dtype else out.to(zs[0].dtype)

    @staticmethod
    def backward(ctx, g):
        out, mask = ctx.saved_tensors
        b, c = out.shape
        gs = torch.empty_like(out)  # d loss / d (sum of logits)
        step = _rows_per_chunk(c)
        g = g.to(out.dtype)
        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            h = gs[r0:r1]
            torch.exp(out[r0:r1], out=h)
            h.mul_(g[r0:r1].sum(1, keepdim=True))
            torch.sub(g[r0:r1], h, out=h)
        grads = _expert_grads(gs, ctx.coefs, mask, ctx.needs_input_grad[2:], ctx.in_dtype)
        return (None, None, *grads)


class FusedBCE(torch.autograd.Function):
    """Binary cross-entropy of the Bernoulli product (soft targets allowed)."""

    @staticmethod
    def forward(ctx, target, coefs, mask, reduction, *zs):
        if reduction not in ("mean", "sum"):
            raise ValueError("the fused poe_bce supports reduction 'mean' or 'sum'")
        b, c = zs[0].shape
        acc = _acc_dtype(zs[0].dtype)
        grad = torch.empty((b, c), dtype=acc, device=zs[0].device)
        loss = torch.empty(b, dtype=acc, device=zs[0].device)
        scale = 1.0 / (b * c) if reduction == "mean" else 1.0
        step = _rows_per_chunk(c)
        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            s = grad[r0:r1]
            _accumulate(s, [z[r0:r1] for z in zs], coefs, None if mask is None else mask[r0:r1])
            y = target[r0:r1].to(acc)
            # max(s, 0) - s*y + log1p(exp(-|s|)), the stable BCE-with-logits
            loss[r0:r1] = (s.clamp(min=0) - s * y + torch.log1p(torch.exp(-s.abs()))).sum(1)
            s.sigmoid_().sub_(y).mul_(scale)
        ctx.coefs, ctx.reduction, ctx.in_dtype = coefs, reduction, zs[0].dtype
        ctx.save_for_backward(grad, mask)
        out = loss.sum() * (1.0 / (b * c) if reduction == "mean" else 1.0)
        return out.to(zs[0].dtype)

    @staticmethod
    def backward(ctx, go):
        grad, mask = ctx.saved_tensors
        grad = _scaled(grad, go, False)
        grads = _expert_grads(grad, ctx.coefs, mask, ctx.needs_input_grad[4:], ctx.in_dtype)
        return (None, None, None, None, *grads)
