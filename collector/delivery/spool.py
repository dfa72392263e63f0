"""The durable on-disk spool: every chunk is written here before any network call.

Layout of the spool folder (0700; every file 0600):

    spool.db        SQLite in WAL mode: the index (`items`), the artifact bytes (`blobs`),
                    refused-chunk counters (`drops`) and small key/value state (`meta`).
    spool.db-wal    SQLite's write-ahead log; same permissions as spool.db.
    uploader.lock   held (flock) by the one process that is delivering from this spool.
    spool.reserve   256 kB of zeros, given up only when the disk is full and a delivery record or
                    a count held in memory must be written; made again when space returns. Nothing
                    is sent while it is missing, so every 201 can be recorded (none is sent twice).

Artifact bytes live inline in `blobs`, in the same transaction as their index row, so a crash
at any point leaves either a complete item or none (no orphan or half-written files to sweep).
Reads of the index never touch the blob pages, because they are in their own table.

Each item carries its full request (EvidenceCreate fields without `data`), so it can be re-sent
after a restart without the capture that made it. Its identity is (`metadata.capture_id`,
`metadata.stream_id`, `chunk_index`), unique in the spool.

States: `pending` -> `delivered` (after the server's 201: the row keeps the server's evidence id,
the bytes are purged) or `failed` (the server rejected it with validation_error; bytes kept, so
nothing is deleted). A pause reason (bad key, missing workspace) is kept in `meta` for `status`.

The spool is bounded by the bytes it holds (pending + failed). Above `screen_limit_ratio` of the
bound, screenshots (and other non-EEG chunks) are refused; at the bound, everything is refused.
Every refusal is counted per capture and stream and raised as `SpoolFullError` with one loud line.
A full disk (ENOSPC / SQLITE_FULL) is handled the same way.

The local record of delivered items (collector/delivery/local_record.py) lives in the same file;
its bytes count in the bound and are evicted, oldest first, before anything is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.api import redaction
from collector.core.evidence import EvidenceChunk
from collector.delivery.local_record import LocalRecord
from collector.errors import SpoolDamagedError, SpoolError, SpoolFullError

log = logging.getLogger("collector.delivery.spool")

DEFAULT_MAX_BYTES = 2_000_000_000
SCREEN_LIMIT_RATIO = 0.9
DB_NAME = "spool.db"
LOCK_NAME = "uploader.lock"
RESERVE_NAME = "spool.reserve"
RESERVE_BYTES = 256 * 1024  # room for the held counts and delivery records, a WAL frame each

# Types that must never be refused before the hard bound (EEG is small and irreplaceable).
_PRIORITY_TYPES = frozenset({"eeg", "tool"})
_SQLITE_FULL = 13
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26  # damaged file: exit 2, not 1
# Refused chunk indexes kept per stream and reason (the count is always whole): enough to name them.
MAX_DROP_CHUNKS = 1000
_MERGE_CHUNKS = (
    "CASE WHEN excluded.chunks = '' OR LENGTH(chunks) - LENGTH(REPLACE(chunks, ',', '')) + 1 >= "
    f"{MAX_DROP_CHUNKS} THEN chunks WHEN chunks = '' THEN excluded.chunks "
    "ELSE chunks || ',' || excluded.chunks END"
)
# A capture's session summary waits until nothing else of its capture is pending (posted last).
LAST_STREAM_IDS = ("session-summary",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    capture_id    TEXT    NOT NULL,
    stream_id     TEXT    NOT NULL,
    chunk_index   INTEGER NOT NULL,
    workspace_id  TEXT    NOT NULL,
    block_id      TEXT,
    type          TEXT    NOT NULL,
    request_json  TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
    created_ms    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    evidence_id   TEXT,
    done_ms       INTEGER,
    UNIQUE (capture_id, stream_id, chunk_index)
);
CREATE INDEX IF NOT EXISTS items_state ON items (state, id);
CREATE INDEX IF NOT EXISTS items_stream ON items (state, stream_id, id);
CREATE TABLE IF NOT EXISTS blobs (
    item_id INTEGER PRIMARY KEY,
    data    BLOB NOT NULL,
    sha256  TEXT
);
CREATE TABLE IF NOT EXISTS drops (
    capture_id TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    count      INTEGER NOT NULL,
    last_ms    INTEGER NOT NULL,
    chunks     TEXT NOT NULL DEFAULT '',  -- the refused chunk indexes, comma-separated (the first 1000)
    PRIMARY KEY (capture_id, stream_id, reason)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('stored_bytes', '0');
"""


class _Unreadable(Exception):
    """A spooled item that cannot be read back (damaged row, request or bytes)."""


class DuplicateChunkError(SpoolError):
    """A chunk with the same (capture_id, stream_id, chunk_index) is already in the spool."""


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """One spooled request, ready to be re-sent: `request` + base64(`data`) is an EvidenceCreate."""

    id: int
    workspace_id: str
    capture_id: str
    stream_id: str
    chunk_index: int
    type: str
    request: dict[str, Any]
    data: bytes = field(repr=False)
    attempts: int
    created_ms: int

    @property
    def stream(self) -> tuple[str, str]:
        return (self.capture_id, self.stream_id)

    @property
    def block_id(self) -> str | None:
        return self.request.get("block_id")

    @property
    def evidence(self) -> EvidenceChunk:
        """The typed record; ValueError when the stored request is not a valid one."""
        return EvidenceChunk.from_fields(self.request)


@dataclass(frozen=True, slots=True)
class CaptureStats:
    capture_id: str
    delivered: int
    pending: int
    failed: int
    dropped: int
    bytes: int  # bytes still held in the spool (pending + failed)
    oldest_pending_age_s: float | None
    last_error: str | None
    workspace_id: str | None
    streams: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "capture_id": self.capture_id,
            "workspace_id": self.workspace_id,
            "streams": list(self.streams),
            "delivered": self.delivered,
            "pending": self.pending,
            "failed": self.failed,
            "dropped": self.dropped,
            "bytes": self.bytes,
            "oldest_pending_age_s": self.oldest_pending_age_s,
            "last_error": self.last_error,
        }


# Why chunks are not on the server, in the words of the closing line and `collector status`.
LOSS_REASONS = {
    "spool_full": "not saved: the spool's byte bound was reached",
    "spool_full_screens_paused": "not saved: the spool was over 90 % of its bound, screenshots paused",
    "disk_full": "not saved: the disk was full",
    "failed": "rejected for good (kept in the spool as failed)",
    "unreadable": "unreadable in the spool, set aside (kept as failed)",
}


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


def damaged_advice(root: Path) -> str:
    """What to do with a spool whose database cannot be read (`collector doctor` says the same)."""
    return (
        f"Move the spool aside (`mv {root} {root}.damaged`) so a new one starts there, or choose another "
        f"with --spool DIR; its items may be recovered with `sqlite3 {root}.damaged/{DB_NAME} .recover`."
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)
    return False


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


class Spool:
    """Durable queue of evidence requests. Thread-safe: producers `add` while the uploader drains.

    Several processes may open the same spool (WAL readers never block the writer); only one of
    them should deliver, see `try_lock_delivery`.
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        screen_limit_ratio: float = SCREEN_LIMIT_RATIO,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes; {max_bytes!r} is invalid.")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.screen_limit_ratio = screen_limit_ratio
        self._lock = threading.RLock()
        self._unsaved_drops: dict[tuple[str, str, str], int] = {}
        self._unsaved_drop_chunks: dict[tuple[str, str, str], list[int]] = {}
        # 201s that arrived while the disk was full: item id -> evidence id, written when space allows.
        self._held_deliveries: dict[int, str] = {}
        # Captures' end and counts (local record) that a full disk refused: capture_id -> (ended_ms, counts).
        self._held_ends: dict[str, tuple[int, dict[str, Any]]] = {}
        self._lock_fd: int | None = None
        self._listeners: list[Callable[[], None]] = []
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            db_path = self.root / DB_NAME
            # Create the file 0600 ourselves: SQLite gives its -wal/-shm files the db's mode.
            os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(db_path, 0o600)
            self._conn = sqlite3.connect(db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise self._open_error(exc) from None
        try:
            # Set before the first table exists (later it is a no-op that still needs a write, which
            # a full disk refuses): lets `compact` give space back.
            if self._conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: each commit is fsynced, so an item that `add` returned survives a power cut,
            # not just a crash (NORMAL would only survive a process kill). Cost: ~1 fsync per chunk,
            # which the benchmark shows is far above the capture rate (a few chunks per second).
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            # A spool made before checksums / refused chunk indexes: add the columns.
            if "sha256" not in {row[1] for row in self._conn.execute("PRAGMA table_info(blobs)")}:
                self._conn.execute("ALTER TABLE blobs ADD COLUMN sha256 TEXT")
            if "chunks" not in {row[1] for row in self._conn.execute("PRAGMA table_info(drops)")}:
                self._conn.execute("ALTER TABLE drops ADD COLUMN chunks TEXT NOT NULL DEFAULT ''")
            self.record = LocalRecord(self._conn, self._lock)  # what stays after delivery (record.py)
            self.record.create_schema()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._open_error(exc) from None
        self._closed = False
        try:
            self.record.prune()
        except sqlite3.Error as exc:  # a full disk: the spool still reads, delivers and counts
            if not _is_disk_full(exc):
                self._conn.close()
                raise self._open_error(exc) from None
            log.debug("local record not pruned: %s", exc)
        self._make_reserve()
        from collector.delivery.interrupted import finish_interrupted

        finish_interrupted(self)  # captures whose process was killed: end time, counts, summary

    def _open_error(self, exc: BaseException) -> SpoolError:
        if _is_disk_full(exc):
            return SpoolFullError(
                f"SPOOL FULL: the disk holding the spool {self.root} is full; nothing can be saved. "
                "Free disk space, then run `collector upload`."
            )
        if getattr(exc, "sqlite_errorcode", None) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return SpoolDamagedError(
                f"The spool database {self.root / DB_NAME} is damaged ({exc}). {damaged_advice(self.root)}"
            )
        return SpoolError(
            f"Cannot open the spool at {self.root} ({exc}). Check the folder exists and is writable "
            "by you, or choose another with --spool DIR."
        )

    # ---- writing -------------------------------------------------------------------------------

    def add(self, *, workspace_id: str, evidence: EvidenceChunk | Mapping[str, Any], data: bytes) -> int:
        """Store one chunk durably and return its item id; raise SpoolFullError if refused.

        `evidence` is the item's typed record (or its EvidenceCreate fields without `data`, checked
        by `EvidenceChunk.from_fields`: ValueError for unknown fields or an incomplete identity);
        the artifact's bytes are passed in `data`.
        """
        if not isinstance(evidence, EvidenceChunk):
            evidence = EvidenceChunk.from_fields(evidence)
        capture_id, stream_id, chunk_index, ev_type = (
            evidence.capture_id, evidence.stream_id, evidence.chunk_index, evidence.type
        )  # fmt: skip
        if not workspace_id:
            raise ValueError("workspace_id is required to spool a chunk")
        request_json = json.dumps(evidence.request_fields(), separators=(",", ":"), sort_keys=True)
        size = len(data)
        with self._lock:
            self._check_open()
            stored = self._stored_bytes()
            limit = self.max_bytes if ev_type in _PRIORITY_TYPES else self.max_bytes * self.screen_limit_ratio
            # The local record counts in the bound and is the first to go: pending never waits for it.
            self.record.make_room(int(limit) - stored - size)
            if stored + size > limit:
                reason = "spool_full" if ev_type in _PRIORITY_TYPES else "spool_full_screens_paused"
                dropped = self._count_drop(capture_id, stream_id, reason, chunk_index)
                what = "EEG chunk" if ev_type == "eeg" else f"{ev_type} chunk"
                raise SpoolFullError(
                    f"SPOOL FULL: {what} {chunk_index} of {stream_id} was NOT saved "
                    f"({_human(stored)} of the {_human(self.max_bytes)} bound is used"
                    + (
                        ""
                        if ev_type in _PRIORITY_TYPES
                        else f"; screenshots stop at {self.screen_limit_ratio:.0%}"
                    )
                    + f"; {dropped} refused so far for this stream). Deliver with `collector upload`, "
                    f"or raise the bound / free space in {self.root}."
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._conn.execute(
                        "INSERT INTO items (capture_id, stream_id, chunk_index, workspace_id, block_id,"
                        " type, request_json, size_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            capture_id,
                            stream_id,
                            chunk_index,
                            workspace_id,
                            evidence.block_id,
                            ev_type,
                            request_json,
                            size,
                            _now_ms(),
                        ),  # fmt: skip
                    )
                    item_id = int(cur.lastrowid or 0)
                    self._conn.execute(
                        "INSERT INTO blobs (item_id, data, sha256) VALUES (?, ?, ?)",
                        (item_id, data, hashlib.sha256(data).hexdigest()),
                    )
                    self._add_stored_bytes(size)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.IntegrityError:
                raise DuplicateChunkError(
                    f"Chunk {chunk_index} of stream {stream_id} in capture {capture_id} is already "
                    "spooled; chunk_index must count up without repeats."
                ) from None
            except (OSError, sqlite3.Error) as exc:
                if _is_disk_full(exc) and self.record.make_room(0):
                    # The local record's pages are free now; once empty, make_room returns 0: no loop.
                    return self.add(workspace_id=workspace_id, evidence=evidence, data=data)
                if _is_disk_full(exc):
                    dropped = self._count_drop(capture_id, stream_id, "disk_full", chunk_index)
                    raise SpoolFullError(
                        f"DISK FULL: chunk {chunk_index} of {stream_id} was NOT saved: the disk holding "
                        f"{self.root} has no space left ({dropped} refused so far for this stream). "
                        "Free disk space; spooled items are safe."
                    ) from None
                raise SpoolError(f"Cannot write to the spool at {self.root}: {exc}.") from None
            self._flush_held()
        for listener in list(self._listeners):
            listener()  # wakes the uploader at once instead of at its next poll
        return item_id

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every successful `add` in this process (it must not block)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def record_drop(
        self, capture_id: str, stream_id: str, reason: str, chunk_index: int | None = None
    ) -> int:
        """Count one chunk that was never spooled (e.g. capture fell behind); returns the new count."""
        with self._lock:
            self._check_open()
            return self._count_drop(capture_id, stream_id, reason, chunk_index)

    def _count_drop(
        self, capture_id: str, stream_id: str, reason: str, chunk_index: int | None = None
    ) -> int:
        key = (capture_id, stream_id, reason)
        chunks = "" if chunk_index is None else str(int(chunk_index))
        try:
            self._conn.execute(
                "INSERT INTO drops (capture_id, stream_id, reason, count, last_ms, chunks)"
                " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (capture_id, stream_id, reason)"
                " DO UPDATE SET count = count + 1, last_ms = excluded.last_ms, chunks = " + _MERGE_CHUNKS,
                (capture_id, stream_id, reason, _now_ms(), chunks),
            )
        except (OSError, sqlite3.Error):
            # The disk may be full: keep counting in memory, written with the next successful add.
            self._unsaved_drops[key] = self._unsaved_drops.get(key, 0) + 1
            if chunk_index is not None:
                self._unsaved_drop_chunks.setdefault(key, []).append(int(chunk_index))
        row = self._conn.execute(
            "SELECT count FROM drops WHERE capture_id = ? AND stream_id = ? AND reason = ?", key
        ).fetchone()
        return (row[0] if row else 0) + self._unsaved_drops.get(key, 0)

    def _flush_held(self) -> bool:
        """Write the drop counts and delivery records held in memory; True when none is left."""
        while self._unsaved_drops:
            key, n = next(iter(self._unsaved_drops.items()))
            chunks = ",".join(map(str, self._unsaved_drop_chunks.get(key, [])[:MAX_DROP_CHUNKS]))
            try:
                self._conn.execute(
                    "INSERT INTO drops (capture_id, stream_id, reason, count, last_ms, chunks)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (capture_id, stream_id, reason)"
                    " DO UPDATE SET count = count + excluded.count, last_ms = excluded.last_ms, chunks = "
                    + _MERGE_CHUNKS,
                    (*key, n, _now_ms(), chunks),
                )
            except (OSError, sqlite3.Error):
                return False
            del self._unsaved_drops[key]
            self._unsaved_drop_chunks.pop(key, None)
        while self._held_deliveries:
            item_id, evidence_id = next(iter(self._held_deliveries.items()))
            try:
                self._mark_delivered(item_id, evidence_id)
            except SpoolError:
                return False
            del self._held_deliveries[item_id]
        while self._held_ends:
            capture_id, (ended_ms, counts) = next(iter(self._held_ends.items()))
            try:
                self.record.end_capture(capture_id, ended_ms, counts)
            except (OSError, sqlite3.Error):
                return False
            del self._held_ends[capture_id]
        return True

    def end_capture(self, capture_id: str, ended_ms: int, counts: dict[str, Any]) -> bool:
        """Close a capture's local record (end time, counts); False if a full disk made it wait.

        Then it is held in memory like the refusal counts, and written as soon as a write
        succeeds or at `close` (with the reserve's space), so `collector sessions` shows it.
        """
        with self._lock:
            self._check_open()
            try:
                self.record.end_capture(capture_id, ended_ms, counts)
                return True
            except (OSError, sqlite3.Error) as exc:
                if not _is_disk_full(exc):
                    raise SpoolError(f"Cannot update the spool at {self.root}: {exc}.") from None
                self._held_ends[capture_id] = (ended_ms, counts)
                return False

    def flush_held(self) -> bool:
        """Try again to write what a full disk refused (counts, delivery records); True when done."""
        with self._lock:
            self._check_open()
            return self._flush_held()

    @property
    def held(self) -> int:
        """How many counts and delivery records wait in memory for disk space."""
        return len(self._unsaved_drops) + len(self._held_deliveries) + len(self._held_ends)

    def ensure_reserve(self) -> bool:
        """Make the reserve if it is missing; True when it is there (then a 201 can be recorded).

        The uploader sends nothing without it: a 201 whose record cannot be written would make the
        next `upload` send that item again.
        """
        with self._lock:
            self._check_open()
            return self._make_reserve()

    def _make_reserve(self) -> bool:
        path = self.root / RESERVE_NAME
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

    def _use_reserve(self) -> bool:
        """Give the reserve's space to SQLite (the disk is full); False if there is none."""
        try:
            (self.root / RESERVE_NAME).unlink()
            return True
        except OSError:
            return False

    def mark_delivered(self, item_id: int, evidence_id: str) -> None:
        """After the server's 201: keep a small record with its evidence id, purge the bytes.

        On a full disk the reserve's space is given up at once and the record written with it;
        `SpoolFullError` is then raised so the caller stops sending until the reserve can be made
        again (`ensure_reserve`). Only if even that fails is the record held in memory (the item is
        no longer handed out, nor counted as pending, by this process) and written as soon as a
        write succeeds or at `close`.
        """
        evidence_id = redaction.redact(evidence_id)
        with self._lock:
            self._check_open()
            try:
                self._mark_delivered(item_id, evidence_id)
                return
            except SpoolFullError:
                self._held_deliveries[item_id] = evidence_id
            if self._use_reserve() and self._flush_held():
                raise SpoolFullError(
                    f"DISK FULL: the disk holding the spool {self.root} has no space left; sending "
                    "stopped (the record of what the server stored was written in the spool's reserve). "
                    "Free disk space, then run `collector upload` again."
                )
            raise SpoolFullError(
                f"DISK FULL: the disk holding the spool {self.root} has no space left; sending stopped. "
                f"The server stored {len(self._held_deliveries)} item(s) whose record could not be "
                "written: it is written as soon as there is space while this process runs; if it ends "
                "first, those item(s) are sent again (same capture_id, stream_id, chunk_index). "
                "Free disk space."
            )

    def _mark_delivered(self, item_id: int, evidence_id: str) -> None:
        self._transition(
            item_id,
            "UPDATE items SET state = 'delivered', evidence_id = ?, done_ms = ?, last_error = NULL"
            " WHERE id = ? AND state != 'delivered'",
            (evidence_id, _now_ms(), item_id),
            purge=True,
            keep=self.record.keep,
        )

    def mark_failed(self, item_id: int, message: str) -> None:
        """A permanent rejection (validation_error): out of the queue, bytes kept for inspection."""
        with self._lock:
            self._check_open()
            self._transition(
                item_id,
                "UPDATE items SET state = 'failed', last_error = ?, done_ms = ?, attempts = attempts + 1"
                " WHERE id = ? AND state = 'pending'",
                (redaction.redact(message), _now_ms(), item_id),
                purge=False,
            )

    def record_attempt(self, item_id: int, error: str) -> None:
        """A failed attempt that will be retried: count it and keep the last error for `status`.

        Best effort on a full disk: an attempt count is not evidence, so it is not worth a stop.
        """
        with self._lock:
            self._check_open()
            try:
                self._conn.execute(
                    "UPDATE items SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (redaction.redact(error), item_id),
                )
            except (OSError, sqlite3.Error) as exc:
                if not _is_disk_full(exc):
                    raise SpoolError(f"Cannot update the spool at {self.root}: {exc}.") from None

    def retry_failed(self, capture_id: str | None = None) -> int:
        """Move failed items back to pending (after fixing the cause); returns how many moved."""
        with self._lock:
            self._check_open()
            sql = "UPDATE items SET state = 'pending', done_ms = NULL WHERE state = 'failed'"
            params: tuple[Any, ...] = ()
            if capture_id is not None:
                sql += " AND capture_id = ?"
                params = (capture_id,)
            return self._write(sql, params)

    def prune_delivered(self, older_than_s: float = 30 * 86400) -> int:
        """Forget delivery records older than `older_than_s` (their bytes are long gone)."""
        with self._lock:
            self._check_open()
            cutoff = _now_ms() - int(older_than_s * 1000)
            return self._write("DELETE FROM items WHERE state = 'delivered' AND done_ms < ?", (cutoff,))

    def compact(self) -> None:
        """Give the pages of purged artifacts back to the file system (after a backlog drained)."""
        with self._lock:
            self._check_open()
            try:
                self._conn.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page per step
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.debug("spool compaction skipped: %s", exc)

    def set_pause_reason(self, reason: str | None) -> None:
        """Persist why delivery is paused (bad key, missing workspace), or clear it with None."""
        with self._lock:
            self._check_open()
            if reason is None:
                self._write("DELETE FROM meta WHERE key = 'pause_reason'", ())
            else:
                self._write(
                    "INSERT INTO meta (key, value) VALUES ('pause_reason', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (reason,),
                )

    def set_meta(self, key: str, value: str | None) -> None:
        """Persist a small piece of state for other processes (None deletes it)."""
        with self._lock:
            self._check_open()
            if value is None:
                self._write("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._write(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def _transition(self, item_id: int, sql: str, params: tuple[Any, ...], *, purge: bool, keep=None) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT size_bytes, state FROM items WHERE id = ?", (item_id,)
                ).fetchone()
                if row is None:
                    raise SpoolError(f"Spool item {item_id} does not exist in {self.root}.")
                changed = self._conn.execute(sql, params).rowcount
                if changed and keep is not None:
                    keep(item_id)  # the local copy, in the same transaction as the purge
                if changed and purge:
                    self._conn.execute("DELETE FROM blobs WHERE item_id = ?", (item_id,))
                    self._add_stored_bytes(-row[0])
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except (OSError, sqlite3.Error) as exc:
            if _is_disk_full(exc):
                raise SpoolFullError(f"The disk holding the spool {self.root} is full: {exc}.") from None
            raise SpoolError(f"Cannot update the spool at {self.root}: {exc}.") from None

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        try:
            return self._conn.execute(sql, params).rowcount
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"Cannot update the spool at {self.root}: {exc}.") from None

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _stored_bytes(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key = 'stored_bytes'").fetchone()[0])

    def _add_stored_bytes(self, delta: int) -> None:
        self._conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'stored_bytes'", (delta,)
        )

    # ---- reading -------------------------------------------------------------------------------

    def next_pending(
        self,
        stream: tuple[str, str] | None = None,
        *,
        exclude_streams: Collection[tuple[str, str]] = (),
        exclude_workspaces: Collection[str] = (),
        exclude_blocks: Collection[str] = (),
        up_to_id: int | None = None,
    ) -> SpoolItem | None:
        """The oldest pending item, skipping the streams, workspaces and blocks named.

        A stream is `(capture_id, stream_id)`; `stream` restricts the search to one of them;
        `up_to_id` to items spooled no later than that item id (see `max_pending_id`).
        """
        sql = "SELECT id FROM items WHERE state = 'pending'"
        params: list[Any] = list(LAST_STREAM_IDS)
        sql += (
            f" AND NOT (stream_id IN ({','.join('?' * len(LAST_STREAM_IDS))}) AND EXISTS (SELECT 1 FROM"
            " items o WHERE o.capture_id = items.capture_id AND o.state = 'pending' AND o.id != items.id))"
        )
        if up_to_id is not None:
            sql += " AND id <= ?"
            params.append(up_to_id)
        if stream is not None:
            sql += " AND capture_id = ? AND stream_id = ?"
            params.extend(stream)
        if exclude_streams:
            pairs = ",".join(["(?, ?)"] * len(exclude_streams))
            sql += f" AND (capture_id, stream_id) NOT IN (VALUES {pairs})"
            for capture_id, stream_id in exclude_streams:
                params.extend((capture_id, stream_id))
        if exclude_workspaces:
            sql += f" AND workspace_id NOT IN ({','.join('?' * len(exclude_workspaces))})"
            params.extend(exclude_workspaces)
        if exclude_blocks:
            sql += f" AND COALESCE(block_id, '') NOT IN ({','.join('?' * len(exclude_blocks))})"
            params.extend(exclude_blocks)
        with self._lock:
            if self._held_deliveries:  # delivered; only their record waits for disk space
                sql += f" AND id NOT IN ({','.join('?' * len(self._held_deliveries))})"
                params.extend(self._held_deliveries)
            sql += " ORDER BY id LIMIT 1"
            self._check_open()
            while True:
                try:
                    row = self._conn.execute(sql, params).fetchone()
                except sqlite3.Error as exc:
                    raise SpoolError(f"Cannot read the spool at {self.root}: {exc}.") from None
                if row is None:
                    return None
                try:
                    return self._load(row[0], strict=True)
                except _Unreadable as why:
                    # One bad item must not block its stream: set it aside (kept, as failed) and go on.
                    self._set_aside(row[0], str(why))

    def _set_aside(self, item_id: int, why: str) -> None:
        message = (
            f"unreadable in the spool ({why}); kept as failed so the rest of its stream flows. "
            f"`collector status` lists it; the spool at {self.root} may need `sqlite3 .recover`."
        )
        log.error("spool item %s: %s", item_id, message)
        self._transition(
            item_id,
            "UPDATE items SET state = 'failed', last_error = ?, done_ms = ?"
            " WHERE id = ? AND state = 'pending'",
            (message, _now_ms(), item_id),
            purge=False,
        )

    def get(self, item_id: int) -> SpoolItem | None:
        with self._lock:
            self._check_open()
            return self._load(item_id)

    def _load(self, item_id: int, strict: bool = False) -> SpoolItem | None:
        """The item with its bytes; `strict` raises `_Unreadable` for a damaged one (to set aside)."""
        try:
            row = self._conn.execute(
                "SELECT i.id, i.workspace_id, i.capture_id, i.stream_id, i.chunk_index, i.type,"
                " i.request_json, b.data, i.attempts, i.created_ms, b.sha256"
                " FROM items i LEFT JOIN blobs b ON b.item_id = i.id WHERE i.id = ?",
                (item_id,),
            ).fetchone()
        except sqlite3.DatabaseError as exc:  # a damaged page under this item's row or blob
            if strict and not isinstance(exc, sqlite3.OperationalError):
                raise _Unreadable(f"database error: {exc}") from None
            raise
        if row is None:
            return None
        data = row[7]
        try:
            request = json.loads(row[6])
            if not isinstance(request, dict):
                raise ValueError("the request is not a JSON object")
        except (TypeError, ValueError) as exc:
            if strict:
                raise _Unreadable(f"its request is not valid JSON: {exc}") from None
            request = {}
        if strict and not isinstance(data, bytes):
            raise _Unreadable("its bytes are missing" if data is None else "its bytes are not a blob")
        if strict and row[10] is not None and hashlib.sha256(data).hexdigest() != row[10]:
            raise _Unreadable("its bytes changed since it was spooled: their SHA-256 does not match")
        return SpoolItem(
            id=row[0], workspace_id=row[1], capture_id=row[2], stream_id=row[3], chunk_index=row[4],
            type=row[5], request=request, data=bytes(data or b"") if not isinstance(data, str) else b"",
            attempts=row[8], created_ms=row[9],
        )  # fmt: skip

    def max_pending_id(self) -> int:
        """The id of the newest pending item (0 if none): what was waiting at this moment."""
        return self._scalar("SELECT COALESCE(MAX(id), 0) FROM items WHERE state = 'pending'")

    def pending_count(self) -> int:
        """Pending items, less those delivered whose record waits for disk space (`mark_delivered`)."""
        with self._lock:
            held = len(self._held_deliveries)
            return self._scalar("SELECT COUNT(*) FROM items WHERE state = 'pending'") - held

    def failed_count(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM items WHERE state = 'failed'")

    def stored_bytes(self) -> int:
        """Bytes of artifacts held (pending + failed), the quantity bounded by `max_bytes`."""
        with self._lock:
            self._check_open()
            return self._stored_bytes()

    def pause_reason(self) -> str | None:
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'pause_reason'").fetchone()
            return row[0] if row else None

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            self._check_open()
            try:
                return int(self._conn.execute(sql, params).fetchone()[0])
            except sqlite3.Error as exc:
                raise SpoolError(f"Cannot read the spool at {self.root}: {exc}.") from None

    def stats(self) -> list[CaptureStats]:
        """Per capture, oldest first: delivered, pending, failed, dropped, bytes, age, last error."""
        now = _now_ms()
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT capture_id, MIN(id),"
                " SUM(state = 'delivered'), SUM(state = 'pending'), SUM(state = 'failed'),"
                " SUM(CASE WHEN state != 'delivered' THEN size_bytes ELSE 0 END),"
                " MIN(CASE WHEN state = 'pending' THEN created_ms END),"
                " MIN(workspace_id), GROUP_CONCAT(DISTINCT stream_id)"
                " FROM items GROUP BY capture_id"
            ).fetchall()
            errors = dict(
                self._conn.execute(
                    "SELECT capture_id, last_error FROM items WHERE id IN ("
                    " SELECT MAX(id) FROM items WHERE last_error IS NOT NULL GROUP BY capture_id)"
                ).fetchall()
            )
            drops: dict[str, int] = {}
            drop_streams: dict[str, set[str]] = {}
            for capture_id, stream_id, count in self._conn.execute(
                "SELECT capture_id, stream_id, SUM(count) FROM drops GROUP BY capture_id, stream_id"
            ):
                drops[capture_id] = drops.get(capture_id, 0) + count
                drop_streams.setdefault(capture_id, set()).add(stream_id)
            for (capture_id, stream_id, _reason), count in self._unsaved_drops.items():
                drops[capture_id] = drops.get(capture_id, 0) + count
                drop_streams.setdefault(capture_id, set()).add(stream_id)
        out: list[tuple[int, CaptureStats]] = []
        seen = set()
        for cap, first_id, delivered, pending, failed, nbytes, oldest_ms, ws, streams in rows:
            seen.add(cap)
            out.append((first_id, CaptureStats(
                capture_id=cap, delivered=delivered or 0, pending=pending or 0, failed=failed or 0,
                dropped=drops.get(cap, 0), bytes=nbytes or 0,
                oldest_pending_age_s=None if oldest_ms is None else max(0.0, (now - oldest_ms) / 1000),
                last_error=errors.get(cap), workspace_id=ws,
                streams=tuple(sorted(set((streams or "").split(",")) - {""} | drop_streams.get(cap, set()))),
            )))  # fmt: skip
        for cap in drops.keys() - seen:  # captures whose every chunk was refused
            out.append((1 << 62, CaptureStats(
                capture_id=cap, delivered=0, pending=0, failed=0, dropped=drops[cap], bytes=0,
                oldest_pending_age_s=None, last_error=None, workspace_id=None,
                streams=tuple(sorted(drop_streams[cap])),
            )))  # fmt: skip
        return [s for _, s in sorted(out, key=lambda p: p[0])]

    def losses(self, capture_id: str | None = None) -> list[Loss]:
        """What is not on the server and no retry will bring there, per capture, stream and reason.

        Chunks the spool refused (`spool_full`, `spool_full_screens_paused`, `disk_full`, or the
        error of a failing disk), counted even while the disk was full (held in memory until they
        can be written), and items kept as `failed` (rejected for good by the server, or unreadable
        in the spool), with their chunk indexes and the last reason.
        """
        only = " AND capture_id = ?" if capture_id is not None else ""
        params = (capture_id,) if capture_id is not None else ()
        with self._lock:
            self._check_open()
            try:
                drops = self._conn.execute(
                    f"SELECT capture_id, stream_id, reason, count, chunks FROM drops WHERE 1{only}", params
                ).fetchall()
                # Set aside by the spool (`_set_aside`) or rejected by the server: told apart.
                failed = self._conn.execute(
                    "SELECT capture_id, stream_id, unreadable, COUNT(*), GROUP_CONCAT(chunk_index),"
                    " MAX(id) FROM (SELECT *, COALESCE(last_error LIKE 'unreadable in the spool%', 0)"
                    f" AS unreadable FROM items WHERE state = 'failed'{only})"
                    " GROUP BY capture_id, stream_id, unreadable",
                    params,
                ).fetchall()
                last_errors = {
                    item_id: message
                    for item_id, message in self._conn.execute(
                        f"SELECT id, last_error FROM items WHERE id IN ({','.join('?' * len(failed))})",
                        [row[5] for row in failed],
                    )
                }
            except sqlite3.Error as exc:
                raise SpoolError(f"Cannot read the spool at {self.root}: {exc}.") from None
            counts: dict[tuple[str, str, str], int] = {}
            indexes: dict[tuple[str, str, str], set[int]] = {}
            for cap, stream, reason, n, chunks in drops:
                counts[(cap, stream, reason)] = counts.get((cap, stream, reason), 0) + n
                indexes.setdefault((cap, stream, reason), set()).update(
                    int(i) for i in str(chunks or "").split(",") if i.strip().isdigit()
                )
            for key, n in self._unsaved_drops.items():
                if capture_id is None or key[0] == capture_id:
                    counts[key] = counts.get(key, 0) + n
                    indexes.setdefault(key, set()).update(self._unsaved_drop_chunks.get(key, ()))
        out = [
            Loss(cap, stream, reason, n, tuple(sorted(indexes.get((cap, stream, reason), ()))))
            for (cap, stream, reason), n in sorted(counts.items())
        ]
        for cap, stream, unreadable, n, indexes, last_id in failed:
            chunks = tuple(sorted(int(i) for i in str(indexes or "").split(",") if i))
            reason = "unreadable" if unreadable else "failed"
            out.append(Loss(cap, stream, reason, n, chunks, last_errors.get(last_id)))
        return out

    # ---- delivery lock and lifetime -----------------------------------------------------------

    def try_lock_delivery(self) -> bool:
        """Take the per-spool delivery lock (one uploader per spool); False if another process has it.

        The OS releases it when the process dies, even on SIGKILL.
        """
        with self._lock:
            self._check_open()
            if self._lock_fd is not None:
                return True
            try:
                import fcntl
            except ImportError:  # not POSIX: no cross-process guard
                return True
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._lock_fd = fd
            return True

    def delivery_active(self) -> bool:
        """True while some process (this one included) holds the delivery lock: it is delivering.

        A process that died (even by SIGKILL) holds nothing: the OS released its lock. The check
        takes a shared lock for an instant and gives it back at once.
        """
        with self._lock:
            self._check_open()
            if self._lock_fd is not None:
                return True
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock to look at
                return False
            path = self.root / LOCK_NAME
            if not path.exists():
                return False
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            finally:
                os.close(fd)  # closing releases the shared lock, if it was taken
            return False

    def unlock_delivery(self) -> None:
        with self._lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the fd releases the flock
                self._lock_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"The spool at {self.root} is closed.")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            # Counts and delivery records that a full disk refused: written now, with the reserve's
            # space if need be, so `status` and the next `upload` see them.
            if not self._flush_held() and self._use_reserve() and not self._flush_held():
                log.warning(
                    "the disk holding %s is full: %d refusal count(s), %d delivery record(s) and %d "
                    "capture end(s) could not be written", self.root, len(self._unsaved_drops),
                    len(self._held_deliveries), len(self._held_ends),
                )  # fmt: skip
            self._closed = True
            self.unlock_delivery()
            self._conn.close()  # the last connection to close checkpoints and removes the WAL

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
