"""Files written safely: atomically (temporary file + rename), under a lock, with ordinary
permissions. The lowest layer: used by the result store and by the renderers alike.

A temporary file is named ``.<name>.<pid>.<random>.tmp`` beside its target (``mkstemp``, so two
processes writing the same file at once never share one), and removed on any failure; a write
that fails raises :class:`WriteError`, one line naming the file and the cause (``No space left
on device``...), with the original ``errno``, and leaves the old file as it was.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"


class WriteError(OSError):
    """A file that could not be written (the old one, if any, is left as it was)."""

    def __init__(self, path: Path, cause: OSError | str, what: str = "", hint: str = "") -> None:
        reason = cause if isinstance(cause, str) else (cause.strerror or str(cause))
        super().__init__(f"{path}: cannot write {what or 'it'} ({reason}); "
                         + ("the old file is left as it was" if Path(path).exists() else
                            "nothing was written") + (f"; {hint}" if hint else ""))
        self.errno = getattr(cause, "errno", None)
        self.strerror = reason
        self.filename = str(path)

    def __str__(self) -> str:  # one line (OSError's own would repeat errno and path)
        return self.args[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` with the permissions an ordinary file gets
    (0644 under the default umask; ``mkstemp`` alone gives 0600). Its name carries this
    process's id and a random part: concurrent writers never collide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=TEMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is one of this module's temporary files (left behind by a killed
    process; safe to remove once nobody writes its folder)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def write_atomic(path: Path, write: Callable[[BinaryIO], object], what: str = "",
                 hint: str = "") -> None:
    """``write(fh)`` into a temporary file beside ``path``, then rename it onto ``path`` (never a
    half-written file; the temporary file is removed on any failure). An ``OSError`` (a full
    disk, a read-only folder) becomes a :class:`WriteError` naming ``path``; ``what`` names the
    file's role in that message, ``hint`` what to do about it."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = _temp_beside(path)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc, what, hint) from exc
        raise


def write_bytes_atomic(path: Path, data: bytes, what: str = "", hint: str = "") -> None:
    write_atomic(path, lambda fh: fh.write(data), what, hint)


def write_text_atomic(path: Path, text: str, what: str = "", hint: str = "") -> None:
    write_bytes_atomic(path, text.encode("utf-8"), what, hint)


@contextlib.contextmanager
def locked(path: Path, on_wait: Callable[[Path], object] | None = None):
    """Exclusive lock on ``<path>.lock`` (held across read-modify-write of ``path``).
    ``on_wait(lock file)`` is called once when another process holds it (then this one waits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(path) + ".lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                raise
            if on_wait is not None:
                on_wait(lock)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
