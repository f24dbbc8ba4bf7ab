"""``toy``: a tiny synthetic two-modality task that trains in well under a second.

Registered like a real dataset so the whole pipeline (harness, results, leaderboard, CLI) runs in
tests in seconds (the "dummy component" pattern of lm-evaluation-harness's ``DummyLM``). Each
sample has a label y in {0..C-1}; modality ``a`` carries a noisy cue of y, modality ``b`` a noisy
cue of (y + code) mod C with ``code`` also visible in ``a`` — so both intra- and
inter-modality information exist.
"""
from __future__ import annotations

import torch

from i2m2bench.data.base import DATASETS
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec


def _make(n: int, classes: int, dim: int, noise: float, gen: torch.Generator):
    y = torch.randint(0, classes, (n,), generator=gen)
    code = torch.randint(0, classes, (n,), generator=gen)
    protos = torch.randn(2, classes, dim, generator=torch.Generator().manual_seed(1234))
    a = protos[0, y] + 0.5 * protos[1, code] + noise * torch.randn(n, dim, generator=gen)
    b = protos[1, (y + code) % classes] + noise * torch.randn(n, dim, generator=gen)
    return a, b, y


@DATASETS.register("toy")
def build_toy(n_train: int = 512, n_eval: int = 256, classes: int = 4, dim: int = 16,
              noise: float = 1.5, data_seed: int = 0, source: str = "embedded") -> Task:
    """Toy data are generated, always embedded: there is no ``data_root`` option."""
    if source not in ("auto", "embedded"):
        raise ValueError(f"toy: source must be 'auto' or 'embedded' (it has no real files); got {source!r}")
    gen = torch.Generator().manual_seed(data_seed)
    spec = TaskSpec(
        name="toy", version="1",
        modalities=(ModalitySpec("a", (dim,), "vector", "mlp"), ModalitySpec("b", (dim,), "vector", "mlp")),
        problem="multiclass", num_classes=classes, labels=tuple(str(i) for i in range(classes)),
        source="embedded", description="synthetic two-modality task for tests",
    )
    splits = {}
    for name, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        a, b, y = _make(n, classes, dim, noise, gen)
        splits[name] = Split({"a": a, "b": b}, y, name)
    a, b, y = _make(n_eval, classes, dim, noise * 1.5, gen)
    shifts = {"noisier": Split({"a": a, "b": b}, y, "noisier")}
    return Task(spec, splits, shifts, options=dict(n_train=n_train, n_eval=n_eval, classes=classes,
                                                   dim=dim, noise=noise, data_seed=data_seed))
