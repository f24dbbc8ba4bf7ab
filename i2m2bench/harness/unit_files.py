"""The files of one unit's run folder (``<out>/<board>[/<setting>]/<method>/<unit hash>/seed<seed>/``).

* ``model.pt`` — the selected checkpoint (:mod:`i2m2bench.harness.checkpoints`);
* ``operative_config.gin`` — gin's operative config of the run that trained it;
* ``unit.json`` — its settings, training history and the checkpoint's sha256;
* ``metrics.json`` — its scores (one per declared metric per protocol, plus ``val``), its figures,
  and the date, provenance and config hash of its stored records; written last, it marks the
  unit complete and is the truth the result store heals from;
* ``predictions.npz`` — the per-sample predictions of every protocol and of the selected
  checkpoint on ``val`` (format in :mod:`i2m2bench.predictions`);
* ``failed.json`` — left by a unit that failed (retried next run);
* ``unit.lock`` — held while a run works on the unit: runs sharing the folder wait for each other.

:class:`UnitFiles` reads and writes them; it knows nothing of training or of the result store.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Callable

from i2m2bench.fileio import is_temporary, locked, write_text_atomic
from i2m2bench.harness.checkpoints import load_checkpoint, recorded_digest, save_checkpoint
from i2m2bench.harness.store import unit_record_problem
from i2m2bench.predictions import FILE as PREDICTIONS_FILE
from i2m2bench.predictions import Predictions, load_predictions, save_predictions

METRICS = "metrics.json"
CHECKPOINT = "model.pt"
_VERIFIED: dict[tuple, str | None] = {}  # (predictions file, inode, ctime, size, scores) -> problem


class UnitFiles:
    """The files of one unit's run folder ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def metrics_path(self) -> Path:
        """``metrics.json``."""
        return self.folder / METRICS

    @property
    def checkpoint_path(self) -> Path:
        """``model.pt``."""
        return self.folder / CHECKPOINT

    @property
    def predictions_path(self) -> Path:
        """``predictions.npz``."""
        return self.folder / PREDICTIONS_FILE

    def lock(self, on_wait: Callable[[Path], object] | None = None):
        """The unit's lock (``unit.lock``), a context manager; ``on_wait(path)`` is called when
        another run holds it."""
        return locked(self.folder / "unit", on_wait=on_wait)

    def complete(self) -> bool:
        """Both ``metrics.json`` and ``model.pt`` exist (whether readable or not)."""
        return self.metrics_path.exists() and self.checkpoint_path.exists()

    # -- metrics.json ----------------------------------------------------------------------
    def metrics_problem(self) -> tuple[dict, str | None]:
        """(the unit's ``metrics.json``, None), or ({}, why it cannot be read)."""
        try:
            data = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except OSError as exc:
            return {}, exc.strerror or str(exc)
        except ValueError as exc:
            return {}, f"not JSON: {exc}"
        if not isinstance(data, dict) or not isinstance(data.get("scores"), list) \
                or not isinstance(data.get("info"), dict):
            return {}, "no scores list and info object"
        problem = unit_record_problem({"unit_hash": "", "method": "", "provenance": "", "seed": 0,
                                       "scores": data["scores"], "info": data["info"]})
        if problem:
            return {}, problem.replace("a unit record whose ", "")
        problem = self.evidence_problem(data["scores"])
        if problem:
            return {}, problem
        return data, None

    def evidence_problem(self, scores: list[dict]) -> str | None:
        """Why ``metrics.json``'s scores are not to be trusted, or None: each is recomputed from
        ``predictions.npz`` (:func:`i2m2bench.reporting.verify.scores_problem`), which must be
        there and say the same -- an edited score, or predictions of another unit, make the
        unit one to evaluate again from its checkpoint (no retraining), never rows to publish."""
        from i2m2bench.reporting.verify import scores_problem

        path = self.predictions_path
        try:
            st = path.stat()
        except OSError:
            return f"no {PREDICTIONS_FILE} beside it to verify its scores against"
        # a run asks for each unit's metrics more than once (planning, healing): verify once per
        # version of predictions.npz (a rewrite changes its ctime) and of the scores
        key = (str(path), st.st_ino, st.st_ctime_ns, st.st_size, json.dumps(scores, sort_keys=True))
        if key not in _VERIFIED:
            try:
                _VERIFIED[key] = scores_problem(scores, load_predictions(path), str(path))
            except ValueError as exc:
                _VERIFIED[key] = str(exc)
        return _VERIFIED[key]

    def read_metrics(self) -> dict:
        """A complete unit's ``metrics.json`` ({} when unreadable: the unit is then re-evaluated
        from its checkpoint)."""
        return self.metrics_problem()[0]

    def scores(self) -> dict[str, dict]:
        """Protocol key -> a stored score of it (the protocols ``metrics.json`` holds)."""
        return {s["protocol"]: s for s in self.read_metrics().get("scores", [])}

    def metrics_date(self) -> str:
        """The modification time of ``metrics.json``, as an ISO date (UTC, seconds)."""
        mtime = _dt.datetime.fromtimestamp(self.metrics_path.stat().st_mtime, _dt.timezone.utc)
        return mtime.isoformat(timespec="seconds")

    def write_metrics(self, scores: list[dict], info: dict, meta: dict) -> None:
        """Write ``metrics.json`` (last: it marks the unit complete): scores, figures, and the date
        and provenance of the unit's records (:func:`i2m2bench.harness.store.metrics_meta`), so
        that a lost or damaged results file is rebuilt from run directories with the rows'
        original dates."""
        write_text_atomic(self.metrics_path, json.dumps({"scores": scores, "info": info, **meta},
                                                        indent=1))

    # -- a (re)training --------------------------------------------------------------------
    def clear_for_training(self) -> None:
        """A (re)training starts incomplete: an earlier run's ``metrics.json`` and
        ``failed.json`` no longer stand (else a failed --force retrain would leave the old
        metrics, and the unit skipped), and temporary files left by a run killed mid-write
        go (the caller holds the unit's lock)."""
        for stale in (METRICS, "failed.json"):
            (self.folder / stale).unlink(missing_ok=True)
        for tmp in self.folder.glob(".*.tmp"):
            if is_temporary(tmp):
                tmp.unlink(missing_ok=True)

    def write_failure(self, unit_key: str, message: str) -> None:
        """``failed.json``: the unit failed with ``message``."""
        write_text_atomic(self.folder / "failed.json",
                          json.dumps({"unit": unit_key, "error": message}))

    def save_checkpoint(self, state: dict) -> str:
        """Write ``model.pt`` atomically; its sha256 (for ``unit.json``)."""
        return save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self) -> dict:
        """The state dict of ``model.pt`` (tensors only), refused when its digest is not the one
        ``unit.json`` recorded; raises what ``torch.load`` raises."""
        return load_checkpoint(self.checkpoint_path, recorded_digest(self.checkpoint_path))

    def write_operative_config(self, text: str) -> None:
        """``operative_config.gin``."""
        write_text_atomic(self.folder / "operative_config.gin", text)

    def write_unit_json(self, data: dict) -> None:
        """``unit.json``: the unit's settings and training history."""
        write_text_atomic(self.folder / "unit.json", json.dumps(data, indent=1, default=str))

    def history(self) -> list | None:
        """The training history of ``unit.json`` (None when unreadable)."""
        try:
            return json.loads((self.folder / "unit.json").read_text(encoding="utf-8"))["history"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- predictions.npz -------------------------------------------------------------------
    def save_predictions(self, new: Predictions, *, fresh: bool,
                         log: Callable[[str], None]) -> None:
        """Write ``predictions.npz``. ``fresh``: a new training (replace the file); else add
        ``new``'s protocols to what the file holds (an unreadable file is rewritten with the new
        protocols only, and ``log`` says so)."""
        path = self.predictions_path
        if not fresh and path.exists():
            try:
                new = load_predictions(path).merged(new)
            except (OSError, ValueError, KeyError) as exc:
                log(f"[i2m2bench] {path}: unreadable ({type(exc).__name__}: {exc}); rewriting "
                    "it with the new protocols only")
        save_predictions(path, new)


__all__ = ["CHECKPOINT", "METRICS", "UnitFiles"]
