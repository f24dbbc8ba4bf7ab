"""Per-sample predictions of a unit: ``<run dir>/predictions.npz``, written by the runner.

Every unit saves its model's combined output (``Fusion.log_probs``) on every protocol it was
evaluated on, with the targets of the splits they read, so that any metric can be recomputed
and methods compared pairwise (same samples, same order) without retraining. Evaluating more
protocols later (``_evaluate_more``) rewrites the file with the old and the new entries.

Format (a compressed numpy ``.npz``; read it with ``np.load(path, allow_pickle=False)`` or
:func:`load_predictions`):

=====================  =========================================================================
key                    value
=====================  =========================================================================
``format``             ``"i2m2bench-predictions/1"`` (0-d str)
``problem``            ``"multiclass"`` | ``"multilabel"`` | ``"soft-score"`` (0-d str)
``metrics``            (M,) str: the task's declared metrics, primary first
``labels``             (C,) str: the task's class / label names (may be empty)
``protocols``          (P,) str: the protocol keys, ``"val"`` (the selected checkpoint's
                       validation predictions) first when present, then ``"test"``,
                       ``"shift:<set>"``, ``"missing:<m>"``, ``"perturb:<m>:<kind>@<level>"``, ...
``splits``             (P,) str: the split each protocol reads: ``"val"``, ``"test"`` or
                       ``"shift:<set>"``
``pred/<protocol>``    (N, C) float32: log-probabilities (multiclass, soft-score) or Bernoulli
                       logits (multilabel), rows in the split's order
``target/<split>``     the split's targets as stored: (N,) int64 (multiclass), (N, L) 0/1
                       (multilabel), (N, C) scores in [0, 1] (soft-score)
``groups/<split>``     (N,) int64 sample groups, for splits that have them (consistency)
=====================  =========================================================================

Predictions are kept in float32, as computed, so a metric recomputed from the file equals the
stored score exactly (float16 could flip arg-max ties). For the embedded AV-MNIST suite that is
about 10 classes × 4 bytes × (test samples) per protocol, tens to hundreds of kB per unit
compressed.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i2m2bench.fileio import write_bytes_atomic

FILE = "predictions.npz"
FORMAT = "i2m2bench-predictions/1"


@dataclass
class Predictions:
    """A unit's predictions (see the module docstring for the file layout)."""

    problem: str
    metrics: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    pred: dict[str, np.ndarray] = field(default_factory=dict)  # protocol -> (N, C)
    split: dict[str, str] = field(default_factory=dict)  # protocol -> split key
    target: dict[str, np.ndarray] = field(default_factory=dict)  # split key -> targets
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # split key -> (N,) groups

    def add(self, protocol: str, split: str, pred: np.ndarray, target: np.ndarray,
            groups: np.ndarray | None = None) -> None:
        """Add (or replace) one protocol's predictions and its split's targets."""
        pred = np.asarray(pred, dtype=np.float32)
        if len(pred) != len(target):
            raise ValueError(f"protocol {protocol!r}: {len(pred)} predictions for {len(target)} "
                             f"targets of split {split!r}")
        self.pred[protocol] = pred
        self.split[protocol] = split
        self.target[split] = np.asarray(target)
        if groups is not None:
            self.groups[split] = np.asarray(groups, dtype=np.int64)

    def reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation ``(pred, target)`` -- the reference from which operating-point metrics
        take their threshold (:mod:`i2m2bench.metrics`) -- or None when the file has none."""
        if "val" not in self.pred:
            return None
        return self.pred["val"], self.target[self.split["val"]]

    def merged(self, newer: "Predictions") -> "Predictions":
        """These predictions with ``newer``'s added (``newer`` wins for the same protocol)."""
        out = Predictions(newer.problem, newer.metrics or self.metrics, newer.labels or self.labels,
                          {**self.pred, **newer.pred}, {**self.split, **newer.split},
                          {**self.target, **newer.target}, {**self.groups, **newer.groups})
        return out

    def only(self, protocols) -> "Predictions":
        """These predictions restricted to ``protocols`` (and the splits they read)."""
        keep = [p for p in self.pred if p in set(protocols)]
        splits = {self.split[p] for p in keep}
        return Predictions(self.problem, self.metrics, self.labels,
                           {p: self.pred[p] for p in keep}, {p: self.split[p] for p in keep},
                           {s: t for s, t in self.target.items() if s in splits},
                           {s: g for s, g in self.groups.items() if s in splits})

    def to_bytes(self) -> bytes:
        protocols = list(self.pred)
        arrays = {"format": np.array(FORMAT), "problem": np.array(self.problem),
                  "metrics": np.array(self.metrics, dtype=str),
                  "labels": np.array(self.labels, dtype=str),
                  "protocols": np.array(protocols, dtype=str),
                  "splits": np.array([self.split[p] for p in protocols], dtype=str)}
        arrays.update({f"pred/{p}": self.pred[p] for p in protocols})
        arrays.update({f"target/{s}": t for s, t in self.target.items()})
        arrays.update({f"groups/{s}": g for s, g in self.groups.items()})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()


def save_predictions(path: Path, predictions: Predictions) -> None:
    """Write ``predictions`` to ``path`` atomically (temporary file + rename)."""
    write_bytes_atomic(Path(path), predictions.to_bytes())


def load_predictions(path: Path) -> Predictions:
    """Read a predictions file (no pickles); ``ValueError`` naming the file when it is not one
    or cannot be read whole (truncated, a member missing)."""
    try:
        return _load(Path(path))
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the predictions ({type(exc).__name__}: "
                         f"{str(exc).strip(chr(34) + chr(39))})") from exc


def _load(path: Path) -> Predictions:
    with np.load(path, allow_pickle=False) as z:
        files = set(z.files)
        if "format" not in files or str(z["format"]) != FORMAT:
            raise ValueError(f"{path}: not an i2m2bench predictions file ({FORMAT})")
        protocols = [str(p) for p in z["protocols"]]
        splits = [str(s) for s in z["splits"]]
        out = Predictions(str(z["problem"]), tuple(str(m) for m in z["metrics"]),
                          tuple(str(lb) for lb in z["labels"]))
        for p, s in zip(protocols, splits):
            out.pred[p] = z[f"pred/{p}"]
            out.split[p] = s
            if s not in out.target:
                out.target[s] = z[f"target/{s}"]
                if f"groups/{s}" in files:
                    out.groups[s] = z[f"groups/{s}"]
    return out


__all__ = ["FILE", "FORMAT", "Predictions", "load_predictions", "save_predictions"]
