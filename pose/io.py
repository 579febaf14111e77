"""Atomic file writes: a reader (or a run killed mid-write) never sees a half-written file.

Everything pose writes that a user keeps (checkpoints, ``results.json``, ``metrics.json``,
predictions, exported models, converted annotations) goes through :func:`atomic_file`: the data
goes to a temporary file beside the target, is flushed to the disk, and replaces the target in
one ``os.replace``. A SIGKILL, a full disk or a permission error leaves the previous file as it
was; an ``OSError`` comes back as :class:`FileWriteError`, one line naming the path. This module
imports nothing of pose (``pose.models`` and ``pose.engine`` both use it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMPORARY_SUFFIX = ".tmp"


class FileWriteError(OSError):
    """A file could not be written (disk full, permission, missing folder); the message names
    it. The file that was there before, if any, is unchanged."""


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for its content in progress: ``.<name>.<hex>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def _write_error(path: Path, error: OSError) -> FileWriteError:
    return FileWriteError(f"cannot write {path}: {error.strerror or error} (any earlier "
                          f"{path.name} is unchanged)")


def _sync_folder(folder: Path) -> None:
    """Make the rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block ends normally.

    ``mode``: "wb" or "w" (text, UTF-8). The file gets the permissions a new file gets (the
    umask's). On an exception in the block (or while writing) the temporary file is removed and
    ``path`` is left as it was; an ``OSError`` is raised again as :class:`FileWriteError`
    naming ``path``. The folder must exist.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes whole files: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    temporary = temporary_name(path)
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _write_error(path, error) from error
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, FileWriteError):
            raise _write_error(path, error) from error
        raise
    _sync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "w") as handle:
        handle.write(text)
