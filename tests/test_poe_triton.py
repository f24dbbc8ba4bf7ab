"""The Triton kernel passes the PoE tests on CPU under TRITON_INTERPRET=1, and on CUDA."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed")


@pytest.mark.slow
def test_triton_kernel_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(HERE / "test_poe.py"), "-k", "triton"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_matches_reference_on_cuda():
    from i2m2bench.poe import poe_log_softmax, poe_nll

    g = torch.Generator(device="cuda").manual_seed(0)
    for k, b, c in [(1, 3, 10), (3, 64, 3129), (5, 16, 32768)]:
        zs = [torch.randn(b, c, device="cuda", generator=g).requires_grad_() for _ in range(k)]
        t = torch.randint(0, c, (b,), device="cuda", generator=g)
        mask = torch.ones(b, k, dtype=torch.bool, device="cuda")
        mask[0, 0] = k == 1
        for m in (None, mask):
            out = poe_log_softmax(zs, mask=m, backend="triton")
            ref = poe_log_softmax(zs, mask=m, backend="reference")
            assert torch.allclose(out, ref, atol=1e-4)
            ga = torch.autograd.grad(poe_nll(zs, t, mask=m, backend="triton"), zs)
            gb = torch.autograd.grad(poe_nll(zs, t, mask=m, backend="reference"), zs)
            assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gb))
