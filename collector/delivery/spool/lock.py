"""The per-spool delivery lock: one process delivers from a spool at a time.

It is an flock on `uploader.lock` in the spool folder, which the OS releases when the process
dies, even on SIGKILL; so a process that died holds nothing. Without fcntl (not POSIX) there is no
cross-process guard: the lock is always taken and nobody is seen delivering.
"""

from __future__ import annotations

import os
from pathlib import Path

from collector.errors import SpoolError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]  # absent on Windows; every use checks for None first


class DeliveryBusyError(SpoolError):
    """Another process (a `collector upload`, another run) is delivering from this spool."""


class DeliveryLock:
    """The lock file at `path`, taken by this process or not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_lock(self) -> bool:
        """Take the lock; False if another process has it. True at once if this one holds it."""
        if self._fd is not None:
            return True
        if fcntl is None:  # no cross-process guard
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def active(self) -> bool:
        """True while some process (this one included) holds the lock.

        The check takes a shared lock for an instant and gives it back at once.
        """
        if self._fd is not None:
            return True
        if fcntl is None:  # no lock to look at
            return False
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing releases the shared lock, if it was taken
        return False

    def unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the fd releases the flock
            self._fd = None
