"""Evaluation protocols, run by the harness after training, the same way for every method.

``suite.protocols`` (gin) lists them; each becomes one or more result rows:

=============================  ===========================================================
``test``                       in distribution
``shift:<name>`` / ``shift:*`` a shift test set of the dataset (``*``: each of them)
``missing:<m>`` / ``missing:*`` modality ``m`` absent for every test sample (``*``: each)
                               -- a derived input (``ModalitySpec.derived_from``) is absent
                               with any modality it is derived from, never on its own
``missing_rate:<p>``           each modality independently drawn absent with probability p, at
                               least one present per sample (a sample that drew "all absent"
                               keeps one modality chosen uniformly at random), so with M
                               modalities each is absent with probability p − p^M / M
``perturb:<m>:<kind>``         perturbation ``kind`` (``PERTURBATIONS``) of modality ``m`` at
                               every level of ``suite.levels`` (or ``perturb:<m>:<kind>@0.5,1``)
``perturb:complex:<kind>``     a corruption of the complex image two modalities are read from
                               (``TaskSpec.complex_image``: FastMRI's magnitude and phase),
                               applied before they are split, so both see the same corruption
                               (``kind``: a ``complex_image`` perturbation, e.g. ``ghosting``)
=============================  ===========================================================

Missing inputs reach the model only as the batch's availability mask (``Batch.present``);
what to do with them — drop experts or impute inputs — is the strategy's business, never the
harness's. Every random draw comes from a generator seeded by (unit seed, protocol, level,
batch start), so a protocol's result is reproducible. Curves (``perturb`` at several levels, and
``missing_rate`` at several rates) start at level 0 = the in-distribution test score.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch

from i2m2bench.perturbations import (PerturbationError, apply_complex_corruption,
                                     apply_perturbation, check_applicable, complex_corruptions)
from i2m2bench.types import Batch, Task, derive_presence

DEFAULT_LEVELS = (0.25, 0.5, 0.75, 1.0)


class ProtocolError(ValueError):
    """A protocol string that names nothing the task has; the message says what exists."""


@dataclass(frozen=True)
class Protocol:
    key: str  # the result row's ``protocol``
    split: str = "test"  # "test" or a shift-set name
    curve: str | None = None  # curve this point belongs to ("perturb:audio:snr", "missing_rate")
    level: float | None = None
    missing: tuple[str, ...] = ()
    rate: float | None = None
    perturb: tuple[str, str] | None = None  # (modality, kind)

    @property
    def kind(self) -> str:
        """``test``, ``shift``, ``missing``, ``missing_rate`` or ``perturb`` (stored with each
        score, so that no reader parses ``key``)."""
        if self.missing:
            return "missing"
        if self.rate is not None:
            return "missing_rate"
        if self.perturb:
            return "perturb"
        return "test" if self.split == "test" else "shift"

    @property
    def robustness(self) -> bool:
        """Whether this is one of the robustness protocols (not test / shift sets)."""
        return bool(self.missing or self.rate is not None or self.perturb)

    def transform(self, task: Task, seed: int) -> Callable[[Batch, int], Batch] | None:
        """``fn(batch, start) -> batch`` applying this protocol to a test batch, or None."""
        if not self.robustness:
            return None
        spec = task.spec
        names = spec.source_modalities  # derived inputs follow their sources (derive_presence)

        def gen_for(batch: Batch, start: int) -> torch.Generator:
            tag = f"{seed}|{self.key}|{start}".encode()
            return torch.Generator(device=batch.target.device).manual_seed(zlib.crc32(tag))

        def fn(batch: Batch, start: int) -> Batch:
            b, dev = len(batch), batch.target.device
            if self.missing:
                present = {m: torch.full((b,), m not in self.missing, dtype=torch.bool, device=dev)
                           for m in names}
                return Batch(batch.inputs, batch.target, derive_presence(spec, present))
            gen = gen_for(batch, start)
            if self.rate is not None:
                absent = torch.rand((b, len(names)), generator=gen, device=dev) < self.rate
                keep = torch.randint(len(names), (b,), generator=gen, device=dev)
                none_left = absent.all(dim=1)
                absent[none_left, keep[none_left]] = False
                return Batch(batch.inputs, batch.target,
                             derive_presence(spec, {m: ~absent[:, i] for i, m in enumerate(names)}))
            m, kind = self.perturb
            if m == COMPLEX_TARGET:
                return Batch(corrupt_complex(spec, batch.inputs, kind, self.level, gen),
                             batch.target, batch.present)
            x = apply_perturbation(kind, batch.inputs[m], self.level, gen, task.spec.modality(m))
            return Batch({**batch.inputs, m: x}, batch.target, batch.present)

        return fn


#: The protocol's name for the complex image of ``TaskSpec.complex_image``.
COMPLEX_TARGET = "complex"


def corrupt_complex(spec, inputs: dict, kind: str, level: float, gen: torch.Generator) -> dict:
    """``inputs`` with the two modalities of ``spec.complex_image`` replaced by those of their
    complex image corrupted by ``kind`` at ``level`` (model inputs: the polar form's magnitude
    and phase in radians, or the real and imaginary parts)."""
    form, a, b = spec.complex_image
    xa, xb = inputs[a].float(), inputs[b].float()
    z = torch.polar(xa, xb) if form == "polar" else torch.complex(xa, xb)
    out = apply_complex_corruption(kind, z, level, gen)
    na, nb = (out.abs(), out.angle()) if form == "polar" else (out.real, out.imag)
    return {**inputs, a: na.to(inputs[a].dtype), b: nb.to(inputs[b].dtype)}


def _complex_curve(p: str, kind: str, at: str, levels, task: Task) -> list[Protocol]:
    spec = task.spec
    if not spec.complex_image:
        raise ProtocolError(f"suite.protocols {p!r}: task {spec.name!r} declares no complex "
                            "image (TaskSpec.complex_image) for 'perturb:complex:<kind>'")
    if kind not in complex_corruptions():
        raise ProtocolError(f"suite.protocols {p!r}: {kind!r} is no corruption of a complex "
                            f"image; those are {', '.join(complex_corruptions())}")
    for m in spec.complex_image[1:]:
        ms = spec.modality(m)
        if (ms.offset, ms.mean, ms.std) != (0.0, None, None):
            raise ProtocolError(f"suite.protocols {p!r}: modality {m!r} is normalised beyond a "
                                "scale (offset, mean or std), so its complex image cannot be "
                                "formed from the model inputs")
    lv = [_level(t, f"suite.protocols {p!r}") for t in at.split(",")] if at else \
        [_level(str(t), "suite.levels") for t in levels]
    curve = f"perturb:{COMPLEX_TARGET}:{kind}"
    return [Protocol(f"{curve}@{lvl:g}", curve=curve, level=lvl, perturb=(COMPLEX_TARGET, kind))
            for lvl in lv]


def _level(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ProtocolError(f"{where}: {text!r} is not a number") from None
    if not 0.0 < v <= 1.0:
        raise ProtocolError(f"{where}: level/rate must be in (0, 1] (0 is the test score); got {v}")
    return v


def expand(specs: list[str], task: Task, levels=DEFAULT_LEVELS) -> list[Protocol]:
    """Parse ``suite.protocols`` against the task (its shift sets and modalities)."""
    names = task.spec.modality_names
    sources = task.spec.source_modalities
    out: list[Protocol] = []

    def modality(m: str, p: str, derived_ok: bool = True) -> list[str]:
        if m == "*":
            return list(names if derived_ok else sources)
        if m not in names:
            raise ProtocolError(f"suite.protocols: {p!r} names no modality of {task.spec.name!r}; "
                                f"it has {', '.join(names)}")
        if not derived_ok and m not in sources:
            raise ProtocolError(f"suite.protocols: {p!r}: {m!r} is derived from "
                                f"{', '.join(task.spec.modality(m).derived_from)} and is absent "
                                f"exactly when one of them is; remove those instead")
        return [m]

    for p in specs:
        head, _, rest = str(p).partition(":")
        if p == "test":
            out.append(Protocol("test"))
        elif head == "shift" and rest == "*":
            out += [Protocol(f"shift:{s}", split=s) for s in task.shifts]
        elif head == "shift":
            if rest not in task.shifts:
                raise ProtocolError(f"suite.protocols: {p!r} names no shift set of "
                                    f"{task.spec.name!r}; it has {sorted(task.shifts)}")
            out.append(Protocol(p, split=rest))
        elif head == "missing" and rest:
            out += [Protocol(f"missing:{m}", missing=(m,)) for m in modality(rest, p, False)]
        elif head == "missing_rate" and rest:
            r = _level(rest, f"suite.protocols {p!r}")
            out.append(Protocol(f"missing_rate:{r:g}", curve="missing_rate", level=r, rate=r))
        elif head == "perturb" and rest.count(":") == 1 and rest.startswith(COMPLEX_TARGET + ":"):
            target, _, at = rest.partition("@")
            out += _complex_curve(p, target.split(":")[1], at, levels, task)
        elif head == "perturb" and rest.count(":") == 1:
            target, _, at = rest.partition("@")
            m, kind = target.split(":")
            lv = [_level(t, f"suite.protocols {p!r}") for t in at.split(",")] if at else \
                [_level(str(t), "suite.levels") for t in levels]
            for mm in modality(m, p):
                try:
                    check_applicable(kind, task.spec.modality(mm))
                except (PerturbationError, KeyError) as exc:
                    raise ProtocolError(f"suite.protocols {p!r}: {exc}") from None
                curve = f"perturb:{mm}:{kind}"
                out += [Protocol(f"{curve}@{lvl:g}", curve=curve, level=lvl, perturb=(mm, kind))
                        for lvl in lv]
        else:
            raise ProtocolError(
                f"suite.protocols: unknown protocol {p!r}; expected 'test', 'shift:*', "
                "'shift:<name>', 'missing:<modality>' (or 'missing:*'), 'missing_rate:<p>' or "
                "'perturb:<modality>:<kind>[@l1,l2,...]' (or 'perturb:complex:<kind>' on a task "
                "with a complex image)")
    unique = {}
    for proto in out:
        unique.setdefault(proto.key, proto)
    return list(unique.values())
