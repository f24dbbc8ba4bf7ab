"""The ``triton`` PoE backend: one kernel computes the loss and its gradient (CUDA).

One program per row, accumulating in float32 (float64 for float64 inputs). Pass 1 streams the K expert logits over the classes in blocks, forms the
weighted sum s = sum_k m_bk w_k z_k and keeps an online max / sum-of-exp (the online softmax of
Milakov & Gimelshein, 2018) plus s[target]. Pass 2 re-reads the row and writes
(softmax(s) - onehot) * scale into the single gradient buffer (or log_softmax(s) for the
forward-only kernel). The class count C is a compile-time constant (one compilation per head
size; it also keeps the loops clear of runtime scalars, which the interpreter cannot index
under NumPy >= 2.4). Up to ``MAX_EXPERTS`` experts are passed as separate pointers, so K heads'
outputs are never stacked (no copy). Runs on CPU under ``TRITON_INTERPRET=1`` for testing.
"""
from __future__ import annotations

import os

import torch

from i2m2bench.poe.fused import FusedLogSoftmax, FusedNLL, needs_graph, save_loss_and_grad

MAX_EXPERTS = 8

try:  # triton is optional: absent on CPU-only installs of torch
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any import problem means "not available"
    triton = None


def available(device: torch.device) -> bool:
    """Whether the kernel can run on ``device`` (CUDA, or any device under the interpreter)."""
    if triton is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return device.type == "cpu"
    return device.type == "cuda"


if triton is not None:

    @triton.jit
    def _wsum(z0, z1, z2, z3, z4, z5, z6, z7, w_ptr, m_ptr, row, stride, cols, valid,
              K: tl.constexpr, HAS_MASK: tl.constexpr, ACC: tl.constexpr):
        """Weighted, masked sum of the K experts' logits at (row, cols), in ACC precision."""
        s = tl.zeros(cols.shape, dtype=ACC)
        for k in tl.static_range(K):
            if k == 0:
                ptr = z0
            elif k == 1:
                ptr = z1
            elif k == 2:
                ptr = z2
            elif k == 3:
                ptr = z3
            elif k == 4:
                ptr = z4
            elif k == 5:
                ptr = z5
            elif k == 6:
                ptr = z6
            else:
                ptr = z7
            w = tl.load(w_ptr + k)
            z = tl.load(ptr + row * stride + cols, mask=valid, other=0.0).to(ACC)
            if HAS_MASK:  # select, never multiply: a missing expert's logits may be NaN
                present = tl.load(m_ptr + row * K + k) != 0
                z = tl.where(present, z, 0.0)
            s += w * z
        return s

    @triton.jit
    def _poe_kernel(z0, z1, z2, z3, z4, z5, z6, z7, w_ptr, m_ptr, t_ptr, out_ptr, loss_ptr,
                    stride, out_stride, scale, C: tl.constexpr,
                    K: tl.constexpr, HAS_MASK: tl.constexpr, MODE: tl.constexpr,
                    BLOCK: tl.constexpr, ACC: tl.constexpr):
        """MODE 0: out = (softmax(s) - onehot(t)) * scale, loss = lse - s_t. MODE 1: out = log_softmax(s)."""
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK)
        if MODE == 0:
            t = tl.load(t_ptr + row)
        m = tl.full((), float("-inf"), ACC)
        d = tl.zeros((), dtype=ACC)
        st = tl.zeros((), dtype=ACC)
        for c0 in range(0, C, BLOCK):
            cols = c0 + offs
            valid = cols < C
            s = _wsum(z0, z1, z2, z3, z4, z5, z6, z7, w_ptr, m_ptr, row, stride, cols, valid,
                      K, HAS_MASK, ACC)
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            d = d * tl.exp(m - m_safe) + tl.sum(tl.exp(s - m_safe), 0)
            m = m_new
            if MODE == 0:
                st += tl.sum(tl.where(cols == t, s, 0.0), 0)
        m = tl.where(m == float("-inf"), 0.0, m)
        lse = m + tl.log(d)
        if MODE == 0:
            tl.store(loss_ptr + row, lse - st)
        for c0 in range(0, C, BLOCK):
            cols = c0 + offs
            valid = cols < C
            s = _wsum(z0, z1, z2, z3, z4, z5, z6, z7, w_ptr, m_ptr, row, stride, cols, valid,
                      K, HAS_MASK, ACC)
            if MODE == 0:
                g = (tl.exp(s - lse) - tl.where(cols == t, 1.0, 0.0)) * scale
            else:
                g = s - lse
            tl.store(out_ptr + row * out_stride + cols, g.to(out_ptr.dtype.element_ty), mask=valid)


def _launch(zs, coefs, mask, target, mode: int, scale: float, out_dtype: torch.dtype | None = None):
    """Run the kernel. ``out`` is in the accumulation dtype unless ``out_dtype`` names another
    (the kernel casts on store: a forward-only call writes half inputs' output directly, with no
    float32 intermediate and no conversion pass). MODE 1 computes no loss: none is allocated."""
    k = len(zs)
    if k > MAX_EXPERTS:
        raise ValueError(f"triton poe backend supports at most {MAX_EXPERTS} experts; got {k}")
    zs = [z.contiguous() for z in zs]
    b, c = zs[0].shape
    dev = zs[0].device
    acc = torch.float64 if zs[0].dtype == torch.float64 else torch.float32
    out = torch.empty((b, c), dtype=out_dtype or acc, device=dev)
    w = torch.tensor(coefs, dtype=acc, device=dev)
    loss = torch.empty(b, dtype=acc, device=dev) if mode == 0 else None
    m = mask.to(torch.int8).contiguous() if mask is not None else w  # dummy pointer when unused
    t = target.contiguous() if target is not None else w  # dummy pointer when unused
    ptrs = zs + [zs[0]] * (MAX_EXPERTS - k)
    block = min(triton.next_power_of_2(c), 4096)
    _poe_kernel[(b,)](*ptrs, w, m, t, out, w if loss is None else loss, zs[0].stride(0),
                      out.stride(0), scale, C=c, K=k, HAS_MASK=mask is not None, MODE=mode,
                      BLOCK=block, ACC=tl.float64 if acc == torch.float64 else tl.float32,
                      num_warps=8 if block >= 2048 else 4)
    return out, loss


class TritonNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target, coefs, mask, reduction, *zs):
        b = zs[0].shape[0]
        scale = 1.0 / b if reduction == "mean" else 1.0
        grad, loss = _launch(list(zs), coefs, mask, target, 0, scale)
        return save_loss_and_grad(ctx, loss, grad, coefs, mask, reduction, zs[0].dtype)

    @staticmethod
    def backward(ctx, go):
        return FusedNLL.backward(ctx, go)


def log_softmax(coefs, mask, zs):
    """The triton ``poe_log_softmax``: without autograd (evaluation) the kernel writes the output
    in the input dtype and nothing is saved; with it, the float32 output is kept for backward."""
    if needs_graph(zs):
        return TritonLogSoftmax.apply(coefs, mask, *zs)
    out, _ = _launch(list(zs), coefs, mask, None, 1, 1.0, out_dtype=zs[0].dtype)
    return out


class TritonLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coefs, mask, *zs):
        out, _ = _launch(list(zs), coefs, mask, None, 1, 1.0)
        ctx.coefs, ctx.in_dtype = coefs, zs[0].dtype
        ctx.save_for_backward(out, mask)
        return out if out.dtype == zs[0].dtype else out.to(zs[0].dtype)

    @staticmethod
    def backward(ctx, g):
        return FusedLogSoftmax.backward(ctx, g)
