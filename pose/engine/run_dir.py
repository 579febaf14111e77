"""The run folder of an entry point: one run at a time in it, nothing left by a refused run.

Hydra makes the run folder (``hydra.run.dir``) before the entry point's code starts, so a run
refused at start-up (a missing dataset, an unreadable checkpoint, a folder that holds another
run) would leave it behind, with the ``log.txt`` and ``config.yaml`` written meanwhile.
:class:`RunFolder` records whether this run made the folder and what was in it; when the run
stops with an error before :meth:`RunFolder.keep` (training or evaluation has started), it
removes what the run wrote (what was not there before and was written during this run) and
then the folder, if this run made it and it is empty. A folder that existed is never removed;
in one it did not make, a run removes only while it holds the folder's lock.

:meth:`RunFolder.claim` takes the folder's lock (``.pose.lock``, holding the pid, host and start
time): a second run pointed at the same folder is refused rather than interleaved. The lock is
an ``flock`` on that file, which the kernel drops when its process dies, so the lock of a killed
run is stale and taken over; the file goes when the run ends. Claiming also removes the
temporary files of writes a killed run left unfinished (:mod:`pose.io`).

Usage (rank 0 claims; other ranks of a distributed run neither claim nor remove)::

    with RunFolder(output_dir) as folder:    # first thing in the task function
        ...                                  # anything raised here removes what the run made
        folder.claim()                       # rank 0, before checking the folder's content
        ...
        folder.keep()                        # training starts: from here everything stays
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

# When this process started, as far as the run folder is concerned: the entry points import
# this module before Hydra makes their folder, so a folder made later was made by this run.
PROCESS_START = time.time()
LOCK_NAME = ".pose.lock"
# pose.io's temporary files (and those of the mkstemp-based writes before it).
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


# The lock files this process holds open. A forked child (a DataLoader worker) closes its copies
# at once: an flock belongs to the open file, so a worker outliving a killed run would hold it.
_HELD_LOCKS: set[int] = set()


def _forget_locks_in_child() -> None:
    for descriptor in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class RunFolderBusyError(FileExistsError):
    """Another run (alive) holds the run folder's lock."""


def made_during_this_run(path: Path) -> bool:
    """Whether the folder ``path`` was made by this process (Hydra makes it just before the
    entry point runs): it is empty and was last changed after this process started."""
    try:
        return not any(path.iterdir()) and path.stat().st_mtime >= PROCESS_START
    except OSError:
        return False


def _written_during_this_run(path: Path) -> bool:
    """Whether ``path``, and everything under it, was changed after this process started."""
    if not path.is_dir() or path.is_symlink():
        return os.lstat(path).st_mtime >= PROCESS_START
    for folder, _, names in os.walk(path):
        for name in (".", *names):
            try:
                if os.lstat(os.path.join(folder, name)).st_mtime < PROCESS_START:
                    return False
            except FileNotFoundError:
                continue
    return True


def _close_log_files(path: Path) -> None:
    """Close and drop the log handlers writing into ``path`` (log.txt) before it is removed."""
    for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values()):
        for handler in list(getattr(logger, "handlers", [])):
            filename = getattr(handler, "baseFilename", None)
            if filename and Path(filename).resolve().is_relative_to(path.resolve()):
                handler.close()
                logger.removeHandler(handler)


def _warn(message: str) -> None:
    """A warning to pose's log where it is set up, else to stderr (not to Hydra's root logger,
    which prints to stdout)."""
    logger = logging.getLogger("pose")
    if logger.handlers:
        logger.warning("%s", message)
    else:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunFolder:
    """The run folder of this run: its lock, and its removal when the run is refused.

    Args:
        path: the folder (Hydra's ``runtime.output_dir``); made when it does not exist.
        created: whether this run made it; None: decided by :func:`made_during_this_run`.
    """

    def __init__(self, path: str | Path, created: bool | None = None) -> None:
        self.path = Path(path)
        if created is None:
            created = not self.path.exists() or made_during_this_run(self.path)
        self.created = created
        self.path.mkdir(parents=True, exist_ok=True)
        self.kept = False
        self._lock_descriptor: int | None = None
        # What was there before this run: a refused run removes only what is not in it.
        self._entries_before = {entry.name for entry in self.path.iterdir()}

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    def keep(self) -> None:
        """From now on the folder stays, whatever happens (training or evaluation started; or
        this process is not the one that owns the folder)."""
        self.kept = True

    def claim(self) -> None:
        """Take the folder's lock, or raise :class:`RunFolderBusyError` naming the run that
        holds it; then remove the temporary files of unfinished writes."""
        for _ in range(10):  # a run ending lets go of the lock file while we open it: again
            descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._lock(descriptor)
                if not self._still_the_lock_file(descriptor):
                    os.close(descriptor)
                    continue
            except BaseException:
                os.close(descriptor)
                raise
            os.ftruncate(descriptor, 0)
            os.write(descriptor, (f"pid {os.getpid()} on host {socket.gethostname()} since "
                                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode())
            self._lock_descriptor = descriptor
            _HELD_LOCKS.add(descriptor)
            self._remove_unfinished_writes()
            return
        raise RunFolderBusyError(f"cannot take the lock {self.lock_file}: other runs keep "
                                 "taking it; nothing was changed")

    def _still_the_lock_file(self, descriptor: int) -> bool:
        try:
            return os.fstat(descriptor).st_ino == self.lock_file.stat().st_ino
        except FileNotFoundError:
            return False

    def _lock(self, descriptor: int) -> None:
        """flock the lock file, or raise :class:`RunFolderBusyError` saying who holds it."""
        holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            busy = error.errno in (errno.EAGAIN, errno.EACCES)
            if not busy and error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise
            if busy or self._holder_alive(holder):
                raise RunFolderBusyError(
                    f"{self.path} is in use by another run ({holder or 'its lock file'}: "
                    f"{self.lock_file}); nothing was changed. Wait for it to end, or choose "
                    "another folder with hydra.run.dir=...") from None
        if holder:  # the lock of a run that was killed: the kernel dropped its flock
            _warn(f"the run folder's lock was stale ({holder}, no longer running): taken over")

    @staticmethod
    def _holder_alive(holder: str) -> bool:
        """Where flock is not supported: whether the process the lock file names still runs
        (one on another host counts as alive)."""
        found = re.match(r"pid (\d+) on host (\S+)", holder)
        if not found:
            return False
        return found.group(2) != socket.gethostname() or _process_alive(int(found.group(1)))

    def _remove_unfinished_writes(self) -> None:
        for path in self.path.iterdir():
            if _TEMPORARY.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                _warn(f"removed {path}, the unfinished write of a run that was stopped")

    def release(self) -> None:
        """Let go of the lock (the lock file goes)."""
        if self._lock_descriptor is None:
            return
        with contextlib.suppress(OSError):
            self.lock_file.unlink()
        _HELD_LOCKS.discard(self._lock_descriptor)
        os.close(self._lock_descriptor)
        self._lock_descriptor = None

    def remove_if_refused(self) -> None:
        """After an error before :meth:`keep`: remove what this run wrote, when it is known to
        be this run's (the folder is one this run made, or this run holds its lock): the
        entries that were not there before and were written during this run; then the folder
        itself if this run made it and it is empty."""
        if self.kept or not (self.created or self._lock_descriptor is not None):
            return
        _close_log_files(self.path)
        for entry in self.path.iterdir():
            if (entry.name in self._entries_before or entry.name == LOCK_NAME
                    or not _written_during_this_run(entry)):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def __enter__(self) -> RunFolder:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None:
            self.remove_if_refused()  # while holding the lock: no other run writes meanwhile
        self.release()
        if error is not None and not self.kept and self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty
