"""SQLite mechanics of the spool, apart from its queue rules: one connection shared by every thread
under one re-entrant lock, the clock its rows are stamped with, and the errors its reads and writes
become (`SpoolError`, `SpoolFullError` on a full disk).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from collector.delivery.spool.schema import is_disk_full
from collector.errors import SpoolError, SpoolFullError


def _now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """The spool's connection and lock. Callers hold `lock` around anything that reads then writes."""

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self.conn = conn
        self.lock = threading.RLock()
        self.closed = False

    @staticmethod
    def now_ms() -> int:
        """Unix ms, the time every row is stamped with."""
        return _now_ms()

    def check_open(self) -> None:
        if self.closed:
            raise SpoolError(f"The spool at {self.root} is closed.")

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """The first column of the first row, as an int; `SpoolError` when it cannot be read."""
        with self.lock:
            self.check_open()
            try:
                return int(self.conn.execute(sql, params).fetchone()[0])
            except sqlite3.Error as exc:
                raise self.read_error(exc) from None

    def write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one statement; returns the rows it changed. `SpoolError` when it cannot be written."""
        try:
            return self.conn.execute(sql, params).rowcount
        except (OSError, sqlite3.Error) as exc:
            raise self.update_error(exc) from None

    def rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def read_error(self, exc: BaseException) -> SpoolError:
        return SpoolError(f"Cannot read the spool at {self.root}: {exc}.")

    def update_error(self, exc: BaseException) -> SpoolError:
        return SpoolError(f"Cannot update the spool at {self.root}: {exc}.")

    def transaction_error(self, exc: BaseException) -> SpoolError:
        """For a failed transaction: `SpoolFullError` on a full disk (the caller may wait for space)."""
        if is_disk_full(exc):
            return SpoolFullError(f"The disk holding the spool {self.root} is full: {exc}.")
        return self.update_error(exc)

    def close(self) -> None:
        self.closed = True
        self.conn.close()  # the last connection to close checkpoints and removes the WAL
