"""Public test helpers: the contract every fusion strategy must meet.

``check_fusion(name)`` runs on any registered strategy — ours and plugins' — and raises
``AssertionError`` with a message naming the strategy and the broken rule:

* ``forward`` returns a non-empty dict of (B, C) finite logits, keyed as ``expert_modalities()``;
  ``combine='single'`` means exactly one expert;
* the combined output equals the paper's formula, log_softmax(sum_k w_k log_softmax(z_k)) —
  or log_softmax(z) for a single expert; on multilabel tasks the Bernoulli product per label,
  sum_k w_k z_k (z for a single expert);
* every loss the task's problem type allows (``fusion.base.LOSSES``) is a finite scalar that
  reaches every expert (non-zero gradient w.r.t. each expert's logits) and every trainable
  parameter (parameters held in plain Python lists would not be);
* with a modality absent for some samples the output stays finite, and a strategy that drops
  experts predicts exactly the product of the experts that remain;
* the same seed builds the same model and the same outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from i2m2bench.fusion.base import FUSIONS, LOSSES, Fusion, output_problems
from i2m2bench.registry import load_plugins
from i2m2bench.types import Batch, ModalitySpec, TaskSpec


def tiny_spec(num_classes: int = 3, problem: str = "multiclass") -> TaskSpec:
    """Two small vector modalities — enough to exercise any strategy quickly. ``problem``:
    ``multiclass``, ``multilabel`` (``num_classes`` labels) or ``soft-score``."""
    metric = {"multiclass": "accuracy", "multilabel": "auroc", "soft-score": "vqa_score"}[problem]
    return TaskSpec("contract", "0", (ModalitySpec("a", (6,), "vector", "mlp"),
                                      ModalitySpec("b", (5,), "vector", "mlp")),
                    problem, num_classes, metric=metric)


#: A small per-sample shape of every modality kind, for contract checks.
EXAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "image": (1, 12, 12), "spectrogram": (1, 16, 16), "vector": (10,), "sequence": (8, 3),
    "volume": (1, 4, 8, 8), "timeseries": (8, 3), "tokens": (12,), "image_pair": (2, 1, 8, 8)}


def _random_input(m, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """Uniform values in [0, 1) of modality ``m``'s shape; for a ``tokens`` modality, int64 ids
    of its vocabulary (100 ids without ``vocab_size``) with the tail of each sequence padded."""
    if m.kind != "tokens":
        return torch.rand((batch_size, *m.shape), generator=g)
    vocab = m.vocab_size or max(100, m.pad_id + 1)
    ids = torch.randint(0, vocab - 1, (batch_size, *m.shape), generator=g)
    ids = ids + (ids >= m.pad_id).long()  # every id but the padding one
    length = m.shape[-1]
    keep = torch.randint(1, length + 1, (batch_size, 1), generator=g)  # >= 1 real token each
    return torch.where(torch.arange(length) < keep, ids, torch.full_like(ids, m.pad_id))


def random_batch(spec: TaskSpec, batch_size: int = 6, seed: int = 0) -> Batch:
    """Uniform inputs (token ids, padded, for ``tokens`` modalities) and targets of the spec's
    problem type: class indices (multiclass), 0/1 per label (multilabel), scores in
    {0, 0.3, 0.6, 0.9, 1} per class (soft-score, as VQA's)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {m.name: _random_input(m, batch_size, g) for m in spec.modalities}
    if spec.problem == "multilabel":
        target = torch.randint(0, 2, (batch_size, spec.num_classes), generator=g).float()
    elif spec.problem == "soft-score":
        levels = torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0])
        target = levels[torch.randint(0, 5, (batch_size, spec.num_classes), generator=g)]
    else:
        target = torch.randint(0, spec.num_classes, (batch_size,), generator=g)
    return Batch(inputs, target)


def _build(name: str, spec: TaskSpec, options: dict | None, seed: int) -> Fusion:
    torch.manual_seed(seed)
    cls = FUSIONS.get(name)
    opts = cls.example_options(spec) if options is None else options
    return cls(spec, **opts)


def _paper_poe(zs: list[torch.Tensor], weights: torch.Tensor | None,
               problem: str = "multiclass") -> torch.Tensor:
    if problem == "multilabel":  # Bernoulli experts: the product's logit is the weighted sum
        return sum((1.0 if weights is None else weights[k]) * z for k, z in enumerate(zs))
    num = sum((1.0 if weights is None else weights[k]) * F.log_softmax(z, -1) for k, z in enumerate(zs))
    return num - torch.logsumexp(num, -1, keepdim=True)


def check_fusion(name: str, spec: TaskSpec | None = None, options: dict | None = None,
                 batch_size: int = 6, seed: int = 0) -> None:
    """Run every contract check on the registered strategy ``name`` (see module docstring).
    Plugins are loaded first (``I2M2BENCH_PLUGINS=0`` skips them)."""
    load_plugins()
    spec = spec or tiny_spec()
    where = f"fusion {name!r}"
    model = _build(name, spec, options, seed)
    assert isinstance(model, Fusion), f"{where}: must subclass i2m2bench.Fusion"
    model.train()
    batch = random_batch(spec, batch_size, seed)
    logits = model(batch)
    problems = output_problems(model, logits, batch)
    assert not problems, f"{where}: " + "; ".join(problems)
    mods = model.expert_modalities()

    # The combined output is the paper's formula.
    zs = list(logits.values())
    got = model.log_probs(logits, batch)
    if model.combine == "single":
        want = zs[0] if spec.problem == "multilabel" else F.log_softmax(zs[0], -1)
    else:
        want = _paper_poe(zs, model.expert_weights(), spec.problem)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (
        f"{where}: combined output differs from the paper's PoE formula "
        f"(max |diff| {float((got - want).abs().max()):.3g})")

    # Every loss of the problem type reaches every expert and every trainable parameter.
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    kinds = LOSSES[spec.problem]
    for kind in kinds:
        which = "" if len(kinds) == 1 else f" (train.loss {kind!r})"
        loss = model.loss(logits, batch, kind=kind)
        assert loss.dim() == 0 and torch.isfinite(loss), f"{where}: loss must be a finite scalar{which}"
        grads = torch.autograd.grad(loss, zs + [p for _, p in params], allow_unused=True,
                                    retain_graph=True)
        for k, g in zip(logits, grads[:len(zs)]):
            assert g is not None and g.abs().sum() > 0, (
                f"{where}: no gradient reaches expert {k!r}{which}")
        dead = [n for (n, _), g in zip(params, grads[len(zs):]) if g is None]
        assert not dead, f"{where}: parameters get no gradient from the loss{which}: {dead[:5]}"

    # Missing modalities.
    model.eval()
    with torch.no_grad():
        full = model(batch)
        for m in spec.modality_names:
            present = {n: torch.ones(batch_size, dtype=torch.bool) for n in spec.modality_names}
            present[m][: batch_size // 2] = False
            mbatch = Batch(batch.inputs, batch.target, present)
            out = model(mbatch)
            lp = model.log_probs(out, mbatch)
            assert torch.isfinite(lp).all(), f"{where}: non-finite output with {m!r} missing"
            if model.combine == "poe":
                dropped = [k for k in out if model.expert_drops(k) and m in mods[k]]
                kept = [k for k in out if k not in dropped]
                if kept:
                    w = model.expert_weights()
                    ws = None if w is None else w[[list(out).index(k) for k in kept]]
                    ref = _paper_poe([out[k] for k in kept], ws, spec.problem)
                    rows = slice(0, batch_size // 2)
                    assert torch.allclose(lp[rows], ref[rows], atol=1e-5), (
                        f"{where}: with {m!r} missing, the output is not the product of the "
                        f"remaining experts {kept}")
                # Samples with everything present are unaffected by others' absence.
                rows = slice(batch_size // 2, None)
                assert torch.allclose(lp[rows], model.log_probs(full, batch)[rows], atol=1e-5), (
                    f"{where}: samples with all modalities changed when others lost {m!r}")

    # Determinism: same seed, same model, same outputs (fresh models: the one above has had
    # a training-mode forward that moved its BatchNorm statistics).
    first, again = _build(name, spec, options, seed).eval(), _build(name, spec, options, seed).eval()
    for (k, v), (_, w) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(v, w), f"{where}: same seed built different values for {k!r}"
    with torch.no_grad():
        a, b = first(batch), again(batch)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{where}: same seed gave different outputs for {k!r}"


def check_perturbation(name: str, modality=None, batch_size: int = 64, level: float = 0.6) -> None:
    """The rules every perturbation must follow (see :mod:`i2m2bench.perturbations`): level 0 is
    the identity; the input is never modified; same generator seed, same output; with
    ``fraction < 1`` the samples not selected come back bit for bit; the shape is kept."""
    from i2m2bench.perturbations import COMPLEX, PERTURBATIONS, apply_perturbation

    p = PERTURBATIONS.get(name)  # a Perturbation record: name, fn, kinds
    if (modality is None and p.kinds[0] == COMPLEX) or getattr(modality, "kind", None) == COMPLEX:
        return _check_complex_corruption(name, batch_size, level)
    if modality is None:
        kind = p.kinds[0]
        modality = ModalitySpec("m", EXAMPLE_SHAPES[kind], kind)
    where = f"perturbation {name!r} on {modality.kind} {modality.shape}"
    x = _random_input(modality, batch_size, torch.Generator().manual_seed(0))
    if modality.kind != "tokens":
        x = x + 0.1
    before = x.clone()

    def run(seed: int, lv: float = level, fraction: float = 1.0) -> torch.Tensor:
        return apply_perturbation(name, x, lv, torch.Generator().manual_seed(seed), modality, fraction)

    assert torch.equal(run(0, 0.0), x), f"{where}: level 0 is not the identity"
    a = run(1)
    assert torch.equal(x, before), f"{where}: the input batch was modified in place"
    assert not torch.equal(a, x), f"{where}: level {level} changed nothing"
    assert torch.equal(a, run(1)), f"{where}: the same seed gave different outputs"
    # With the same seed the perturbation draws the same values whatever the fraction, so every
    # sample of a fraction=0.5 run is either the full run's (selected) or the input's, bit for bit.
    part, full = run(2, fraction=0.5), run(2)
    as_x, as_full = (part == x).flatten(1).all(1), (part == full).flatten(1).all(1)
    assert bool((as_x | as_full).all()), (
        f"{where}: with fraction=0.5 some samples are neither perturbed nor returned unchanged "
        "(unselected samples must come back bit for bit)")
    assert 0 < int(as_x.sum()) < batch_size, f"{where}: fraction=0.5 did not select a subset"


def _check_complex_corruption(name: str, batch_size: int, level: float) -> None:
    """:func:`check_perturbation` for a corruption of a complex image (kind ``complex_image``):
    level 0 is the identity, the input is never modified, same seed same output, a complex
    result of the same shape."""
    from i2m2bench.perturbations import apply_complex_corruption

    g = torch.Generator().manual_seed(0)
    z = torch.polar(torch.rand((batch_size, 1, 12, 12), generator=g) + 0.1,
                    (torch.rand((batch_size, 1, 12, 12), generator=g) * 2 - 1) * 3.0)
    before = z.clone()
    where = f"corruption {name!r} of a complex image {tuple(z.shape)}"

    def run(seed: int, lv: float = level) -> torch.Tensor:
        return apply_complex_corruption(name, z, lv, torch.Generator().manual_seed(seed))

    assert run(0, 0.0) is z, f"{where}: level 0 is not the identity"
    a = run(1)
    assert torch.equal(z, before), f"{where}: the input batch was modified in place"
    assert a.is_complex() and a.shape == z.shape, f"{where}: returned {a.dtype} {tuple(a.shape)}"
    assert not torch.equal(a, z), f"{where}: level {level} changed nothing"
    assert torch.equal(a, run(1)), f"{where}: the same seed gave different outputs"
