"""Spooled items: the record handed to the uploader (`SpoolItem`), their states, and the named SQL
that adds, claims and settles them.

States: `pending` -> `delivered` (after the server's 201: the row keeps the server's evidence id,
the bytes are purged) or `failed` (the server rejected it with validation_error, or it could not be
read back; bytes kept, so nothing is deleted). `retry_failed` moves failed items back to pending.

Items are handed out oldest first; a capture's session summary (`LAST_STREAM_IDS`) only once
nothing else of its capture is pending, so it is posted last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from collector.core.evidence import EvidenceChunk
from collector.delivery.spool.store import Store
from collector.errors import SpoolError

log = logging.getLogger("collector.delivery.spool")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

# A capture's session summary waits until nothing else of its capture is pending (posted last).
LAST_STREAM_IDS = ("session-summary",)

INSERT_ITEM = (
    "INSERT INTO items (capture_id, stream_id, chunk_index, workspace_id, block_id,"
    " type, request_json, size_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_BLOB = "INSERT INTO blobs (item_id, data, sha256, local_copy) VALUES (?, ?, ?, ?)"
DELETE_BLOB = "DELETE FROM blobs WHERE item_id = ?"
SELECT_ITEM = (
    "SELECT i.id, i.workspace_id, i.capture_id, i.stream_id, i.chunk_index, i.type,"
    " i.request_json, b.data, i.attempts, i.created_ms, b.sha256"
    " FROM items i LEFT JOIN blobs b ON b.item_id = i.id WHERE i.id = ?"
)
SELECT_SIZE_AND_STATE = "SELECT size_bytes, state FROM items WHERE id = ?"
SELECT_PENDING = f"SELECT id FROM items WHERE state = '{PENDING}'"
MAX_PENDING_ID = f"SELECT COALESCE(MAX(id), 0) FROM items WHERE state = '{PENDING}'"
COUNT_PENDING = f"SELECT COUNT(*) FROM items WHERE state = '{PENDING}'"
COUNT_FAILED = f"SELECT COUNT(*) FROM items WHERE state = '{FAILED}'"
MARK_DELIVERED = (
    f"UPDATE items SET state = '{DELIVERED}', evidence_id = ?, done_ms = ?, last_error = NULL"
    f" WHERE id = ? AND state != '{DELIVERED}'"
)
MARK_FAILED = (
    f"UPDATE items SET state = '{FAILED}', last_error = ?, done_ms = ?, attempts = attempts + 1"
    f" WHERE id = ? AND state = '{PENDING}'"
)
SET_ASIDE = (
    f"UPDATE items SET state = '{FAILED}', last_error = ?, done_ms = ? WHERE id = ? AND state = '{PENDING}'"
)
RECORD_ATTEMPT = "UPDATE items SET attempts = attempts + 1, last_error = ? WHERE id = ?"
RETRY_FAILED = f"UPDATE items SET state = '{PENDING}', done_ms = NULL WHERE state = '{FAILED}'"
PRUNE_DELIVERED = f"DELETE FROM items WHERE state = '{DELIVERED}' AND done_ms < ?"
SELECT_STORED_BYTES = "SELECT value FROM meta WHERE key = 'stored_bytes'"
ADD_STORED_BYTES = "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'stored_bytes'"


class Unreadable(Exception):
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


def read_stored_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of artifacts held (pending + failed), kept in `meta` as items come and go."""
    return int(conn.execute(SELECT_STORED_BYTES).fetchone()[0])


def add_stored_bytes(conn: sqlite3.Connection, delta: int) -> None:
    conn.execute(ADD_STORED_BYTES, (delta,))


def request_json(evidence: EvidenceChunk) -> str:
    """The item's request as stored: EvidenceCreate fields without `data`, as compact JSON."""
    return json.dumps(evidence.request_fields(), separators=(",", ":"), sort_keys=True)


def insert_item(
    store: Store,
    workspace_id: str,
    evidence: EvidenceChunk,
    request: str,
    data: bytes,
    local_copy: bytes | None = None,
) -> int:
    """Add one pending item (`request`: its `request_json`) and its bytes in one transaction;
    returns its id. `local_copy`: what the local record keeps of it after delivery, when made
    already (a screenshot's small copy); it counts in the item's size.

    `DuplicateChunkError` when its identity is already spooled; other errors (a full disk) are
    raised as they come, the transaction rolled back. The caller holds the store's lock.
    """
    size = len(data) + len(local_copy or b"")
    conn = store.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                INSERT_ITEM,
                (
                    evidence.capture_id,
                    evidence.stream_id,
                    evidence.chunk_index,
                    workspace_id,
                    evidence.block_id,
                    evidence.type,
                    request,
                    size,
                    store.now_ms(),
                ),  # fmt: skip
            )
            item_id = int(cur.lastrowid or 0)
            conn.execute(INSERT_BLOB, (item_id, data, hashlib.sha256(data).hexdigest(), local_copy))
            add_stored_bytes(conn, size)
            conn.execute("COMMIT")
        except BaseException:
            store.rollback()
            raise
    except sqlite3.IntegrityError:
        raise DuplicateChunkError(
            f"Chunk {evidence.chunk_index} of stream {evidence.stream_id} in capture {evidence.capture_id} "
            "is already spooled; chunk_index must count up without repeats."
        ) from None
    return item_id


def pending_query(
    stream: tuple[str, str] | None,
    exclude_streams: Collection[tuple[str, str]],
    exclude_workspaces: Collection[str],
    exclude_blocks: Collection[str],
    up_to_id: int | None,
    skip_ids: Collection[int],
    exclude_captures: Collection[str] = (),
) -> tuple[str, list[Any]]:
    """The query for the oldest pending item's id (see `Spool.next_pending`), and its parameters."""
    sql = SELECT_PENDING
    params: list[Any] = list(LAST_STREAM_IDS)
    sql += (
        f" AND NOT (stream_id IN ({','.join('?' * len(LAST_STREAM_IDS))}) AND EXISTS (SELECT 1 FROM"
        f" items o WHERE o.capture_id = items.capture_id AND o.state = '{PENDING}' AND o.id != items.id))"
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
    if exclude_captures:
        sql += f" AND capture_id NOT IN ({','.join('?' * len(exclude_captures))})"
        params.extend(exclude_captures)
    if skip_ids:
        sql += f" AND id NOT IN ({','.join('?' * len(skip_ids))})"
        params.extend(skip_ids)
    return sql + " ORDER BY id LIMIT 1", params


def load_item(conn: sqlite3.Connection, item_id: int, strict: bool = False) -> SpoolItem | None:
    """The item with its bytes; `strict` raises `Unreadable` for a damaged one (to set aside)."""
    try:
        row = conn.execute(SELECT_ITEM, (item_id,)).fetchone()
    except sqlite3.DatabaseError as exc:  # a damaged page under this item's row or blob
        if strict and not isinstance(exc, sqlite3.OperationalError):
            raise Unreadable(f"database error: {exc}") from None
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
            raise Unreadable(f"its request is not valid JSON: {exc}") from None
        request = {}
    if strict and not isinstance(data, bytes):
        raise Unreadable("its bytes are missing" if data is None else "its bytes are not a blob")
    if strict and row[10] is not None and hashlib.sha256(data).hexdigest() != row[10]:
        raise Unreadable("its bytes changed since it was spooled: their SHA-256 does not match")
    return SpoolItem(
        id=row[0], workspace_id=row[1], capture_id=row[2], stream_id=row[3], chunk_index=row[4],
        type=row[5], request=request, data=bytes(data or b"") if not isinstance(data, str) else b"",
        attempts=row[8], created_ms=row[9],
    )  # fmt: skip


def transition(
    store: Store,
    item_id: int,
    sql: str,
    params: tuple[Any, ...],
    *,
    purge: bool,
    keep: Callable[[int], object] | None = None,
) -> None:
    """Settle one item with `sql` in one transaction: `keep(item_id)` (its local copy) and, with
    `purge`, its bytes deleted, when `sql` changed it. `SpoolFullError` on a full disk."""
    conn = store.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(SELECT_SIZE_AND_STATE, (item_id,)).fetchone()
            if row is None:
                raise SpoolError(f"Spool item {item_id} does not exist in {store.root}.")
            changed = conn.execute(sql, params).rowcount
            if changed and keep is not None:
                keep(item_id)  # the local copy, in the same transaction as the purge
            if changed and purge:
                conn.execute(DELETE_BLOB, (item_id,))
                add_stored_bytes(conn, -row[0])
            conn.execute("COMMIT")
        except BaseException:
            store.rollback()
            raise
    except (OSError, sqlite3.Error) as exc:
        raise store.transaction_error(exc) from None


def set_aside(store: Store, item_id: int, why: str) -> None:
    """One item that cannot be read back: kept as failed, so the rest of its stream flows."""
    message = (
        f"unreadable in the spool ({why}); kept as failed so the rest of its stream flows. "
        f"`collector status` lists it; the spool at {store.root} may need `sqlite3 .recover`."
    )
    log.error("spool item %s: %s", item_id, message)
    transition(store, item_id, SET_ASIDE, (message, store.now_ms(), item_id), purge=False)
