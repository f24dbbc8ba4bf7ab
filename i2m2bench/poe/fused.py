"""The ``fused`` PoE backend: custom autograd functions built from row-chunked torch ops.

Using log_softmax(sum_k w_k log_softmax(z_k)) = log_softmax(sum_k w_k z_k), each function makes one
pass over the K expert logits, a chunk of rows at a time, so every intermediate of a chunk stays
in cache: the weighted sum and its softmax (one exp per element). ``poe_nll``/``poe_bce`` compute the
gradient in that same pass (softmax - onehot, or sigmoid - target, already scaled by the
reduction) into one (B, C) buffer, which backward hands to every expert whose coefficient is 1 —
no per-expert intermediate is materialised. Forward+backward thus reads the logits once and
writes one B x C buffer; the paper's formula needs K+2 passes each way.

Accumulation is in float32 for half/bfloat16 inputs. Weights are constants (no gradient).
The sum of logits must stay finite: |sum_k w_k z_k| below the dtype's maximum.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time
from contextlib import contextmanager

import torch

# Rows per chunk: about CHUNK_ELEMS elements (4 MiB of float32): per-op dispatch is amortised and
# a chunk's intermediates stay in the last-level cache (measured with an earlier log-softmax
# variant, K=3, B=4096, C=32768 forward+backward, 2 cores: 2^14 -> 1477 ms, 2^16 -> 975 ms,
# 2^18 -> 554 ms, 2^20 -> 473 ms, 2^22 -> 557 ms).
CHUNK_ELEMS = 1 << 20

# (B, C) buffers (gradients, forward-only outputs) are kept for reuse, up to WORKSPACE_SLOTS of them
# and WORKSPACE_MAX_BYTES in all: filling a fresh 0.5 GiB buffer took 100-700 ms of page faults
# here (30-600 ms with transparent huge pages; erratic on this VM), a warm one 10 ms (2 cores) --
# more than the whole forward pass (~100 ms at K=3, B=4096, C=32768). Two slots, because a loop
# ``out = poe_log_softmax(x)`` (or pytest-benchmark's rounds) still holds the previous result
# while the next call runs: the two buffers alternate.
WORKSPACE_MAX_BYTES = 1 << 30
WORKSPACE_SLOTS = 2
# (key, private tensor on the cached storage, that storage's address), oldest first
_workspace: list[tuple[tuple, torch.Tensor, int]] = []
_workspace_lock = threading.Lock()


# On a loaded machine (other processes on the same cores) the chunked pass, hundreds of short
# parallel regions per call, waits at each region's end for a thread the scheduler has put aside:
# measured forward+backward, K=3, B=4096, C=32768, 2 Xeon cores, with four other training jobs: 2,700-
# 5,300 ms on 2 threads, 1,000-1,400 ms on 1 (torch's cross_entropy: 3,000 ms). So a large call
# watches how long its thread waited for a core (the kernel's run delay, /proc/thread-self/
# schedstat): above LOAD_HIGH of its wall time, the next large calls run on one thread, until
# one waits less than LOAD_LOW (quiet again: 0.00 measured; loaded: 0.12-0.7). Only calls of at
# least LOAD_MIN_ELEMS logits per expert, on the CPU, with more than one thread. The thread count
# is torch's process-wide setting: set to 1 for the call and restored after it.
LOAD_HIGH, LOAD_LOW = 0.10, 0.02
LOAD_MIN_ELEMS = 1 << 23
LOAD_MIN_SECONDS = 0.01
_load = {"single": False}


def _run_delay_ns() -> int | None:
    """Nanoseconds this thread has waited on a run queue (None where the kernel does not say)."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            return int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def threads_for_load(z: torch.Tensor):
    """Run the enclosed chunked pass on one thread while the machine is loaded (see above)."""
    threads = torch.get_num_threads()
    d0 = _run_delay_ns() if z.device.type == "cpu" and z.numel() >= LOAD_MIN_ELEMS \
        and threads > 1 else None
    if d0 is None:
        yield
        return
    single = _load["single"]
    t0 = time.perf_counter()
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(threads)
        wall, d1 = time.perf_counter() - t0, _run_delay_ns()
        if d1 is not None and wall >= LOAD_MIN_SECONDS:  # long enough to tell
            waited = (d1 - d0) / 1e9 / wall
            _load["single"] = waited > (LOAD_LOW if single else LOAD_HIGH)


def under_load(fn):
    """Decorate a chunked pass: :func:`threads_for_load` on its first floating (B, C) argument."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args):
        z = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() == 2
                  and a.is_floating_point()), None)
        if z is None:
            return fn(*args)
        with threads_for_load(z):
            return fn(*args)

    return wrapper


def _madvise_huge(t: torch.Tensor) -> None:
    """Ask Linux for transparent huge pages on a large CPU buffer before its first touch."""
    n = t.numel() * t.element_size()
    if t.device.type != "cpu" or n < (32 << 20) or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        start = (t.data_ptr() + (1 << 21) - 1) & ~((1 << 21) - 1)
        end = (t.data_ptr() + n) & ~((1 << 21) - 1)
        if end > start:
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 14)  # MADV_HUGEPAGE
    except (OSError, AttributeError):
        pass


def _unused(storage_address: int) -> bool:
    """Whether only the workspace's private tensor refers to the storage at ``storage_address``.

    Every tensor on a storage (a returned buffer, its views, a leaf's ``.grad`` that took it
    over, a tensor saved for backward, the tensor behind a ``.numpy()`` array) and every Python
    storage object of it holds a reference to it, so a count of 1 means none but the
    workspace's is left. (A tensor's own use count would not do: holding the very tensor object
    adds Python references only.)
    """
    return torch._C._storage_Use_Count(storage_address) == 1


def _buffer(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A (B, C) buffer: a cached one that nothing else references, else a fresh one.

    The workspace keeps a private tensor per cached storage and hands out a new tensor on a
    free storage, so anything still on a cached storage (the caller's result, a view of it)
    pins it: a result is never overwritten while the caller can still see it.
    """
    key = (tuple(shape), dtype, device)
    with _workspace_lock:  # two threads must never both take the same cached buffer
        for k, private, address in reversed(_workspace):  # most recent first: warmest in cache
            if k == key and _unused(address):
                return torch.empty(0, dtype=dtype, device=device).set_(private)
        buf = torch.empty(shape, dtype=dtype, device=device)
        _madvise_huge(buf)
        n = buf.numel() * buf.element_size()
        if device.type == "cpu" and n <= WORKSPACE_MAX_BYTES:
            # free cached storages are of other shapes: drop them (frees their memory); then,
            # while over a limit, the oldest in-use one (its holder keeps it)
            _workspace[:] = [e for e in _workspace if not _unused(e[2])]
            while _workspace and (len(_workspace) >= WORKSPACE_SLOTS or n + sum(
                    e[1].numel() * e[1].element_size() for e in _workspace) > WORKSPACE_MAX_BYTES):
                _workspace.pop(0)
            private = torch.empty(0, dtype=dtype, device=device).set_(buf)
            _workspace.append((key, private, buf.untyped_storage()._cdata))
        return buf


def release_workspace() -> None:
    """Drop the cached buffers (frees their memory once nothing else uses them)."""
    with _workspace_lock:
        _workspace.clear()


def _rows_per_chunk(c: int) -> int:
    return max(1, CHUNK_ELEMS // max(c, 1))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _accumulate(out: torch.Tensor, zs: list[torch.Tensor], coefs: list[float],
                mask: torch.Tensor | None) -> None:
    """out = sum_k coefs[k] * mask[:, k] * zs[k] by selection (masked entries never read, so a
    missing expert may hold NaN): for the few rows :func:`_fix_rows` recomputes."""
    if mask is not None:
        zero = torch.zeros((), dtype=zs[0].dtype, device=zs[0].device)
        zs = [torch.where(mask[:, k:k + 1], z, zero) for k, z in enumerate(zs)]
    _weighted_sum(out, [(z, c) for z, c in zip(zs, coefs)])


def _weighted_sum(out: torch.Tensor, terms: list[tuple[torch.Tensor, float | torch.Tensor]]) -> None:
    """out = sum of z * w over ``terms``; w a float, or an (R, 1) tensor of per-row weights (the
    mask folded in). The first two terms take one pass (add or addcmul) where they can."""
    (z0, w0), rest = terms[0], terms[1:]
    if not rest:
        if isinstance(w0, float) and w0 == 1.0:
            out.copy_(z0)
        else:
            torch.mul(z0, w0, out=out)
        return
    (z1, w1), rest = rest[0], rest[1:]
    if isinstance(w0, float) and w0 == 1.0:
        if isinstance(w1, float):
            torch.add(z0, z1, alpha=w1, out=out)  # one pass for the first two experts
        else:
            torch.addcmul(z0, z1, w1, out=out)
    elif isinstance(w1, float) and w1 == 1.0 and not isinstance(w0, float):
        torch.addcmul(z1, z0, w0, out=out)  # (a + b == b + a exactly)
    else:
        torch.mul(z0, w0, out=out)
        rest = [(z1, w1)] + rest
    for z, w in rest:
        if isinstance(w, float):
            out.add_(z, alpha=w)
        else:
            out.addcmul_(z, w)


ALL, SOME, NONE = "all", "some", "none"


class RowWeights:
    """A mask folded into the weights, for the chunked pass: ``w[b, k] = coefs[k] * mask[b, k]``
    (accumulation dtype), and for each chunk of ``step`` rows whether expert k is present in
    all, some or none of its rows. An expert present in all rows of a chunk is added with its
    scalar weight, one present in some with its per-row weights (``addcmul``: one pass, no
    per-expert selection), one present in none is not read.

    Multiplying instead of selecting would let a missing expert's NaN or inf through
    (0 * NaN = NaN), so a row that comes out NaN is recomputed by selection afterwards
    (:func:`_fix_rows`): any NaN in a row's sum makes the row's whole softmax NaN (its sum of
    exponentials is NaN), so one column tells. Rows of finite logits (the norm) are never
    recomputed; a missing expert's finite logits contribute exact zeros (x + 0 * z == x).
    """

    def __init__(self, mask: torch.Tensor, coefs: list[float], acc: torch.dtype, step: int):
        b, k = mask.shape
        self.mask, self.step = mask, step
        self.w = mask.to(acc) * torch.tensor(coefs, dtype=acc, device=mask.device)
        counts = torch.zeros((b + 1, k), dtype=torch.long, device=mask.device)
        torch.cumsum(mask, 0, out=counts[1:])
        bounds = list(range(0, b, step)) + [b]
        at = counts[bounds].tolist()  # one transfer: present counts at every chunk boundary
        self.kinds = [[ALL if a1 - a0 == r1 - r0 else NONE if a1 == a0 else SOME
                       for a0, a1 in zip(at[i], at[i + 1])]
                      for i, (r0, r1) in enumerate(zip(bounds[:-1], bounds[1:]))]
        self.partial = any(SOME in kinds for kinds in self.kinds)

    def terms(self, zs: list[torch.Tensor], coefs: list[float], r0: int, r1: int) -> list:
        kinds = self.kinds[r0 // self.step]
        return [(z[r0:r1], coefs[k] if kinds[k] == ALL else self.w[r0:r1, k:k + 1])
                for k, z in enumerate(zs) if kinds[k] != NONE]


def _fix_rows(bad: torch.Tensor, zs: list[torch.Tensor], coefs: list[float], mask: torch.Tensor,
              acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, their sums by selection) for the rows flagged in ``bad`` (B,), or None."""
    if not bool(bad.any()):
        return None
    rows = bad.nonzero().squeeze(1)
    s = torch.empty((rows.numel(), zs[0].shape[1]), dtype=acc, device=zs[0].device)
    _accumulate(s, [z[rows] for z in zs], coefs, mask[rows])
    return rows, s


def _expert_grads(g: torch.Tensor, coefs: list[float], mask: torch.Tensor | None,
                  needs: tuple[bool, ...], dtype: torch.dtype) -> list[torch.Tensor | None]:
    """d/dz_k = coefs[k] * mask[:, k] * g. Experts with coefficient 1 present in every row
    share ``g``; the gradients of experts missing in some rows are one (K', B, C) allocation
    filled a chunk of rows at a time (each chunk of ``g`` read once while in cache)."""
    g = g if g.dtype == dtype else g.to(dtype)
    present = mask.sum(0).tolist() if mask is not None else [g.shape[0]] * len(coefs)
    out: list[torch.Tensor | None] = [None] * len(coefs)
    partial = []
    for k, c in enumerate(coefs):
        if not needs[k]:
            continue
        if present[k] == g.shape[0]:
            out[k] = g if c == 1.0 else g * c
        elif present[k] == 0:
            out[k] = torch.zeros_like(g)
        else:
            partial.append(k)
    if partial:
        b, c = g.shape
        gs = torch.empty((len(partial), b, c), dtype=g.dtype, device=g.device)
        _madvise_huge(gs)
        w = mask[:, partial].to(g.dtype) * torch.tensor([coefs[k] for k in partial],
                                                         dtype=g.dtype, device=g.device)
        step = _rows_per_chunk(c)
        with threads_for_load(g):
            for r0 in range(0, b, step):
                r1 = min(r0 + step, b)
                for j in range(len(partial)):
                    torch.mul(g[r0:r1], w[r0:r1, j:j + 1], out=gs[j, r0:r1])
        for j, k in enumerate(partial):
            out[k] = gs[j]
    return out


def _scaled(grad: torch.Tensor, go: torch.Tensor, per_row: bool) -> torch.Tensor:
    """grad * go; a plain ``loss.backward()`` (go == 1) needs no pass and no new buffer.

    Never in place: the saved buffer must survive a second backward (``retain_graph=True``).
    """
    if per_row:
        return grad * go.to(grad.dtype).unsqueeze(1)
    if go.item() == 1.0:
        return grad
    return grad * go.to(grad.dtype)


def save_loss_and_grad(ctx, loss, grad, coefs, mask, reduction, dtype) -> torch.Tensor:
    """Keep the precomputed gradient for backward; reduce the per-row losses."""
    ctx.coefs, ctx.reduction, ctx.in_dtype = coefs, reduction, dtype
    ctx.save_for_backward(grad, mask)
    out = loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
    return out.to(dtype)


def _sum_chunk(out, zs, coefs, rw, r0, r1) -> torch.Tensor:
    """out = the weighted (masked) sum of rows r0:r1; ``rw``: :class:`RowWeights` or None."""
    if rw is None:
        _weighted_sum(out, [(z[r0:r1], c) for z, c in zip(zs, coefs)])
    else:
        _weighted_sum(out, rw.terms(zs, coefs, r0, r1))
    return out


def _row_weights(mask, coefs, acc, c) -> RowWeights | None:
    return None if mask is None else RowWeights(mask, coefs, acc, _rows_per_chunk(c))


class FusedNLL(torch.autograd.Function):
    @staticmethod
    @under_load
    def forward(ctx, target, coefs, mask, reduction, *zs):
        b, c = zs[0].shape
        dev = zs[0].device
        acc = _acc_dtype(zs[0].dtype)
        grad = _buffer((b, c), acc, dev)  # the one (B, C) buffer: becomes d loss / d sum
        pt = torch.empty((b, 1), dtype=acc, device=dev)  # p(target) per row
        scale = 1.0 / b if reduction == "mean" else 1.0
        step = _rows_per_chunk(c)
        onehot = torch.full((min(step, b), 1), -scale, dtype=acc, device=dev)
        t2 = target.unsqueeze(1)  # (B, 1)
        rw = _row_weights(mask, coefs, acc, c)
        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            g = _sum_chunk(grad[r0:r1], zs, coefs, rw, r0, r1)  # (R, C) sum of logits, then
            torch._softmax(g, 1, False, out=g)  # p in place (as in _log_softmax_into): one exp each
            torch.gather(g, 1, t2[r0:r1], out=pt[r0:r1])
            if scale != 1.0:
                g.mul_(scale)
            g.scatter_add_(1, t2[r0:r1], onehot[: r1 - r0])
        fix = _fix_rows(pt.squeeze(1).isnan(), zs, coefs, mask, acc) if rw is not None and \
            rw.partial else None
        if fix is not None:  # a missing expert's NaN/inf came through its zero weight: select
            rows, p = fix
            torch.softmax(p, 1, out=p)
            pt[rows] = p.gather(1, t2[rows])
            p.mul_(scale).scatter_add_(1, t2[rows], onehot[:1].expand(rows.numel(), 1))
            grad[rows] = p
        # the losses once for all rows, not per chunk (measured, K=3, B=4096, C=32768, 2 cores:
        # the per-chunk log/check ops cost 9 ms of 116)
        loss = pt.log().neg_().squeeze(1)
        tiny = (pt < 1e-30).squeeze(1)  # p_t underflowed: -log p_t = lse - s_t exactly
        if bool(tiny.any()):
            rows = tiny.nonzero().squeeze(1)
            s = torch.empty((rows.numel(), c), dtype=acc, device=dev)
            _accumulate(s, [z[rows] for z in zs], coefs, None if mask is None else mask[rows])
            loss[rows] = torch.logsumexp(s, 1) - s.gather(1, t2[rows]).squeeze(1)
        return save_loss_and_grad(ctx, loss, grad, coefs, mask, reduction, zs[0].dtype)

    @staticmethod
    def backward(ctx, go):
        grad, mask = ctx.saved_tensors
        grad = _scaled(grad, go, ctx.reduction == "none")
        grads = _expert_grads(grad, ctx.coefs, mask, ctx.needs_input_grad[4:], ctx.in_dtype)
        return (None, None, None, None, *grads)


@under_load
def _log_softmax_into(out: torch.Tensor, zs: list[torch.Tensor], coefs: list[float],
                      mask: torch.Tensor | None) -> torch.Tensor:
    """out = log_softmax(sum_k coefs[k] mask[:, k] zs[k]), a chunk of rows at a time.

    PyTorch's ``_log_softmax`` makes one exp per element (a max pass, a sum-of-exp pass, then
    s - max - log(sum)); softmax followed by ``log_`` adds a log pass (the whole forward, K=3,
    B=4096, C=32768, 2 cores, warm output: 98 ms with ``_log_softmax``, 151 ms with softmax then
    ``log_``, 127 ms with ``s - logsumexp(s)``).
    Each chunk's sum is formed in ``out`` itself and normalised in place (the kernel reads every
    element before it writes it; the tests compare with the paper's formula): no separate work
    buffer to keep in cache (about 90 ms -> 85 ms in the setting above). ``out`` may be of a lower
    precision than the accumulation: each chunk is then formed in the accumulation dtype and
    cast while it is still in cache.
    """
    b, c = zs[0].shape
    acc = _acc_dtype(zs[0].dtype)
    step = _rows_per_chunk(c)
    work = torch.empty((min(step, b), c), dtype=acc, device=out.device) if out.dtype != acc else None
    rw = _row_weights(mask, coefs, acc, c)
    for r0 in range(0, b, step):
        r1 = min(r0 + step, b)
        s = _sum_chunk(out[r0:r1] if work is None else work[: r1 - r0], zs, coefs, rw, r0, r1)
        torch._log_softmax(s, 1, False, out=s)  # in place (see the docstring)
        if work is not None:
            out[r0:r1].copy_(s)
    fix = _fix_rows(out[:, 0].isnan(), zs, coefs, mask, acc) if rw is not None and rw.partial \
        else None
    if fix is not None:  # a missing expert's NaN/inf came through its zero weight: select
        rows, s = fix
        out[rows] = torch.log_softmax(s, 1).to(out.dtype)
    return out


def needs_graph(zs: list[torch.Tensor]) -> bool:
    """Whether autograd will record this call (grad mode on and some input requires grad)."""
    return torch.is_grad_enabled() and any(z.requires_grad for z in zs)


def log_softmax(coefs: list[float], mask: torch.Tensor | None, zs: list[torch.Tensor]) -> torch.Tensor:
    """The fused ``poe_log_softmax``: without autograd (evaluation), nothing is saved and the
    output, in the input dtype, comes from the workspace (a (4096, 32768) float32 output is
    0.5 GiB: fresh, its page faults cost more than the whole computation on a warm one)."""
    if needs_graph(zs):
        return FusedLogSoftmax.apply(coefs, mask, *zs)
    out = _buffer(tuple(zs[0].shape), zs[0].dtype, zs[0].device)
    return _log_softmax_into(out, zs, coefs, mask)


class FusedLogSoftmax(torch.autograd.Function):
    """``poe_log_softmax`` with autograd: the output, in the accumulation dtype, is saved."""

    @staticmethod
    def forward(ctx, coefs, mask, *zs):
        out = _buffer(tuple(zs[0].shape), _acc_dtype(zs[0].dtype), zs[0].device)
        _log_softmax_into(out, list(zs), coefs, mask)
        ctx.coefs, ctx.in_dtype = coefs, zs[0].dtype
        ctx.save_for_backward(out, mask)
        return out if out.dtype == zs[0].dtype else out.to(zs[0].dtype)

    @staticmethod
    @under_load
    def backward(ctx, g):
        out, mask = ctx.saved_tensors
        b, c = out.shape
        gs = _buffer((b, c), out.dtype, out.device)  # d loss / d (sum of logits)
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
    @under_load
    def forward(ctx, target, coefs, mask, reduction, *zs):
        if reduction not in ("mean", "sum"):
            raise ValueError("the fused poe_bce supports reduction 'mean' or 'sum'")
        b, c = zs[0].shape
        acc = _acc_dtype(zs[0].dtype)
        grad = _buffer((b, c), acc, zs[0].device)
        loss = torch.empty(b, dtype=acc, device=zs[0].device)
        scale = 1.0 / (b * c) if reduction == "mean" else 1.0
        step = _rows_per_chunk(c)
        rw = _row_weights(mask, coefs, acc, c)

        def finish(s, rows):  # the loss of these rows; their gradient replaces s
            y = target[rows].to(acc)
            # max(s, 0) - s*y + log1p(exp(-|s|)), the stable BCE-with-logits
            loss[rows] = (s.clamp(min=0) - s * y + torch.log1p(torch.exp(-s.abs()))).sum(1)
            s.sigmoid_().sub_(y).mul_(scale)

        for r0 in range(0, b, step):
            r1 = min(r0 + step, b)
            finish(_sum_chunk(grad[r0:r1], zs, coefs, rw, r0, r1), slice(r0, r1))
        fix = _fix_rows(loss.isnan(), zs, coefs, mask, acc) if rw is not None and rw.partial \
            else None
        if fix is not None:  # a missing expert's NaN/inf came through its zero weight: select
            rows, s = fix
            finish(s, rows)
            grad[rows] = s
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
