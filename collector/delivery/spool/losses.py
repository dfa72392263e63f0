"""What is not on the server and no retry will bring there: the chunks the spool refused (counted
per capture, stream and reason in `drops`, in memory while a full disk refuses even that) and the
items kept as failed, reported as `Loss`es for the closing line and `collector status`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from collector.delivery.spool.items import FAILED
from collector.delivery.spool.store import Store

# Why chunks are not on the server, in the words of the closing line and `collector status`.
LOSS_REASONS = {
    "spool_full": "not saved: the spool's byte bound was reached",
    "spool_full_screens_paused": "not saved: the spool was over 90 % of its bound, screenshots paused",
    "disk_full": "not saved: the disk was full",
    "failed": "rejected for good (kept in the spool as failed)",
    "unreadable": "unreadable in the spool, set aside (kept as failed)",
}

# Refused chunk indexes kept per stream and reason (the count is always whole): enough to name them.
MAX_DROP_CHUNKS = 1000
_MERGE_CHUNKS = (
    "CASE WHEN excluded.chunks = '' OR LENGTH(chunks) - LENGTH(REPLACE(chunks, ',', '')) + 1 >= "
    f"{MAX_DROP_CHUNKS} THEN chunks WHEN chunks = '' THEN excluded.chunks "
    "ELSE chunks || ',' || excluded.chunks END"
)
COUNT_DROP = (
    "INSERT INTO drops (capture_id, stream_id, reason, count, last_ms, chunks)"
    " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (capture_id, stream_id, reason)"
    " DO UPDATE SET count = count + 1, last_ms = excluded.last_ms, chunks = " + _MERGE_CHUNKS
)
ADD_DROPS = (
    "INSERT INTO drops (capture_id, stream_id, reason, count, last_ms, chunks)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (capture_id, stream_id, reason)"
    " DO UPDATE SET count = count + excluded.count, last_ms = excluded.last_ms, chunks = " + _MERGE_CHUNKS
)
SELECT_DROPS = "SELECT capture_id, stream_id, reason, count, chunks FROM drops WHERE 1{only}"
SELECT_DROP_COUNT = "SELECT count FROM drops WHERE capture_id = ? AND stream_id = ? AND reason = ?"
DROPS_PER_STREAM = "SELECT capture_id, stream_id, SUM(count) FROM drops GROUP BY capture_id, stream_id"
# Set aside by the spool (`items.set_aside`) or rejected by the server: told apart by the message.
FAILED_PER_STREAM = (
    "SELECT capture_id, stream_id, unreadable, COUNT(*), GROUP_CONCAT(chunk_index),"
    " MAX(id) FROM (SELECT *, COALESCE(last_error LIKE 'unreadable in the spool%', 0)"
    f" AS unreadable FROM items WHERE state = '{FAILED}'{{only}})"
    " GROUP BY capture_id, stream_id, unreadable"
)

_Key = tuple[str, str, str]  # (capture_id, stream_id, reason)


@dataclass(frozen=True, slots=True)
class Loss:
    """`count` chunks of one stream that are not on the server, and why (a `LOSS_REASONS` key or
    the error of a failing disk). For `failed`, the chunk indexes and the last error too."""

    capture_id: str
    stream_id: str
    reason: str
    count: int
    chunks: tuple[int, ...] = ()
    message: str | None = None

    def describe(self) -> str:
        why = LOSS_REASONS.get(self.reason) or f"not saved: {self.reason}"
        text = f"{self.count} chunk(s) of {self.stream_id} {why}"
        if self.chunks:
            shown = ", ".join(map(str, self.chunks[:5])) + (", …" if len(self.chunks) > 5 else "")
            text += f" (chunk {shown})"
        if self.message:
            text += f": {self.message.rstrip('.')}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"capture_id": self.capture_id, "stream_id": self.stream_id, "reason": self.reason,
                "count": self.count, "chunks": list(self.chunks), "message": self.message}  # fmt: skip


class DropCounts:
    """The `drops` table, and the counts a full disk refused, held in memory until a write succeeds.

    Every method runs under the store's lock (the caller holds it).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.unsaved: dict[_Key, int] = {}
        self._unsaved_chunks: dict[_Key, list[int]] = {}

    def count(self, capture_id: str, stream_id: str, reason: str, chunk_index: int | None = None) -> int:
        """Count one refused chunk; returns the stream's count for that reason so far."""
        conn = self._store.conn
        key = (capture_id, stream_id, reason)
        chunks = "" if chunk_index is None else str(int(chunk_index))
        try:
            conn.execute(COUNT_DROP, (capture_id, stream_id, reason, self._store.now_ms(), chunks))
        except (OSError, sqlite3.Error):
            # The disk may be full: keep counting in memory, written with the next successful add.
            self.unsaved[key] = self.unsaved.get(key, 0) + 1
            if chunk_index is not None:
                self._unsaved_chunks.setdefault(key, []).append(int(chunk_index))
        row = conn.execute(SELECT_DROP_COUNT, key).fetchone()
        return (row[0] if row else 0) + self.unsaved.get(key, 0)

    def flush(self) -> bool:
        """Write the counts held in memory; True when none is left."""
        while self.unsaved:
            key, n = next(iter(self.unsaved.items()))
            chunks = ",".join(map(str, self._unsaved_chunks.get(key, [])[:MAX_DROP_CHUNKS]))
            try:
                self._store.conn.execute(ADD_DROPS, (*key, n, self._store.now_ms(), chunks))
            except (OSError, sqlite3.Error):
                return False
            del self.unsaved[key]
            self._unsaved_chunks.pop(key, None)
        return True

    def per_capture(self) -> tuple[dict[str, int], dict[str, set[str]]]:
        """Refused chunks per capture (written and held), and the streams they belong to."""
        drops: dict[str, int] = {}
        drop_streams: dict[str, set[str]] = {}
        for capture_id, stream_id, count in self._store.conn.execute(DROPS_PER_STREAM):
            drops[capture_id] = drops.get(capture_id, 0) + count
            drop_streams.setdefault(capture_id, set()).add(stream_id)
        for (capture_id, stream_id, _reason), count in self.unsaved.items():
            drops[capture_id] = drops.get(capture_id, 0) + count
            drop_streams.setdefault(capture_id, set()).add(stream_id)
        return drops, drop_streams

    def losses(self, capture_id: str | None = None) -> list[Loss]:
        """See `Spool.losses`."""
        conn = self._store.conn
        only = " AND capture_id = ?" if capture_id is not None else ""
        params = (capture_id,) if capture_id is not None else ()
        try:
            drops = conn.execute(SELECT_DROPS.format(only=only), params).fetchall()
            failed = conn.execute(FAILED_PER_STREAM.format(only=only), params).fetchall()
            last_errors = {
                item_id: message
                for item_id, message in conn.execute(
                    f"SELECT id, last_error FROM items WHERE id IN ({','.join('?' * len(failed))})",
                    [row[5] for row in failed],
                )
            }
        except sqlite3.Error as exc:
            raise self._store.read_error(exc) from None
        counts: dict[_Key, int] = {}
        indexes: dict[_Key, set[int]] = {}
        for cap, stream, reason, n, chunks in drops:
            counts[(cap, stream, reason)] = counts.get((cap, stream, reason), 0) + n
            indexes.setdefault((cap, stream, reason), set()).update(
                int(i) for i in str(chunks or "").split(",") if i.strip().isdigit()
            )
        for key, n in self.unsaved.items():
            if capture_id is None or key[0] == capture_id:
                counts[key] = counts.get(key, 0) + n
                indexes.setdefault(key, set()).update(self._unsaved_chunks.get(key, ()))
        out = [
            Loss(cap, stream, reason, n, tuple(sorted(indexes.get((cap, stream, reason), ()))))
            for (cap, stream, reason), n in sorted(counts.items())
        ]
        for cap, stream, unreadable, n, chunk_list, last_id in failed:
            chunk_indexes = tuple(sorted(int(i) for i in str(chunk_list or "").split(",") if i))
            reason = "unreadable" if unreadable else "failed"
            out.append(Loss(cap, stream, reason, n, chunk_indexes, last_errors.get(last_id)))
        return out
