"""The content chain of prepared data, one mechanism for every family that prepares files
(FastMRI's cache, the VQA-VS and NLVR2 features, MIMIC's ``mimic.npz``).

A prepared folder is only as good as the files it was made from. Each prepare therefore records,
in the manifest it writes:

* **its inputs** (:func:`record_inputs`): every file it read -- raw volumes, slice files, csv and
  JSON annotations, images -- by its path relative to the data root, with its size, its
  modification time and the sha256 of its bytes; and the paths it looked for and did not find
  (``absent``: a reviewed FastMRI volume not on disk), whose appearance changes what prepare
  would write;
* **what made it**: the backbone of a feature extraction (:func:`folder_record`: the sha256 of
  every file of the model folder, weights and config) and every setting;
* **its own arrays** (:mod:`i2m2bench.data.common.manifest`: shape, dtype, sha256 per file);
* **a seal** (:func:`seal`): ``content_sha256``, the sha256 of all of the above in canonical JSON,
  leaving out only what does not change the content (:data:`VOLATILE`: absolute paths and file
  times). The seal is the prepared data's identity: it is the task's data checksum, hence part
  of every unit hash, so the same data prepared on two machines give the same units, and other
  data give other units.

A loader checks, before any unit runs (:func:`check_manifest`):

1. the seal: a manifest edited by hand (``mag_ref`` multiplied, a file entry changed) no longer
   matches its own ``content_sha256`` and is refused;
2. the inputs that are still on disk (:func:`inputs_problem`): a different size, or different
   bytes, refuses the cache, naming the file and the ``prepare`` to rerun. At the ``quick``
   level a file whose size and modification time are those recorded is taken as unchanged
   (a ``stat``: 0.55 s per 100,000 files with a warm page cache, measured by
   ``benchmarks/test_content_chain.py``); one whose time changed is hashed again (a
   copy without its times costs a read, and passes when the bytes are the same). ``full``
   hashes every input. An input that is no longer on disk is not checked -- the raw k-space may
   be deleted once prepared -- and the count of those is reported by ``verify``; a path
   recorded ``absent`` that now exists refuses the cache.

Writing is all-or-nothing (:func:`staged`): a prepare writes into a hidden folder beside the
target and renames it onto the target only when complete, so a killed prepare never leaves a
half-written or mixed folder under the target's name, and the old content stays whole until the
new one replaces it. One prepare of a target runs at a time (an exclusive lock beside it); at its
start, the temporary folders of killed prepares of the same target are removed. A resumable
prepare (feature extraction) keeps one partial folder whose ``key.json`` records what it is
being made from (inputs, backbone, settings); a resume made from anything else discards it and
starts over, so rows from two backbones or two sets of annotations never meet. A target that is
a symlink to a folder is written where the link points; the link stays.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from i2m2bench.data.base import DataError, file_sha256

#: Manifest keys left out of the seal: where the files were and when they were written, not
#: what they hold.
VOLATILE = frozenset({"source", "mtime_ns", "path", "content_sha256"})
KEY_FILE = "key.json"
#: A write that failed for want of room or permission (reported as one line naming the file).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


# ------------------------------------------------------------------------------ inputs
def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators); absolute when it is not under it."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return str(Path(path).resolve()) if rel == ".." or rel.startswith("../") else Path(rel).as_posix()


def record_inputs(root: str | os.PathLike, paths: Iterable[str | os.PathLike],
                  absent: Iterable[str | os.PathLike] = ()) -> dict:
    """The record of a prepare's inputs: ``{"files": {path relative to root: {"bytes",
    "mtime_ns", "sha256"}}, "absent": [relative paths]}``, files in sorted order. A file that
    cannot be read is a DataError naming it."""
    root = Path(root)
    files = {}
    for p in sorted({Path(p) for p in paths}):
        try:
            st = os.stat(p)
            digest = file_sha256(p)
        except OSError as exc:
            raise DataError(f"{p}: cannot read it ({exc.strerror or exc}); it is an input of "
                            "the prepare") from exc
        files[_rel(p, root)] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return {"files": files, "absent": sorted({_rel(Path(a), root) for a in absent})}


def inputs_digest(record: dict) -> str:
    """The sha256 of a record's content (paths, sizes, sha256s; not the times)."""
    return _canonical_sha256(record)


def inputs_problem(root: str | os.PathLike, record: dict, level: str = "quick"
                   ) -> tuple[str | None, int]:
    """(the first input that differs from ``record`` -- ``"<path>: <what>"`` -- or None, the
    number of recorded files no longer on disk). ``level``: ``quick`` hashes only files whose
    size matches and whose modification time does not; ``full`` hashes every file; ``none``
    checks nothing."""
    root = Path(root)
    if level == "none":
        return None, 0
    gone = 0
    for rel, entry in record.get("files", {}).items():
        path = root / rel
        try:
            st = os.stat(path)
        except FileNotFoundError:
            gone += 1
            continue
        except OSError as exc:
            return f"{path}: cannot read it ({exc.strerror or exc})", gone
        if st.st_size != entry["bytes"]:
            return f"{path}: {st.st_size} bytes, but it had {entry['bytes']} when prepared", gone
        if level == "full" or st.st_mtime_ns != entry["mtime_ns"]:
            try:
                digest = file_sha256(path)
            except OSError as exc:
                return f"{path}: cannot read it ({exc.strerror or exc})", gone
            if digest != entry["sha256"]:
                return (f"{path}: its bytes changed since it was prepared (sha256 "
                        f"{digest[:12]}..., recorded {entry['sha256'][:12]}...)"), gone
    for rel in record.get("absent", []):
        if os.path.lexists(root / rel):
            return f"{root / rel}: on disk now, but absent when prepared", gone
    return None, gone


def inputs_report(record: dict, gone: int) -> str:
    """``its N inputs``, or how many of them were still on disk to check (for verify's line)."""
    n = len(record.get("files", {}))
    if gone:
        return f"the {n - gone} of its {n} inputs still on disk ({gone} no longer there, not checked)"
    return f"its {n} inputs"


# ------------------------------------------------------------------------------ what made it
def folder_record(folder: str | os.PathLike) -> dict:
    """A model folder's record: ``{"path", "files": {relative path: sha256}, "sha256"}`` over
    every regular file under it (weights, config, processor files), in sorted order."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            files[p.relative_to(folder).as_posix()] = file_sha256(p)
    return {"path": str(folder), "files": files, "sha256": _canonical_sha256(files)}


# ------------------------------------------------------------------------------ the seal
def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _canonical_sha256(value) -> str:
    text = json.dumps(_strip(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(manifest: dict) -> str:
    """The seal of ``manifest``: sha256 of its canonical JSON without the :data:`VOLATILE` keys."""
    return _canonical_sha256(manifest)


def seal(manifest: dict) -> dict:
    """``manifest`` with its ``content_sha256`` set (in place; returned)."""
    manifest["content_sha256"] = content_sha256(manifest)
    return manifest


def check_manifest(manifest: dict, mpath: Path, root: str | os.PathLike, level: str,
                   hint: str) -> int:
    """Check a parsed manifest's seal and its recorded inputs under ``root`` at ``level``; a
    DataError naming the manifest or the input and saying ``hint`` (the prepare to rerun)
    otherwise. Returns the number of recorded inputs no longer on disk (not checked)."""
    recorded = manifest.get("content_sha256")
    if not isinstance(recorded, str) or "inputs" not in manifest:
        raise DataError(f"{mpath}: records no inputs or content_sha256 (prepared by an "
                        f"i2m2bench without the content chain, or written by hand), so it "
                        f"cannot be checked against the files it came from; {hint}")
    if content_sha256(manifest) != recorded:
        raise DataError(f"{mpath}: its content no longer matches its own content_sha256 (the "
                        f"manifest was edited after prepare); {hint}")
    problem, gone = inputs_problem(root, manifest["inputs"], level)
    if problem is not None:
        raise DataError(f"{problem}; the prepared data in {mpath.parent} were made from the "
                        f"earlier file and are stale: {hint}")
    return gone


# ------------------------------------------------------------------------------ writing
def _swap(tmp: Path, target: Path) -> None:
    """Rename the complete ``tmp`` onto ``target`` (a real path, not a link), replacing (then
    deleting) an old ``target``."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def real_target(target: str | os.PathLike) -> Path:
    """Where ``target`` is written: the folder a symlink points to (the link is kept), else
    ``target`` itself."""
    target = Path(target).expanduser()
    if target.is_symlink():
        return Path(os.path.realpath(target))
    return target


def _leftovers(parent: Path, name: str) -> list[Path]:
    return sorted(p for pattern in (f".{name}.prepare-*", f".{name}.old-*")
                  for p in parent.glob(pattern))


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


@contextmanager
def staged(target: str | os.PathLike, what: str, log: Callable[[str], object] = print,
           resume_key: dict | None = None) -> Iterator[Path]:
    """Write ``target`` (a folder) all-or-nothing: yields an empty hidden folder beside it (or,
    with ``resume_key``, the kept partial folder of an interrupted prepare made from the same
    key, else a fresh one) to write into; on a normal exit renames it onto ``target``. On an
    exception the temporary folder is removed (a resumable one is kept for the next run) and
    ``target`` is as it was. One prepare of ``target`` at a time: a second one is a DataError
    naming the lock. ``what`` names the folder in messages."""
    real = real_target(target)
    parent, name = real.parent, real.name
    lock_path = parent / f".{name}.lock"
    fd = _lock(parent, lock_path, real, what)
    try:
        # we hold the lock: the temporary folders of this target are leftovers of killed runs
        for old in _leftovers(parent, name):
            size = _size(old)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
            log(f"removed {old} ({size / 2**20:.1f} MiB), left by an interrupted prepare")
        if resume_key is None:
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.prepare-", dir=parent))
            keep_on_error = False
        else:
            tmp = parent / f".{name}.partial"
            keep_on_error = True
            key_path = tmp / KEY_FILE
            if tmp.exists():
                try:
                    old_key = json.loads(key_path.read_text())
                except (OSError, ValueError):
                    old_key = None
                if old_key != resume_key:
                    shutil.rmtree(tmp)
                    log(f"discarded {tmp}: an interrupted prepare made from other inputs, "
                        "backbone or settings (nothing of it is mixed into this one)")
            tmp.mkdir(exist_ok=True)
            if not key_path.exists():
                key_path.write_text(json.dumps(resume_key, sort_keys=True))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        try:
            yield tmp
            if resume_key is not None:
                (tmp / KEY_FILE).unlink(missing_ok=True)
            _swap(tmp, real)
        except BaseException as exc:
            if not keep_on_error:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM:  # one line naming the file
                where = getattr(exc, "filename", None) or tmp
                kept = (f"; the finished part is kept in {tmp} and the next prepare continues it"
                        if keep_on_error else "")
                raise DataError(f"{where}: cannot write {what} ({exc.strerror or exc}); {real} is "
                                f"as it was{kept}") from exc
            raise
    finally:
        lock_path.unlink(missing_ok=True)  # while still held: a waiter re-checks the inode
        os.close(fd)


def _lock(parent: Path, lock_path: Path, real: Path, what: str) -> int:
    """An exclusive lock on ``lock_path`` (created), held through the returned descriptor; a
    DataError when another prepare holds it. The file is removed when the prepare ends, so the
    lock is retaken until the descriptor and the path are the same file."""
    while True:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666)
        except OSError as exc:
            raise DataError(f"{parent}: cannot write there ({exc.strerror or exc}); expected a "
                            f"writable folder for {what}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataError(f"{real}: another prepare is writing {what} (it holds "
                                f"{lock_path}); wait for it to finish") from exc
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed it as we took it: take the new one


__all__ = ["KEY_FILE", "VOLATILE", "check_manifest", "content_sha256", "folder_record",
           "inputs_digest", "inputs_problem", "inputs_report", "real_target", "record_inputs", "seal", "staged"]
