"""The local record of each capture: what stays on the learner's machine after delivery.

Kept in the spool's own SQLite file (so it shares its 0700/0600 permissions and its fsync), in
two tables next to the spool's:

    captures    one row per capture: kind (run, replay, demo), start and end (Unix ms),
                workspace and block (id and title when known), source, profile, retention and
                the capture's counts (samples, screenshots, markers, chunks), and the pid of the
                process that began it (a capture with no end whose process is gone was
                interrupted: collector/delivery/interrupted.py finishes it).
    record      one row per delivered item kept: the EEG chunk artifact as delivered (Zstandard
                compressed JSON; "zlib" in records kept before it) or a reduced copy of the
                screenshot (about 400 px wide, WebP), with the item's identity and its request
                metadata (e.g. a frame's paused periods).

`Spool.mark_delivered` calls `keep` in the same transaction that purges the item's bytes, so
an item is always either pending in the spool or kept here (or not kept, by choice).

Retention: each capture keeps its items for `retention_days` (profile `[delivery]`, default 30;
0 keeps nothing). `prune` (run whenever a spool is opened) deletes older ones. The bytes kept
count in the spool's size bound, and the record is always the first to go when space runs short:
`make_room` evicts the oldest kept items before the spool refuses anything.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from collector.core.screen_copy import COPY_MIME, copy_of_screenshot
from collector.core.summary import STREAM_ID as SUMMARY_STREAM_ID

log = logging.getLogger("collector.delivery.local_record")

DEFAULT_RETENTION_DAYS = 30.0
# Zstandard level of a kept EEG artifact (python-zstandard, BSD-3). For a 1-minute chunk (858 kB of
# JSON) level 1 takes 4.5 ms for 263 kB and reads back in 1.3 ms; zlib took 13 ms for 330 kB at
# level 1 (76 ms for 279 kB at level 6) and 18 ms to read: a replay without an account spent 0.7 s
# of an hour's 4 s in zlib (issue 23). The frame's checksum tells a damaged copy.
RECORD_ZSTD_LEVEL = 1
_MAX_KEPT_BYTES = 256 * 1024 * 1024  # a kept copy's header claiming more is damaged (`_decompress`)
CAPTURE_KINDS = ("run", "replay", "demo")

SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    capture_id      TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    started_ms      INTEGER,
    ended_ms        INTEGER,
    workspace_id    TEXT,
    workspace_title TEXT,
    block_id        TEXT,
    block_title     TEXT,
    source          TEXT,
    device          TEXT,
    profile         TEXT,
    retention_days  REAL NOT NULL,
    counts_json     TEXT NOT NULL DEFAULT '{}',
    pid             INTEGER
);
CREATE TABLE IF NOT EXISTS record (
    item_id      INTEGER PRIMARY KEY,
    capture_id   TEXT    NOT NULL,
    stream_id    TEXT    NOT NULL,
    chunk_index  INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    mime_type    TEXT    NOT NULL,
    timestamp_ms INTEGER,
    metadata     TEXT    NOT NULL,
    encoding     TEXT    NOT NULL,
    kept_ms      INTEGER NOT NULL,
    size_bytes   INTEGER NOT NULL,
    data         BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS record_capture ON record (capture_id, type, stream_id, chunk_index);
INSERT OR IGNORE INTO meta (key, value) VALUES ('record_bytes', '0');
"""


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """What a capture remembers about itself (the `captures` row, minus end and counts)."""

    capture_id: str
    kind: str  # run | replay | demo
    started_ms: int
    workspace_id: str | None
    block_id: str | None
    block_title: str | None = None
    workspace_title: str | None = None
    source: str | None = None  # e.g. "lsl stream 'Muse'", "file recording.xdf"
    device: str | None = None
    profile: str | None = None
    retention_days: float = DEFAULT_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class Artifact:
    """One item of a capture as it can be read back: from the record, or still in the spool."""

    capture_id: str
    stream_id: str
    chunk_index: int
    type: str
    mime_type: str
    timestamp_ms: int | None
    metadata: dict[str, Any]
    data: bytes
    delivered: bool
    damaged: str | None = None  # why the kept bytes cannot be read back (then `data` is b"")


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One item of a capture as the spool's index remembers it (its bytes may be gone)."""

    stream_id: str
    chunk_index: int
    type: str
    state: str  # pending | delivered | failed
    timestamp_ms: int | None
    sample_count: int
    kept: bool  # a local copy is in the record


def finite_days(value: Any) -> float:
    """A retention in days as a finite float >= 0 (a damaged or old row never yields inf/NaN)."""
    try:
        days = float(value)
    except (TypeError, ValueError):
        return DEFAULT_RETENTION_DAYS
    return max(0.0, days) if math.isfinite(days) else DEFAULT_RETENTION_DAYS


def _decompress(data: bytes, encoding: str) -> bytes:
    """A kept copy's bytes as delivered ("zstd", "zlib" from before it, or "identity")."""
    if encoding == "zstd":
        # The frame's header says how big the copy is, and decompress allocates that at once: a
        # damaged header can claim a terabyte (MemoryError). No kept copy is near this bound (a
        # chunk stays under the API's 10 MB).
        size = zstandard.frame_content_size(data)
        if not 0 <= size <= _MAX_KEPT_BYTES:
            raise zstandard.ZstdError(f"damaged frame header (content size {size})")
        return zstandard.ZstdDecompressor().decompress(data)
    if encoding == "zlib":
        return zlib.decompress(data)
    return bytes(data)


def _now_ms() -> int:
    return int(time.time() * 1000)


class LocalRecord:
    """The record tables of one spool; every method runs under the spool's lock and connection."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock

    def create_schema(self) -> None:
        self._conn.executescript(SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(captures)")}
        if "pid" not in columns:  # a record made before captures remembered their process
            self._conn.execute("ALTER TABLE captures ADD COLUMN pid INTEGER")

    # ---- captures --------------------------------------------------------------------------------

    def begin_capture(self, info: CaptureInfo) -> None:
        if info.kind not in CAPTURE_KINDS:
            raise ValueError(f"capture kind must be one of {CAPTURE_KINDS}, not {info.kind!r}")
        with self._lock:
            self._conn.execute(
                "INSERT INTO captures (capture_id, kind, started_ms, workspace_id, workspace_title, block_id,"
                " block_title, source, device, profile, retention_days, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (capture_id) DO UPDATE SET kind = excluded.kind, pid = excluded.pid",
                (info.capture_id, info.kind, info.started_ms, info.workspace_id, info.workspace_title,
                 info.block_id, info.block_title, info.source, info.device, info.profile,
                 finite_days(info.retention_days), os.getpid()),
            )  # fmt: skip

    def end_capture(self, capture_id: str, ended_ms: int, counts: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE captures SET ended_ms = ?, counts_json = ? WHERE capture_id = ?",
                (ended_ms, json.dumps(counts, sort_keys=True), capture_id),
            )

    def captures(self) -> list[dict[str, Any]]:
        """Every capture row, in the order they were made, with `counts` decoded."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM captures ORDER BY started_ms, capture_id")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            kept = dict(
                self._conn.execute("SELECT capture_id, COUNT(*) FROM record GROUP BY capture_id").fetchall()
            )
        for row in rows:
            row["counts"] = json.loads(row.pop("counts_json") or "{}")
            row["kept_items"] = kept.get(row["capture_id"], 0)
            row["retention_days"] = finite_days(row["retention_days"])
        return rows

    def spooled_counts(self, capture_id: str) -> dict[str, Any]:
        """What the spool's own rows say of a capture (pending, failed and delivered alike, evicted or
        not): EEG samples and chunks (session summary aside), screenshots, first chunk's time (Unix
        ms), last item spooled (Unix ms). For captures that never reached `end_capture`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT type, stream_id, request_json, created_ms FROM items WHERE capture_id = ?",
                (capture_id,),
            ).fetchall()
        counts: dict[str, Any] = {
            "samples": 0, "eeg_chunks": 0, "screenshots": 0, "first_ms": None, "last_spooled_ms": None
        }  # fmt: skip
        for typ, stream_id, request_json, created_ms in rows:
            last = counts["last_spooled_ms"]
            counts["last_spooled_ms"] = created_ms if last is None else max(last, created_ms)
            if stream_id == SUMMARY_STREAM_ID:
                continue
            try:
                request = json.loads(request_json)
            except ValueError:
                continue
            if typ == "eeg":
                counts["eeg_chunks"] += 1
                counts["samples"] += int(request.get("sample_count") or 0)
            elif typ == "screen":
                counts["screenshots"] += 1
            ts = request.get("timestamp_ms")
            if ts is not None and (counts["first_ms"] is None or ts < counts["first_ms"]):
                counts["first_ms"] = ts
        return counts

    def item_rows(self, capture_id: str) -> list[ItemRow]:
        """Every item the spool's index holds for the capture, per stream in chunk order, with
        whether its local copy is kept. A delivered item that is not kept was evicted or pruned."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.stream_id, i.chunk_index, i.type, i.state, i.request_json, r.item_id IS NOT NULL"
                " FROM items i LEFT JOIN record r ON r.item_id = i.id"
                " WHERE i.capture_id = ? ORDER BY i.stream_id, i.chunk_index",
                (capture_id,),
            ).fetchall()
        out = []
        for stream_id, chunk_index, typ, state, request_json, kept in rows:
            try:
                request = json.loads(request_json)
            except ValueError:
                request = {}
            out.append(ItemRow(
                stream_id, chunk_index, typ, state, request.get("timestamp_ms"),
                int(request.get("sample_count") or 0), bool(kept),
            ))  # fmt: skip
        return out

    def retention_days(self, capture_id: str) -> float:
        row = self._conn.execute(
            "SELECT retention_days FROM captures WHERE capture_id = ?", (capture_id,)
        ).fetchone()
        return DEFAULT_RETENTION_DAYS if row is None else finite_days(row[0])

    # ---- keeping, pruning, evicting ------------------------------------------------------------

    def keep(self, item_id: int) -> int:
        """Copy a just-delivered spool item into the record (inside the caller's transaction).

        EEG artifacts are kept as delivered (Zstandard-compressed); screenshots as a ~400 px WebP copy.
        Returns the bytes kept (0 when the capture's retention is 0 or the item has no bytes).
        """
        row = self._conn.execute(
            "SELECT i.capture_id, i.stream_id, i.chunk_index, i.type, i.request_json, b.data, b.local_copy"
            " FROM items i JOIN blobs b ON b.item_id = i.id WHERE i.id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            return 0
        capture_id, stream_id, chunk_index, ev_type, request_json, data, local_copy = row
        if self.retention_days(capture_id) <= 0:
            return 0  # privacy: nothing stays on the machine
        request = json.loads(request_json)
        mime = str(request.get("mime_type") or "application/octet-stream")
        data = bytes(data)
        if mime.startswith("image/"):
            try:
                # The copy the screen source made with the frame; else one from its bytes.
                data, mime = bytes(local_copy) if local_copy else copy_of_screenshot(data), COPY_MIME
            except Exception as exc:  # an image Pillow cannot read: keep no copy, say why
                log.warning("no local copy of screenshot %s/%s: %s", stream_id, chunk_index, exc)
                return 0
            encoding = "identity"
        else:
            compressor = zstandard.ZstdCompressor(level=RECORD_ZSTD_LEVEL, write_checksum=True)
            data, encoding = compressor.compress(data), "zstd"
        self._conn.execute("SAVEPOINT keep_copy")  # a copy that does not fit must not block delivery
        try:
            self._insert(item_id, capture_id, stream_id, chunk_index, ev_type, mime, request, encoding, data)
            self._conn.execute("RELEASE keep_copy")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK TO keep_copy")
            self._conn.execute("RELEASE keep_copy")
            log.warning("no local copy of %s/%s kept: %s", stream_id, chunk_index, exc)
            return 0
        return len(data)

    def _insert(self, item_id, capture_id, stream_id, chunk_index, ev_type, mime, request, encoding, data):
        self._conn.execute(
            "INSERT OR REPLACE INTO record (item_id, capture_id, stream_id, chunk_index, type, mime_type,"
            " timestamp_ms, metadata, encoding, kept_ms, size_bytes, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (item_id, capture_id, stream_id, chunk_index, ev_type, mime, request.get("timestamp_ms"),
             json.dumps(request.get("metadata") or {}, sort_keys=True), encoding, _now_ms(), len(data), data),
        )  # fmt: skip
        self._add_bytes(len(data))

    def record_bytes(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'record_bytes'").fetchone()
        return int(row[0]) if row else 0

    def _add_bytes(self, delta: int) -> None:
        self._conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'record_bytes'", (delta,)
        )

    def make_room(self, available: int) -> int:
        """Evict the oldest kept items until the record holds at most `available` bytes.

        Called by the spool before it would refuse an item, so pending evidence never waits for
        the record. Returns the bytes freed.
        """
        with self._lock:
            held = self.record_bytes()
            excess = held - max(0, available)
            if excess <= 0:
                return 0
            freed = 0
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for item_id, size in self._conn.execute(
                    "SELECT item_id, size_bytes FROM record ORDER BY item_id"
                ).fetchall():
                    if freed >= excess:
                        break
                    self._conn.execute("DELETE FROM record WHERE item_id = ?", (item_id,))
                    freed += size
                self._add_bytes(-freed)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. a full disk: the spool's own check reports it
                self._conn.execute("ROLLBACK")
                log.warning("local record: could not evict kept items (%s)", exc)
                return 0
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        log.warning("local record: evicted %d bytes of the oldest kept items to make room", freed)
        return freed

    def prune(self, now_ms: int | None = None) -> int:
        """Delete kept items older than their capture's retention; returns how many went."""
        now_ms = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                doomed = (
                    "SELECT r.item_id FROM record r LEFT JOIN captures c ON c.capture_id = r.capture_id"
                    " WHERE r.kept_ms + COALESCE(c.retention_days, ?) * 86400000 <= ?"
                )
                params = (DEFAULT_RETENTION_DAYS, now_ms)
                size = self._conn.execute(
                    f"SELECT COALESCE(SUM(size_bytes), 0) FROM record WHERE item_id IN ({doomed})", params
                ).fetchone()[0]
                n = self._conn.execute(f"DELETE FROM record WHERE item_id IN ({doomed})", params).rowcount
                self._add_bytes(-int(size))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return n

    # ---- reading back ----------------------------------------------------------------------------

    def artifacts(self, capture_id: str, type_: str | None = None) -> Iterator[Artifact]:
        """The capture's items, per stream in chunk order: kept ones, then any still in the spool.

        Items still pending or failed are read from the spool's own blobs; a screenshot there comes
        as the small copy made when it was taken (`blobs.local_copy`), when it has one, else full size.
        """
        params: list[Any] = [capture_id]
        kept_where, waiting_where = "capture_id = ?", "i.capture_id = ?"
        if type_ is not None:
            kept_where += " AND type = ?"
            waiting_where += " AND i.type = ?"
            params.append(type_)
        with self._lock:
            kept = self._conn.execute(
                "SELECT stream_id, chunk_index, capture_id, type, mime_type, timestamp_ms, metadata,"
                f" encoding, data FROM record WHERE {kept_where}",
                params,
            ).fetchall()
            waiting = self._conn.execute(
                "SELECT i.stream_id, i.chunk_index, i.capture_id, i.type, i.request_json, b.data,"
                " b.local_copy FROM items i JOIN blobs b ON b.item_id = i.id"
                f" WHERE i.state != 'delivered' AND {waiting_where}",
                params,
            ).fetchall()
        rows = sorted([(r[0], r[1], True, r) for r in kept] + [(r[0], r[1], False, r) for r in waiting])
        for _stream, _index, is_kept, row in rows:  # decompressed one at a time: 2 h of EEG is ~100 MB
            if is_kept:
                stream, index, cap, typ, mime, ts, meta, encoding, data = row
                try:
                    raw = _decompress(data, encoding)
                    metadata = json.loads(meta)
                except (
                    zlib.error,
                    zstandard.ZstdError,
                    ValueError,
                ) as exc:  # damaged: the rest stays readable
                    yield Artifact(cap, stream, index, typ, mime, ts, {}, b"", True, damaged=str(exc))
                    continue
                yield Artifact(cap, stream, index, typ, mime, ts, metadata, raw, True)
            else:
                stream, index, cap, typ, request_json, data, local_copy = row
                req = json.loads(request_json)
                mime = req.get("mime_type", "")
                if local_copy and mime.startswith("image/"):
                    data, mime = local_copy, COPY_MIME
                yield Artifact(
                    cap, stream, index, typ, mime, req.get("timestamp_ms"),
                    req.get("metadata") or {}, bytes(data), False,
                )  # fmt: skip
