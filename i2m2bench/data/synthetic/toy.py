"""``toy``, ``toy_multilabel``, ``toy_soft``: tiny synthetic two-modality tasks (multiclass,
multilabel, soft-score) that train in well under a second.

Registered like a real dataset so the whole pipeline (harness, results, leaderboard, CLI) runs in
tests in seconds (the "dummy component" pattern of lm-evaluation-harness's ``DummyLM``). Each
sample has a label y in {0..C-1}; modality ``a`` carries a noisy cue of y, modality ``b`` a noisy
cue of (y + code) mod C with ``code`` also visible in ``a`` — so both intra- and
inter-modality information exist.
"""
from __future__ import annotations

import torch

from i2m2bench.data.base import DATASETS, check_count
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec


def _make(n: int, classes: int, dim: int, noise: float, gen: torch.Generator):
    y = torch.randint(0, classes, (n,), generator=gen)
    code = torch.randint(0, classes, (n,), generator=gen)
    protos = torch.randn(2, classes, dim, generator=torch.Generator().manual_seed(1234))
    a = protos[0, y] + 0.5 * protos[1, code] + noise * torch.randn(n, dim, generator=gen)
    b = protos[1, (y + code) % classes] + noise * torch.randn(n, dim, generator=gen)
    return a, b, y


def _check_source(name: str, source: str, n_train: int, n_eval: int) -> None:
    if source not in ("auto", "embedded"):
        raise ValueError(f"{name}: source must be 'auto' or 'embedded' (it has no real files); got "
                         f"{source!r}")
    check_count(name, "n_train", n_train)
    check_count(name, "n_eval", n_eval)


def _splits(make, n_train: int, n_eval: int, noise: float) -> tuple[dict, dict]:
    """train/val/test drawn with ``make(n, noise) -> (a, b, target)`` in that order, then the
    ``noisier`` shift set (noise × 1.5) — the same generator draws for every toy task."""
    splits = {}
    for name, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        a, b, y = make(n, noise)
        splits[name] = Split({"a": a, "b": b}, y, name)
    a, b, y = make(n_eval, noise * 1.5)
    return splits, {"noisier": Split({"a": a, "b": b}, y, "noisier")}


@DATASETS.register("toy")
def build_toy(n_train: int = 512, n_eval: int = 256, classes: int = 4, dim: int = 16,
              noise: float = 1.5, data_seed: int = 0, source: str = "embedded") -> Task:
    """Toy data are generated, always embedded: there is no ``data_root`` option."""
    _check_source("toy", source, n_train, n_eval)
    gen = torch.Generator().manual_seed(data_seed)
    spec = TaskSpec(
        name="toy", version="1",
        modalities=(ModalitySpec("a", (dim,), "vector", "mlp"), ModalitySpec("b", (dim,), "vector", "mlp")),
        problem="multiclass", num_classes=classes, labels=tuple(str(i) for i in range(classes)),
        source="embedded", description="synthetic two-modality task for tests",
    )
    splits, shifts = _splits(lambda n, nz: _make(n, classes, dim, nz, gen), n_train, n_eval, noise)
    return Task(spec, splits, shifts, options=dict(n_train=n_train, n_eval=n_eval, classes=classes,
                                                   dim=dim, noise=noise, data_seed=data_seed))


# ----------------------------------------------------------------------------- other problem types


def _bits_to_inputs(bits_a: torch.Tensor, bits_b: torch.Tensor, dim: int, noise: float,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each modality: a fixed random projection of its ±1 latent bits plus Gaussian noise."""
    proj = torch.randn(2, bits_a.shape[1], dim, generator=torch.Generator().manual_seed(4321))
    a = (2 * bits_a - 1) @ proj[0] + noise * torch.randn(len(bits_a), dim, generator=gen)
    b = (2 * bits_b - 1) @ proj[1] + noise * torch.randn(len(bits_b), dim, generator=gen)
    return a, b


def _make_multilabel(n: int, labels: int, dim: int, noise: float, gen: torch.Generator):
    u = torch.randint(0, 2, (n, labels), generator=gen).float()  # bits seen by modality a
    v = torch.randint(0, 2, (n, labels), generator=gen).float()  # bits seen by modality b
    y = u.clone()
    y[:, 1::2] = (u[:, 1::2] + v[:, 1::2]) % 2  # odd labels: XOR across modalities (inter)
    a, b = _bits_to_inputs(u, v, dim, noise, gen)
    return a, b, y


@DATASETS.register("toy_multilabel")
def build_toy_multilabel(n_train: int = 512, n_eval: int = 256, labels: int = 4, dim: int = 16,
                         noise: float = 1.0, data_seed: int = 0, source: str = "embedded") -> Task:
    """``toy_multilabel``: L independent binary labels from two vector modalities. Each modality
    sees L latent bits (u for ``a``, v for ``b``) through a fixed random projection plus noise;
    even labels are u_j (intra-modality: ``a`` alone suffices), odd labels u_j XOR v_j (only the
    pair predicts them). Primary metric: macro AUROC; also AUPRC and accuracy at p > 0.5.
    Generated, always embedded; a ``noisier`` shift set (noise × 1.5)."""
    _check_source("toy_multilabel", source, n_train, n_eval)
    gen = torch.Generator().manual_seed(data_seed)
    names = tuple(f"{'intra' if j % 2 == 0 else 'inter'}{j}" for j in range(labels))
    spec = TaskSpec(
        name="toy_multilabel", version="1",
        modalities=(ModalitySpec("a", (dim,), "vector", "mlp"), ModalitySpec("b", (dim,), "vector", "mlp")),
        problem="multilabel", num_classes=labels, labels=names, metric="auroc",
        metrics=("auprc", "accuracy"), source="embedded",
        description="synthetic two-modality multilabel task for tests (even labels intra, odd XOR)",
    )
    splits, shifts = _splits(lambda n, nz: _make_multilabel(n, labels, dim, nz, gen), n_train, n_eval, noise)
    return Task(spec, splits, shifts, options=dict(n_train=n_train, n_eval=n_eval, labels=labels,
                                                   dim=dim, noise=noise, data_seed=data_seed))


#: VQA's score of an answer given by k of 10 annotators (the mean over the 10 leave-one-out
#: subsets of min(k'/3, 1)): 0, 0.3, 0.6, 0.9, then 1 for k >= 4.
VQA_SCORES = (0.0, 0.3, 0.6, 0.9, 1.0)


def _make_soft(n: int, answers: int, dim: int, noise: float, annotators: int, agree: float,
               gen: torch.Generator):
    a, b, y = _make(n, answers, dim, noise, gen)  # the toy task's cues; y: the "true" answer
    pick = torch.rand(n, annotators, generator=gen)
    other = torch.randint(0, answers, (n, annotators), generator=gen)
    near = (y[:, None] + 1) % answers  # the usual confusion: the next answer
    given = torch.where(pick < agree, y[:, None], torch.where(pick < (1 + agree) / 2, near, other))
    counts = torch.zeros(n, answers).scatter_add_(1, given, torch.ones(n, annotators))
    target = torch.tensor(VQA_SCORES)[counts.clamp(max=4).long()]  # (n, answers) in [0, 1]
    return a, b, target


@DATASETS.register("toy_soft")
def build_toy_soft(n_train: int = 512, n_eval: int = 256, answers: int = 6, dim: int = 16,
                   noise: float = 1.5, annotators: int = 10, agree: float = 0.6,
                   data_seed: int = 0, source: str = "embedded") -> Task:
    """``toy_soft``: VQA-style soft scores. The latent answer comes from the ``toy`` task's cues
    (intra and inter information); 10 annotators each give it with probability ``agree``, else
    mostly the next answer, else one at random, and each answer's target is VQA's score of its
    count (0, 0.3, 0.6, 0.9, 1). Primary metric: VQA score. Generated, always embedded; a
    ``noisier`` shift set (noise × 1.5)."""
    _check_source("toy_soft", source, n_train, n_eval)
    if not 0.0 <= agree <= 1.0:
        raise ValueError(f"toy_soft: agree must be in [0, 1]; got {agree}")
    gen = torch.Generator().manual_seed(data_seed)
    spec = TaskSpec(
        name="toy_soft", version="1",
        modalities=(ModalitySpec("a", (dim,), "vector", "mlp"), ModalitySpec("b", (dim,), "vector", "mlp")),
        problem="soft-score", num_classes=answers, labels=tuple(f"ans{i}" for i in range(answers)),
        metric="vqa_score", source="embedded",
        description="synthetic two-modality soft-score (VQA-style) task for tests",
    )
    splits, shifts = _splits(lambda n, nz: _make_soft(n, answers, dim, nz, annotators, agree, gen),
                             n_train, n_eval, noise)
    return Task(spec, splits, shifts, options=dict(n_train=n_train, n_eval=n_eval, answers=answers,
                                                   dim=dim, noise=noise, annotators=annotators,
                                                   agree=agree, data_seed=data_seed))
