"""Where a capture's items go, when that is not settled yet or is changed after the fact.

- `targets` (a table of spool.db, created when a spool is opened, so older spools get it too):
  one row per capture whose target has not been checked against the API: its workspace and the
  block as the user gave it (an id or a title). A capture started while the API did not answer,
  or with `--offline` and a block title, has a row; its items carry no block id until the
  uploader's check (collector/delivery/uploader.py) resolves the title and `resolve` writes the
  block id into every pending item of the capture, in one transaction, before any is sent.
- `retarget`: a capture's pending items sent to another workspace / block (`collector spool
  retarget`); `keep_local`: its pending items taken out of delivery, their local copy kept
  (`collector spool drop`, and every item of a `--local` capture).

Items kept locally are `delivered` rows with no evidence id: `status` counts them as `local`,
never as delivered or pending.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from collector.delivery.spool.items import DELETE_BLOB, PENDING, add_stored_bytes
from collector.delivery.spool.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    capture_id   TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    block        TEXT,              -- as the user gave it: an id or a title
    noted_ms     INTEGER NOT NULL,
    checked      INTEGER NOT NULL DEFAULT 0,
    block_id     TEXT               -- once checked: the block's id, for the items still to come
);
"""

LOCAL_WORKSPACE = "local"  # the workspace_id of a `--local` capture's items: never delivered

SELECT_TARGET = "SELECT workspace_id, block FROM targets WHERE capture_id = ? AND checked = 0"
SELECT_RESOLVED = "SELECT block_id FROM targets WHERE capture_id = ? AND checked = 1"
PENDING_OF = f"SELECT id, request_json FROM items WHERE capture_id = ? AND state = '{PENDING}'"
SET_REQUEST = "UPDATE items SET workspace_id = ?, block_id = ?, request_json = ? WHERE id = ?"
KEEP_LOCAL = (
    "UPDATE items SET state = 'delivered', evidence_id = NULL, done_ms = ?, last_error = ?"
    f" WHERE id = ? AND state = '{PENDING}'"
)


def note_unchecked(store: Store, capture_id: str, workspace_id: str, block: str | None) -> None:
    """Remember that `capture_id`'s target is to be checked (and `block` resolved) before delivery."""
    with store.lock:
        store.check_open()
        store.write(
            "INSERT OR REPLACE INTO targets (capture_id, workspace_id, block, noted_ms) VALUES (?, ?, ?, ?)",
            (capture_id, workspace_id, block, store.now_ms()),
        )


def unchecked(store: Store, capture_id: str) -> tuple[str, str | None] | None:
    """(workspace_id, block as given) when the capture's target is still to be checked, else None."""
    with store.lock:
        store.check_open()
        try:
            row = store.conn.execute(SELECT_TARGET, (capture_id,)).fetchone()
        except sqlite3.OperationalError:  # a read-only spool made before this table
            return None
    return None if row is None else (row[0], row[1])


def resolved_block(store: Store, capture_id: str) -> str | None:
    """The block id the capture's deferred check found (items spooled after it get it), or None.
    The caller holds the store's lock."""
    try:
        row = store.conn.execute(SELECT_RESOLVED, (capture_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def retarget(
    store: Store, capture_id: str, workspace_id: str, block_id: str | None, *, checked: bool = False
) -> int:
    """Point every pending item of the capture at `workspace_id` / `block_id`, in one transaction;
    returns how many items changed. `checked`: the deferred check found this target (items the
    capture spools later get the block too); else the unchecked target is forgotten (`collector
    spool retarget`, after its own check). `SpoolError` on failure."""

    def change(request: dict) -> dict:
        request = {k: v for k, v in request.items() if k != "block_id"}
        return {**request, "block_id": block_id} if block_id else request

    with store.lock:
        store.check_open()
        return _rewrite(store, capture_id, workspace_id, block_id, change, checked)


def _rewrite(
    store: Store, capture_id: str, workspace_id: str, block_id: str | None, change, checked: bool
) -> int:
    conn = store.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(PENDING_OF, (capture_id,)).fetchall()
            for item_id, request_json in rows:
                request = change(json.loads(request_json))
                text = json.dumps(request, separators=(",", ":"), sort_keys=True)
                conn.execute(SET_REQUEST, (workspace_id, block_id, text, item_id))
            if checked:
                conn.execute(
                    "UPDATE targets SET checked = 1, block_id = ? WHERE capture_id = ?",
                    (block_id, capture_id),
                )
            else:
                conn.execute("DELETE FROM targets WHERE capture_id = ?", (capture_id,))
            conn.execute(
                "UPDATE captures SET workspace_id = ?, block_id = ? WHERE capture_id = ?",
                (workspace_id, block_id, capture_id),
            )
            conn.execute("COMMIT")
        except BaseException:
            store.rollback()
            raise
    except (OSError, sqlite3.Error, ValueError) as exc:
        raise store.transaction_error(exc) from None
    return len(rows)


def keep_local(
    store: Store, capture_id: str, keep: Callable[[int], object], why: str | None, item_id: int | None = None
) -> int:
    """Take the capture's pending items (or the one `item_id`) out of delivery: each is copied
    into the local record (`keep`) and its bytes purged, in one transaction. Returns how many."""
    conn = store.conn
    with store.lock:
        store.check_open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if item_id is None:
                    rows = conn.execute(PENDING_OF, (capture_id,)).fetchall()
                else:
                    rows = [(item_id, None)]
                n = 0
                for one, _request in rows:
                    size = conn.execute("SELECT size_bytes FROM items WHERE id = ?", (one,)).fetchone()[0]
                    if conn.execute(KEEP_LOCAL, (store.now_ms(), why, one)).rowcount:
                        keep(one)
                        conn.execute(DELETE_BLOB, (one,))
                        add_stored_bytes(conn, -size)
                        n += 1
                conn.execute("DELETE FROM targets WHERE capture_id = ?", (capture_id,))
                conn.execute("COMMIT")
            except BaseException:
                store.rollback()
                raise
        except (OSError, sqlite3.Error) as exc:
            raise store.transaction_error(exc) from None
    return n
