"""The full-disk reserve (`spool.reserve`) and what a full disk made wait in memory.

The reserve is 256 kB of real blocks next to spool.db. When the disk is full and a delivery record
(a 201) or a count held in memory must be written, it is deleted and SQLite writes into its space;
it is made again when space returns. The uploader sends nothing while it is missing: a 201 whose
record cannot be written would make the next `upload` send that item again.

What could not be written even so is held in memory (`Held`) by the process: delivery records
(the item is no longer handed out, nor counted as pending) and captures' ends (the local record's
end time and counts), written as soon as a write succeeds, or at `close` with the reserve's space.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.delivery.local_record import LocalRecord
from collector.errors import SpoolError

RESERVE_BYTES = 256 * 1024  # room for the held counts and delivery records, a WAL frame each


class Reserve:
    """The reserve file at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self) -> bool:
        """Make the reserve if it is missing; True when it is there."""
        path = self.path
        try:
            if path.exists() and path.stat().st_size >= RESERVE_BYTES:
                return True
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, 0)
                written = 0
                while written < RESERVE_BYTES:  # real blocks, not a sparse file; a write may be short
                    written += os.write(fd, b"\0" * (RESERVE_BYTES - written))
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:  # no room for it now; tried again before the next send and at the next open
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return False

    def use(self) -> bool:
        """Give the reserve's space to SQLite (the disk is full); False if there is none."""
        try:
            self.path.unlink()
            return True
        except OSError:
            return False


class Held:
    """Delivery records and captures' ends a full disk refused, until a write succeeds."""

    def __init__(self) -> None:
        self.deliveries: dict[int, str] = {}  # 201s: item id -> evidence id
        self.ends: dict[str, tuple[int, dict[str, Any]]] = {}  # capture_id -> (ended_ms, counts)

    def __len__(self) -> int:
        return len(self.deliveries) + len(self.ends)

    def flush(self, write_delivery: Callable[[int, str], None], record: LocalRecord) -> bool:
        """Write what is held (`write_delivery(item_id, evidence_id)` raises SpoolError when it
        cannot); True when nothing is left."""
        while self.deliveries:
            item_id, evidence_id = next(iter(self.deliveries.items()))
            try:
                write_delivery(item_id, evidence_id)
            except SpoolError:
                return False
            del self.deliveries[item_id]
        while self.ends:
            capture_id, (ended_ms, counts) = next(iter(self.ends.items()))
            try:
                record.end_capture(capture_id, ended_ms, counts)
            except (OSError, sqlite3.Error):
                return False
            del self.ends[capture_id]
        return True
