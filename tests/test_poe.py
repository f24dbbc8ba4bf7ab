"""The PoE API: every backend equals the paper's formula; masks, weights, errors, extremes."""
import time

import pytest
import torch
import torch.nn.functional as F

from i2m2bench.poe import BACKENDS, poe_bce, poe_bernoulli_logits, poe_log_softmax, poe_nll
from i2m2bench.poe import triton_backend

# triton joins on CPU only under TRITON_INTERPRET=1 (see test_poe_triton.py, which re-runs this
# file that way); on CUDA machines the GPU tests below cover it.
CPU_BACKENDS = [b for b in BACKENDS if b != "triton" or triton_backend.available(torch.device("cpu"))]


def paper(zs, weights=None, mask=None):
    """Madaan et al. (2024): num = sum_k log_softmax(z_k); out = num - logsumexp(num)."""
    num = 0
    for k, z in enumerate(zs):
        t = F.log_softmax(z.double(), -1)
        if weights is not None:
            t = t * weights[k].double()
        if mask is not None:
            t = torch.where(mask[:, k:k + 1], t, torch.zeros((), dtype=t.dtype))
        num = num + t
    return num - torch.logsumexp(num, -1, keepdim=True)


def make(k=3, b=5, c=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, generator=g, dtype=dtype).mul_(3).requires_grad_() for _ in range(k)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("stacked", [False, True])
def test_values_and_gradients_match_the_paper(backend, stacked):
    zs = make()
    w = torch.tensor([1.0, 0.5, 2.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.bool)
    target = torch.tensor([0, 3, 6, 2, 1])
    arg = torch.stack(zs) if stacked else zs
    out = poe_log_softmax(arg, w, mask, backend=backend)
    want = paper(zs, w, mask)
    assert torch.allclose(out.double(), want, atol=1e-5)
    loss = poe_nll(arg, target, w, mask, backend=backend)
    ref = F.nll_loss(want, target)
    assert torch.allclose(loss.double(), ref, atol=1e-5)
    g = torch.autograd.grad(loss, zs)
    gr = torch.autograd.grad(ref, zs)
    for a, b in zip(g, gr):
        assert torch.allclose(a.double(), b.double(), atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_available_expert_is_that_experts_log_softmax(backend):
    zs = make()
    mask = torch.zeros(5, 3, dtype=torch.bool)
    mask[:, 1] = True
    assert torch.allclose(poe_log_softmax(zs, mask=mask, backend=backend), F.log_softmax(zs[1], -1), atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_masked_experts_get_zero_gradient_even_with_nan_logits(backend):
    zs = make()
    with torch.no_grad():
        zs[2][0] = float("nan")  # a missing modality's expert may produce garbage
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[0, 2] = False
    loss = poe_nll(zs, torch.zeros(5, dtype=torch.long), mask=mask, backend=backend)
    assert torch.isfinite(loss)
    g = torch.autograd.grad(loss, zs)
    assert torch.all(g[2][0] == 0) and torch.all(torch.isfinite(g[2]))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weights_scale_gradients(backend):
    zs = make(k=2)
    target = torch.tensor([1, 2, 3, 4, 5])
    w = torch.tensor([2.0, 1.0])
    loss = poe_nll(zs, target, w, backend=backend)
    g0, g1 = torch.autograd.grad(loss, zs)
    assert torch.allclose(g0, 2 * g1, atol=1e-6)  # d/dz_k = w_k * (softmax - onehot) / B


def test_no_available_expert_names_the_rows():
    zs = make()
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[1] = False
    mask[4] = False
    with pytest.raises(ValueError, match=r"rows \[1, 4\] have no available expert"):
        poe_log_softmax(zs, mask=mask)


def test_shape_errors():
    with pytest.raises(ValueError, match="every expert must be"):
        poe_log_softmax([torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"weights must have shape \(K,\) = \(2,\)"):
        poe_log_softmax([torch.zeros(2, 3)] * 2, weights=torch.ones(3))
    with pytest.raises(ValueError, match="unknown poe backend"):
        poe_log_softmax([torch.zeros(2, 3)], backend="cuda-magic")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_extreme_logits_stay_finite(backend):
    z1 = torch.tensor([[1e4, -1e4, 0.0], [-1e30, 0.0, 1e4]], requires_grad=True)
    z2 = torch.tensor([[-1e4, 1e4, 0.0], [0.0, -3.4e38, 0.0]], requires_grad=True)
    out = poe_log_softmax([z1, z2], backend=backend)
    loss = poe_nll([z1, z2], torch.tensor([0, 2]), backend=backend)
    g = torch.autograd.grad(loss, [z1, z2])
    assert torch.isfinite(loss) and all(torch.isfinite(x).all() for x in g)
    assert torch.all(out <= 0) and not torch.isnan(out).any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_k1_equals_log_softmax(backend):
    (z,) = make(k=1)
    assert torch.allclose(poe_log_softmax([z], backend=backend), F.log_softmax(z, -1), atol=1e-6)
    t = torch.tensor([0, 1, 2, 3, 4])
    assert torch.allclose(poe_nll([z], t, backend=backend), F.cross_entropy(z, t), atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float64_gradcheck(backend, reduction):
    zs = make(k=3, b=4, c=6, dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    t = torch.tensor([0, 5, 2, 3])
    assert torch.autograd.gradcheck(lambda *z: poe_nll(list(z), t, w, mask, reduction, backend=backend), zs)
    assert torch.autograd.gradcheck(lambda *z: poe_log_softmax(list(z), w, mask, backend=backend), zs)
    y = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda *z: poe_bce(list(z), y, w, mask, "mean", backend=backend), zs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_half_precision_within_stated_tolerance(backend, dtype, tol):
    """Half inputs: values and gradients within ``tol`` (absolute) of the float64 paper formula."""
    zs = [z.detach().to(dtype).requires_grad_() for z in make(k=3, b=8, c=50)]
    t = torch.arange(8) * 5
    loss = poe_nll(zs, t, backend=backend)
    ref = F.nll_loss(paper([z.detach().double().requires_grad_() for z in zs]), t)
    assert abs(float(loss) - float(ref)) < tol * max(1.0, abs(float(ref)))
    out = poe_log_softmax(zs, backend=backend)
    assert out.dtype == dtype
    assert torch.allclose(out.double(), paper(zs), atol=tol * 10, rtol=tol)
    g = torch.autograd.grad(loss, zs)
    zd = [z.detach().double().requires_grad_() for z in zs]
    gr = torch.autograd.grad(F.nll_loss(paper(zd), t), zd)
    for a, b in zip(g, gr):
        assert a.dtype == dtype and torch.allclose(a.double(), b, atol=tol)


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b in ("fused", "triton")])
def test_backward_twice_and_loss_scaling(backend):
    """The saved gradient buffer survives retain_graph and a scaled loss (e.g. AMP's scaler)."""
    zs = make(k=2, b=4, c=5)
    loss = poe_nll(zs, torch.tensor([0, 1, 2, 3]), backend=backend)
    g1 = [g.clone() for g in torch.autograd.grad(loss * 8.0, zs, retain_graph=True)]
    g2 = torch.autograd.grad(loss, zs)
    assert all(torch.allclose(a, 8.0 * b) for a, b in zip(g1, g2))


def test_fused_shared_gradient_does_not_alias_leaf_grads():
    """Experts with coefficient 1 share one gradient buffer; leaves must still get their own."""
    zs = make(k=3, b=4, c=5)
    poe_nll(zs, torch.tensor([0, 1, 2, 3]), backend="fused").backward()
    g1 = zs[1].grad.clone()
    zs[0].grad.mul_(0)
    assert torch.equal(zs[1].grad, g1)


def test_fused_chunking_covers_every_row(monkeypatch):
    from i2m2bench.poe import fused
    monkeypatch.setattr(fused, "CHUNK_ELEMS", 7 * 3)  # 3 rows per chunk, last chunk partial
    zs = make(k=3, b=8, c=7)
    t = torch.arange(8) % 7
    assert torch.allclose(poe_log_softmax(zs, backend="fused").double(), paper(zs), atol=1e-5)
    g = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    gr = torch.autograd.grad(poe_nll(zs, t, backend="reference"), zs)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, gr))


def test_auto_picks_by_device_and_size():
    from i2m2bench.poe import FUSED_MIN_ELEMENTS, _pick
    small, big = [torch.zeros(4, 10)], [torch.zeros(2, FUSED_MIN_ELEMENTS // 2)]
    assert _pick("auto", small) == "torch" and _pick("auto", big) == "fused"


def test_bernoulli_product_sums_logits():
    zs = make(k=3)
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[0, 0] = False
    w = torch.tensor([1.0, 2.0, 0.5])
    z = poe_bernoulli_logits(zs, w, mask)
    want = zs[0] * w[0] * mask[:, :1] + zs[1] * w[1] + zs[2] * w[2]
    assert torch.allclose(z, want)
    soft = torch.rand(5, 7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(poe_bce(zs, soft, w, mask), F.binary_cross_entropy_with_logits(want, soft))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_underflowing_target_probability_gives_the_exact_loss(backend):
    """p(target) = exp(-400) underflows in float32; the loss must still be 400, not inf."""
    z = torch.tensor([[100.0, -100.0, 0.0]] * 2, requires_grad=True)
    loss = poe_nll([z, z.detach().clone().requires_grad_()], torch.tensor([1, 0]), reduction="none",
                   backend=backend)
    assert torch.allclose(loss, torch.tensor([400.0, 0.0]), atol=1e-3)


def test_fused_workspace_is_reused_only_when_nothing_refers_to_it():
    from i2m2bench.poe import fused

    zs = make(k=2, b=6, c=9)
    t = torch.arange(6)
    fused.release_workspace()
    g1 = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    kept, snapshot = g1[0], g1[0].clone()
    view = g1[1][:2]
    del g1
    g2 = torch.autograd.grad(poe_nll([z * 2 for z in zs], t, backend="fused"), zs)
    assert g2[0].data_ptr() != kept.data_ptr() and torch.equal(kept, snapshot)  # held: not reused
    del kept, g2
    g3 = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    assert torch.equal(view, snapshot[:2])  # a view still pins the storage
    ptr = g3[0].data_ptr()
    del g3, view
    g4 = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    assert g4[0].data_ptr() == ptr  # nothing refers to it any more: reused


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode", "inputs_without_grad"])
def test_forward_without_autograd_matches_the_paper(backend, dtype, tol, grad_mode):
    """Evaluation path (nothing saved for backward): values, dtype, mask and weights."""
    zs = [z.detach().to(dtype) for z in make(k=3, b=5, c=7)]
    if grad_mode != "inputs_without_grad":
        zs = [z.requires_grad_() for z in zs]
    w = torch.tensor([1.0, 0.5, 2.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.bool)
    ctx = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(grad_mode, torch.enable_grad)
    for weights, m in [(None, None), (w, mask)]:
        with ctx():
            out = poe_log_softmax(zs, weights, m, backend=backend)
        assert out.dtype == dtype and out.shape == (5, 7) and not out.requires_grad
        want = paper([z.detach() for z in zs], weights, m)
        assert torch.allclose(out.double(), want, atol=tol * 10, rtol=tol)


def _big(k=3, b=16, c=4096, seed=0, dtype=torch.float32):
    """Above FUSED_MIN_ELEMENTS, so ``auto`` would pick fused too; several chunks' worth of rows."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, generator=g).mul_(3).to(dtype) for _ in range(k)]


@pytest.fixture
def small_chunks(monkeypatch):
    from i2m2bench.poe import fused
    monkeypatch.setattr(fused, "CHUNK_ELEMS", 4096 * 3)  # 3 rows per chunk, the last one partial
    fused.release_workspace()
    yield fused
    fused.release_workspace()


def test_fused_forward_never_overwrites_an_output_the_caller_still_holds(small_chunks):
    fused = small_chunks
    a, b, c = _big(seed=1), _big(seed=2), _big(seed=3)
    with torch.no_grad():
        out1 = poe_log_softmax(a, backend="fused")
        snap1 = out1.clone()
        out2 = poe_log_softmax(b, backend="fused")  # out1 is held: a second buffer
        assert out2.data_ptr() != out1.data_ptr() and torch.equal(out1, snap1)
        view = out1[3:5]
        del out1
        out3 = poe_log_softmax(c, backend="fused")  # out1's storage is pinned by a view, out2 held
        assert len({out2.data_ptr(), out3.data_ptr(), view.data_ptr() - 3 * 4096 * 4}) == 3
        assert torch.equal(view, snap1[3:5])
        snap2, snap3 = out2.clone(), out3.clone()
        arr, st = out2.numpy(), out3.untyped_storage()  # non-tensor holders pin storage too
        ptr2, ptr3 = out2.data_ptr(), out3.data_ptr()
        del out2, out3
        out4 = poe_log_softmax(a, backend="fused")
        assert out4.data_ptr() not in (ptr2, ptr3)
        assert torch.equal(torch.from_numpy(arr), snap2)
        assert torch.equal(torch.empty(0).set_(st, 0, (16, 4096)), snap3)
        assert torch.allclose(out4.double(), paper(a), atol=1e-5)
        assert len(fused._workspace) <= fused.WORKSPACE_SLOTS
        ptr4 = out4.data_ptr()
        del out4
        out5 = poe_log_softmax(b, backend="fused")  # nothing refers to out4's storage: reused
        assert out5.data_ptr() == ptr4
        assert torch.allclose(out5.double(), paper(b), atol=1e-5)


def test_fused_outputs_alternate_between_two_buffers_in_a_loop(small_chunks):
    """``out = poe_log_softmax(x)`` in a loop holds the previous output during the next call."""
    inputs = [_big(seed=s) for s in range(6)]
    ptrs, out = [], None
    with torch.no_grad():
        for zs in inputs:
            out = poe_log_softmax(zs, backend="fused")
            ptrs.append(out.data_ptr())
            assert torch.allclose(out.double(), paper(zs), atol=1e-5)
    assert len(set(ptrs)) == 2 and ptrs[0::2] == [ptrs[0]] * 3 and ptrs[1::2] == [ptrs[1]] * 3


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_fused_reuse_keeps_mask_weights_and_saved_outputs_correct(small_chunks, dtype, tol):
    """Reused buffers under masks, weights and bf16; an output saved for backward is pinned."""
    w = torch.tensor([1.0, 0.5, 2.0])
    mask = torch.ones(16, 3, dtype=torch.bool)
    mask[::2, 0] = False
    mask[1::4, 2] = False
    zs = [z.requires_grad_() for z in _big(seed=7, dtype=dtype)]
    out = poe_log_softmax(zs, w, mask, backend="fused")  # graph recorded: output saved
    loss = -out[torch.arange(16), torch.arange(16) * 7].float().sum()
    del out  # only the graph holds the saved output now
    for s in range(4):  # evaluation calls in between must not reuse the saved output
        other = _big(seed=20 + s, dtype=dtype)
        with torch.no_grad():
            o = poe_log_softmax(other, w, mask, backend="fused")
        assert o.dtype == dtype
        assert torch.allclose(o.double(), paper([z.double() for z in other], w, mask), atol=tol * 10, rtol=tol)
    g = torch.autograd.grad(loss, zs)
    zd = [z.detach().double().requires_grad_() for z in zs]
    ref = -paper(zd, w, mask)[torch.arange(16), torch.arange(16) * 7].sum()
    gr = torch.autograd.grad(ref, zd)
    for a, b in zip(g, gr):
        assert a.dtype == dtype and torch.allclose(a.double(), b, atol=tol)


def test_fused_gradients_the_caller_holds_are_never_overwritten(small_chunks):
    """The shared gradient buffer returned by autograd.grad is the caller's until dropped."""
    zs = [z.requires_grad_() for z in _big(seed=4)]
    t = torch.arange(16) * 11
    g1 = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    snap = g1[0].clone()
    g2 = torch.autograd.grad(poe_nll(zs, t.flip(0), backend="fused"), zs)
    g3 = torch.autograd.grad(poe_nll(zs, (t + 1) % 4096, backend="fused"), zs)
    assert torch.equal(g1[0], snap) and torch.equal(g1[2], snap)
    assert len({g1[0].data_ptr(), g2[0].data_ptr(), g3[0].data_ptr()}) == 3
    gr = torch.autograd.grad(poe_nll(zs, (t + 1) % 4096, backend="reference"), zs)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g3, gr))


def test_fused_workspace_limits(small_chunks, monkeypatch):
    fused = small_chunks
    with torch.no_grad():
        held = [poe_log_softmax(_big(seed=s), backend="fused") for s in range(4)]  # all held
        assert len(fused._workspace) == fused.WORKSPACE_SLOTS
        small = poe_log_softmax(_big(b=8, seed=9), backend="fused")  # another shape: evicts oldest
        assert len(fused._workspace) == fused.WORKSPACE_SLOTS
        del held, small
        poe_log_softmax(_big(b=4, seed=9), backend="fused")  # free storages of other shapes go
        assert len(fused._workspace) == 1
        monkeypatch.setattr(fused, "WORKSPACE_MAX_BYTES", 16 * 4096 * 4 - 1)  # one buffer is too big
        fused.release_workspace()
        poe_log_softmax(_big(seed=1), backend="fused")
        assert fused._workspace == []


def test_fused_underflowing_rows_with_mask_and_weights_across_chunks(small_chunks):
    """Rows whose p(target) underflows are recomputed after the chunk loop: masks, weights, NaN."""
    zs = [z.requires_grad_() for z in _big(seed=5)]
    with torch.no_grad():
        zs[0][7, 0] = 500.0  # row 7 (third chunk): target 1 has p = exp(-500 * w0)
        zs[2][7] = float("nan")  # expert 2 is missing for row 7
        zs[1][14, 3] = -400.0  # row 14 (last chunk): target 3 underflows through expert 1 alone
    mask = torch.ones(16, 3, dtype=torch.bool)
    mask[7, 2] = False
    w = torch.tensor([1.0, 0.5, 2.0])
    t = torch.arange(16) % 5
    t[7], t[14] = 1, 3
    loss = poe_nll(zs, t, w, mask, reduction="none", backend="fused")
    ref = poe_nll(zs, t, w, mask, reduction="none", backend="reference")
    assert torch.isfinite(loss).all() and loss[7] > 400 and loss[14] > 150
    assert torch.allclose(loss, ref, rtol=1e-5, atol=1e-4)


def test_fused_workspace_crosses_inference_mode_and_threads(small_chunks):
    """A buffer first made under inference_mode serves later autograd calls; two threads never
    share one."""
    import threading

    zs = [z.requires_grad_() for z in _big(seed=8)]
    t = torch.arange(16) * 3
    with torch.inference_mode():
        out = poe_log_softmax(zs, backend="fused")
        assert out.is_inference() and torch.allclose(out.double(), paper(zs), atol=1e-5)
        del out
    g = torch.autograd.grad(poe_nll(zs, t, backend="fused"), zs)
    gr = torch.autograd.grad(poe_nll(zs, t, backend="reference"), zs)
    assert not g[0].is_inference() and all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g, gr))

    inputs = [_big(seed=30 + i) for i in range(2)]
    wants = [paper(zs) for zs in inputs]
    errors = []

    def work(i):
        with torch.no_grad():
            for _ in range(20):
                out = poe_log_softmax(inputs[i], backend="fused")
                for _ in range(3):  # held while the other thread computes
                    if not torch.allclose(out.double(), wants[i], atol=1e-5):
                        errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


# ------------------------------------------------- the mask folded into per-row weights (fused)
def _chunk_mask():
    """16 rows in chunks of 3 (small_chunks): expert 0 present everywhere; expert 1 missing in
    every row of chunk 1 and some rows of others; expert 2 present in some rows of each chunk
    and in none of chunk 3."""
    mask = torch.ones(16, 3, dtype=torch.bool)
    mask[3:6, 1] = False
    mask[[0, 7, 13], 1] = False
    mask[[1, 4, 8, 15], 2] = False
    mask[9:12, 2] = False
    return mask


# the torch backend sums in bfloat16 (its own tolerance: test_half_precision_within_stated_tolerance)
@pytest.mark.parametrize("backend,dtype,tol", [
    (b, dtype, tol) for b in CPU_BACKENDS if b != "reference"
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2))
    if not (b == "torch" and dtype == torch.bfloat16)])
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf"), 1e30])
def test_masked_rows_match_the_paper_whatever_a_missing_expert_holds(small_chunks, backend, poison,
                                                                     dtype, tol):
    """The fused backend multiplies missing experts by a zero weight rather than selecting: a
    NaN or inf they hold (in any column, not only the first) is caught and the row recomputed by
    selection. For every backend (triton under the interpreter too), values and gradients
    (forward, log-softmax backward, NLL, BCE) equal the paper's, and every missing (row, expert)
    gets a zero gradient; chunks with an expert present in all, some and no rows."""
    mask = _chunk_mask()
    w = torch.tensor([1.0, 0.5, 2.0])
    zs = [z.to(dtype).requires_grad_() for z in _big(seed=11)]
    with torch.no_grad():
        zs[1][7, 3] = poison  # chunk 2: expert 1 missing in some rows
        zs[2][10, 0] = poison  # chunk 3: expert 2 missing in every row
        zs[1][4, 2] = poison  # chunk 1: expert 1 missing in every row
    t = torch.arange(16) % 5
    proj = torch.randn(4096, generator=torch.Generator().manual_seed(1))  # a non-uniform d loss/d out
    want = paper([z.detach().float() for z in zs], w, mask)
    with torch.no_grad():
        out = poe_log_softmax(zs, w, mask, backend=backend)
    assert torch.isfinite(out).all() and torch.allclose(out.double(), want, rtol=tol, atol=tol)
    lp = poe_log_softmax(zs, w, mask, backend=backend)
    g_lp = torch.autograd.grad(lp.float().mul(proj).sum(), zs)
    loss = poe_nll(zs, t, w, mask, reduction="none", backend=backend)
    ref = F.nll_loss(want, t, reduction="none")
    assert torch.allclose(loss.double(), ref, rtol=tol, atol=tol), (loss, ref)
    g = torch.autograd.grad(loss.sum(), zs)
    zr = [z.detach().float().requires_grad_() for z in zs]
    gr = torch.autograd.grad(poe_nll(zr, t, w, mask, reduction="sum", backend="reference"), zr)
    g_lpr = torch.autograd.grad(poe_log_softmax(zr, w, mask, backend="reference")
                                .mul(proj).sum(), zr)
    for k in range(3):
        for a, b in ((g[k], gr[k]), (g_lp[k], g_lpr[k])):
            assert torch.isfinite(a).all()
            assert torch.all(a[~mask[:, k]] == 0), f"expert {k}: a missing row has a gradient"
            assert (a.float() - b).abs().max() <= tol * max(1.0, float(b.abs().max()))
    soft = torch.rand(16, 4096, generator=torch.Generator().manual_seed(2))
    bce = poe_bce(zs, soft.to(dtype), w, mask, backend=backend)
    bref = F.binary_cross_entropy_with_logits(
        poe_bernoulli_logits(zr, w, mask, backend="reference"), soft)
    assert torch.allclose(bce.float(), bref, atol=tol)
    gb = torch.autograd.grad(bce, zs)
    for k in range(3):
        assert torch.isfinite(gb[k]).all() and torch.all(gb[k][~mask[:, k]] == 0)


def test_fused_masked_weights_per_chunk(small_chunks):
    """Which experts a chunk reads: all rows present -> the scalar weight, some -> per-row
    weights, none -> not read at all (a missing expert's chunk is never touched)."""
    fused = small_chunks
    mask = _chunk_mask()
    rw = fused.RowWeights(mask, [1.0, 0.5, 2.0], torch.float32, 3)
    A, S, N = fused.ALL, fused.SOME, fused.NONE
    assert rw.kinds[0] == [A, S, S] and rw.kinds[1] == [A, N, S] and rw.kinds[3] == [A, A, N]
    assert rw.kinds[4] == [A, S, A] and rw.kinds[5] == [A, A, N] and len(rw.kinds) == 6
    assert rw.partial
    assert torch.equal(rw.w, mask.float() * torch.tensor([1.0, 0.5, 2.0]))
    zs = _big(seed=3)
    terms = rw.terms(zs, [1.0, 0.5, 2.0], 9, 12)  # chunk 3
    assert [w for _, w in terms] == [1.0, 0.5]  # expert 2 (missing in the whole chunk) not read
    full = fused.RowWeights(torch.ones(16, 3, dtype=torch.bool), [1.0] * 3, torch.float32, 3)
    assert not full.partial


def test_fused_masked_gradients_are_separate_and_unmasked_ones_shared(small_chunks):
    """Experts present in every row (weight 1) share the one gradient buffer; an expert missing
    in some rows gets its own (its missing rows are zero), so no gradient aliases another's."""
    zs = [z.requires_grad_() for z in _big(seed=4)]
    mask = torch.ones(16, 3, dtype=torch.bool)
    mask[2, 1] = mask[9, 2] = False
    g = torch.autograd.grad(poe_nll(zs, torch.arange(16) % 9, mask=mask, backend="fused"), zs)
    assert g[1].data_ptr() != g[2].data_ptr() and g[0].data_ptr() not in (g[1].data_ptr(),
                                                                         g[2].data_ptr())
    assert torch.all(g[1][2] == 0) and torch.all(g[2][9] == 0)
    assert torch.equal(g[1][3], g[0][3]) and torch.equal(g[2][2], g[0][2])
    g2 = torch.autograd.grad(poe_nll(zs, torch.arange(16) % 9, backend="fused"), zs)
    assert g2[0].data_ptr() == g2[1].data_ptr() == g2[2].data_ptr()


def test_fused_runs_on_one_thread_while_the_machine_is_loaded(small_chunks, monkeypatch):
    """A large call that waited for a core more than LOAD_HIGH of its time makes the next ones
    run on one thread (then torch's thread count is restored); one that waits less than
    LOAD_LOW goes back to every thread. The values never change."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))  # a one-thread process has nothing to give up
    try:
        _check_load_watch(small_chunks, monkeypatch)
    finally:
        torch.set_num_threads(before)


def _check_load_watch(fused, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(fused, "LOAD_MIN_ELEMS", 16 * 4096)
    monkeypatch.setattr(fused, "LOAD_MIN_SECONDS", 0.0)
    monkeypatch.setitem(fused._load, "single", False)
    clock = {"waited": 0.0}  # seconds of run delay each call adds, as a share of its wall time
    seen = []
    real_sum = fused._weighted_sum

    def delay_ns():
        return int(clock.get("total", 0))

    def timed_sum(out, terms):  # record the thread count inside the pass; "wait" in proportion
        seen.append(torch.get_num_threads())
        t0 = time.perf_counter()
        real_sum(out, terms)
        clock["total"] = clock.get("total", 0) + clock["waited"] * (time.perf_counter() - t0) * 5e9
    monkeypatch.setattr(fused, "_run_delay_ns", delay_ns)
    monkeypatch.setattr(fused, "_weighted_sum", timed_sum)
    zs = _big(seed=12)
    want = paper(zs)

    def call():
        seen.clear()
        with torch.no_grad():
            out = poe_log_softmax(zs, backend="fused")
        assert torch.allclose(out.double(), want, atol=1e-5)
        assert torch.get_num_threads() == threads  # restored
        return set(seen)

    assert call() == {threads}  # quiet: every thread
    clock["waited"] = 1.0  # loaded: the pass waits for a core
    assert call() == {threads} and fused._load["single"]  # this call decides for the next
    assert call() == {1}
    assert call() == {1} and fused._load["single"]  # still loaded: stays on one thread
    clock["waited"] = 0.0
    assert call() == {1} and not fused._load["single"]  # quiet again
    assert call() == {threads}


def test_fused_load_watch_needs_the_kernels_run_delay(small_chunks, monkeypatch):
    """Where /proc/thread-self/schedstat cannot be read, calls keep torch's thread count."""
    fused = small_chunks
    monkeypatch.setattr(fused, "LOAD_MIN_ELEMS", 1)
    monkeypatch.setattr(fused, "_run_delay_ns", lambda: None)
    monkeypatch.setitem(fused._load, "single", True)
    threads = torch.get_num_threads()
    seen = []
    real_sum = fused._weighted_sum
    monkeypatch.setattr(fused, "_weighted_sum",
                        lambda out, terms: (seen.append(torch.get_num_threads()), real_sum(out, terms)))
    with torch.no_grad():
        poe_log_softmax(_big(seed=13), backend="fused")
    assert set(seen) == {threads}
