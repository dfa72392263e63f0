"""The durable on-disk spool: every chunk is written here before any network call.

`Spool` is the one object the capture, the uploader and the commands hold. It is composed of this
package's parts: the layout and database (schema.py, store.py), the items and their states
(items.py), the refusal counts and losses (losses.py), the full-disk reserve and what a full disk
holds in memory (reserve.py), the delivery lock (lock.py) and the status queries (status.py); and
of the local record of each capture (collector/delivery/local_record.py), in the same file.

The spool is bounded by the bytes it holds (pending + failed). Above `screen_limit_ratio` of the
bound, screenshots (and other non-EEG chunks) are refused; at the bound, everything is refused.
Every refusal is counted per capture and stream and raised as `SpoolFullError` with one loud line.
A full disk (ENOSPC / SQLITE_FULL) is handled the same way. The local record's bytes count in the
bound and are evicted, oldest first, before anything is refused.

Opening a `Spool` does not finish the captures whose process died: the commands open it with
`collector.delivery.opening.open_spool`, which does.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from collector.api import redaction
from collector.core.evidence import EvidenceChunk
from collector.delivery.local_record import LocalRecord
from collector.delivery.spool import targets
from collector.delivery.spool.items import (
    COUNT_FAILED,
    COUNT_PENDING,
    MARK_DELIVERED,
    MARK_FAILED,
    MAX_PENDING_ID,
    PRUNE_DELIVERED,
    RECORD_ATTEMPT,
    RETRY_FAILED,
    SpoolItem,
    Unreadable,
    insert_item,
    load_item,
    pending_query,
    read_stored_bytes,
    request_json,
    set_aside,
    transition,
)
from collector.delivery.spool.lock import DeliveryLock
from collector.delivery.spool.losses import DropCounts, Loss
from collector.delivery.spool.reserve import Held, Reserve
from collector.delivery.spool.schema import (
    LOCK_NAME,
    RESERVE_NAME,
    connect,
    connect_read_only,
    is_disk_full,
    open_error,
    prepare,
)
from collector.delivery.spool.status import (
    DELETE_META,
    PAUSE_REASON_KEY,
    SELECT_META,
    SET_META,
    CaptureDelivery,
    capture_deliveries,
)
from collector.delivery.spool.store import Store
from collector.errors import SpoolError, SpoolFullError

log = logging.getLogger("collector.delivery.spool")

DEFAULT_MAX_BYTES = 2_000_000_000
SCREEN_LIMIT_RATIO = 0.9

# Types that must never be refused before the hard bound (EEG is small and irreplaceable).
_PRIORITY_TYPES = frozenset({"eeg", "tool"})


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
        read_only: bool = False,
    ) -> None:
        """`read_only`: open a spool this process may not write (a copy, a read-only mount) for
        `status`, `sessions`, `review` and `export` only: nothing is created, migrated or pruned."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes; {max_bytes!r} is invalid.")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.screen_limit_ratio = screen_limit_ratio
        self._listeners: list[Callable[[], None]] = []
        self.read_only = read_only
        self._store = Store(self.root, connect_read_only(self.root) if read_only else connect(self.root))
        self._conn = self._store.conn  # the one connection (tests read the tables through it)
        self._lock = self._store.lock
        if read_only:
            self.record = LocalRecord(self._conn, self._lock)
            self._drops = DropCounts(self._store)
            self._held = Held()
            self._delivery_lock = DeliveryLock(self.root / LOCK_NAME)
            return
        try:
            prepare(self._conn)
            self._conn.executescript(targets.SCHEMA)
            self.record = LocalRecord(self._conn, self._lock)  # what stays after delivery
            self.record.create_schema()
        except sqlite3.Error as exc:
            self._conn.close()
            raise open_error(self.root, exc) from None
        self._drops = DropCounts(self._store)
        self._held = Held()
        self._reserve = Reserve(self.root / RESERVE_NAME)
        self._delivery_lock = DeliveryLock(self.root / LOCK_NAME)
        try:
            self.record.prune()
        except sqlite3.Error as exc:  # a full disk: the spool still reads, delivers and counts
            if not is_disk_full(exc):
                self._conn.close()
                raise open_error(self.root, exc) from None
            log.debug("local record not pruned: %s", exc)
        self._reserve.make()

    # ---- writing -------------------------------------------------------------------------------

    def add(
        self,
        *,
        workspace_id: str,
        evidence: EvidenceChunk | Mapping[str, Any],
        data: bytes,
        local_only: bool = False,
        local_copy: bytes | None = None,
    ) -> int:
        """Store one chunk durably and return its item id; raise SpoolFullError if refused.

        `local_only` (`--local`): the item goes straight to the local record, never to delivery.
        `local_copy`: the small copy the local record keeps of a screenshot (core.screen_copy).

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
        size = len(data) + len(local_copy or b"")
        with self._lock:
            self._store.check_open()
            if evidence.block_id is None:  # a capture whose block was resolved by the deferred check
                resolved = targets.resolved_block(self._store, capture_id)
                evidence = evidence.for_block(resolved)
            request = request_json(evidence)
            stored = read_stored_bytes(self._conn)
            limit = self.max_bytes if ev_type in _PRIORITY_TYPES else self.max_bytes * self.screen_limit_ratio
            # The local record counts in the bound and is the first to go: pending never waits for it.
            self.record.make_room(int(limit) - stored - size)
            if stored + size > limit:
                reason = "spool_full" if ev_type in _PRIORITY_TYPES else "spool_full_screens_paused"
                dropped = self._drops.count(capture_id, stream_id, reason, chunk_index)
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
                item_id = insert_item(self._store, workspace_id, evidence, request, data, local_copy)
            except (OSError, sqlite3.Error) as exc:
                if is_disk_full(exc) and self.record.make_room(0):
                    # The local record's pages are free now; once empty, make_room returns 0: no loop.
                    return self.add(
                        workspace_id=workspace_id,
                        evidence=evidence,
                        data=data,
                        local_only=local_only,
                        local_copy=local_copy,
                    )
                if is_disk_full(exc):
                    dropped = self._drops.count(capture_id, stream_id, "disk_full", chunk_index)
                    raise SpoolFullError(
                        f"DISK FULL: chunk {chunk_index} of {stream_id} was NOT saved: the disk holding "
                        f"{self.root} has no space left ({dropped} refused so far for this stream). "
                        "Free disk space; spooled items are safe."
                    ) from None
                raise SpoolError(f"Cannot write to the spool at {self.root}: {exc}.") from None
            self._flush_held()
            if local_only:
                targets.keep_local(self._store, capture_id, self.record.keep, None, item_id=item_id)
                return item_id
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
            self._store.check_open()
            return self._drops.count(capture_id, stream_id, reason, chunk_index)

    def end_capture(self, capture_id: str, ended_ms: int, counts: dict[str, Any]) -> bool:
        """Close a capture's local record (end time, counts); False if a full disk made it wait.

        Then it is held in memory like the refusal counts, and written as soon as a write
        succeeds or at `close` (with the reserve's space), so `collector sessions` shows it.
        """
        with self._lock:
            self._store.check_open()
            try:
                self.record.end_capture(capture_id, ended_ms, counts)
                return True
            except (OSError, sqlite3.Error) as exc:
                if not is_disk_full(exc):
                    raise self._store.update_error(exc) from None
                self._held.ends[capture_id] = (ended_ms, counts)
                return False

    # ---- what a full disk holds back -----------------------------------------------------------

    def _flush_held(self) -> bool:
        """Write the drop counts and delivery records held in memory; True when none is left."""
        return self._drops.flush() and self._held.flush(self._mark_delivered, self.record)

    def flush_held(self) -> bool:
        """Try again to write what a full disk refused (counts, delivery records); True when done."""
        with self._lock:
            self._store.check_open()
            return self._flush_held()

    @property
    def held(self) -> int:
        """How many counts and delivery records wait in memory for disk space."""
        return len(self._drops.unsaved) + len(self._held)

    def ensure_reserve(self) -> bool:
        """Make the reserve if it is missing; True when it is there (then a 201 can be recorded).

        The uploader sends nothing without it: a 201 whose record cannot be written would make the
        next `upload` send that item again.
        """
        with self._lock:
            self._store.check_open()
            return self._reserve.make()

    # ---- settling items ------------------------------------------------------------------------

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
            self._store.check_open()
            try:
                self._mark_delivered(item_id, evidence_id)
                return
            except SpoolFullError:
                self._held.deliveries[item_id] = evidence_id
            if self._reserve.use() and self._flush_held():
                raise SpoolFullError(
                    f"DISK FULL: the disk holding the spool {self.root} has no space left; sending "
                    "stopped (the record of what the server stored was written in the spool's reserve). "
                    "Free disk space, then run `collector upload` again."
                )
            raise SpoolFullError(
                f"DISK FULL: the disk holding the spool {self.root} has no space left; sending stopped. "
                f"The server stored {len(self._held.deliveries)} item(s) whose record could not be "
                "written: it is written as soon as there is space while this process runs; if it ends "
                "first, those item(s) are sent again (same capture_id, stream_id, chunk_index). "
                "Free disk space."
            )

    def _mark_delivered(self, item_id: int, evidence_id: str) -> None:
        transition(
            self._store,
            item_id,
            MARK_DELIVERED,
            (evidence_id, self._store.now_ms(), item_id),
            purge=True,
            keep=self.record.keep,
        )

    def mark_failed(self, item_id: int, message: str) -> None:
        """A permanent rejection (validation_error): out of the queue, bytes kept for inspection."""
        with self._lock:
            self._store.check_open()
            transition(
                self._store,
                item_id,
                MARK_FAILED,
                (redaction.redact(message), self._store.now_ms(), item_id),
                purge=False,
            )

    def record_attempt(self, item_id: int, error: str) -> None:
        """A failed attempt that will be retried: count it and keep the last error for `status`.

        Best effort on a full disk: an attempt count is not evidence, so it is not worth a stop.
        """
        with self._lock:
            self._store.check_open()
            try:
                self._conn.execute(RECORD_ATTEMPT, (redaction.redact(error), item_id))
            except (OSError, sqlite3.Error) as exc:
                if not is_disk_full(exc):
                    raise self._store.update_error(exc) from None

    def retry_failed(self, capture_id: str | None = None) -> int:
        """Move failed items back to pending (after fixing the cause); returns how many moved."""
        with self._lock:
            self._store.check_open()
            sql = RETRY_FAILED
            params: tuple[Any, ...] = ()
            if capture_id is not None:
                sql += " AND capture_id = ?"
                params = (capture_id,)
            return self._store.write(sql, params)

    def prune_delivered(self, older_than_s: float = 30 * 86400) -> int:
        """Forget delivery records older than `older_than_s` (their bytes are long gone)."""
        with self._lock:
            self._store.check_open()
            cutoff = self._store.now_ms() - int(older_than_s * 1000)
            return self._store.write(PRUNE_DELIVERED, (cutoff,))

    def compact(self) -> None:
        """Give the pages of purged artifacts back to the file system (after a backlog drained)."""
        with self._lock:
            self._store.check_open()
            try:
                self._conn.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page per step
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.debug("spool compaction skipped: %s", exc)

    # ---- targets: checked later, changed after the fact (targets.py) ------------------------------

    def note_unchecked_target(self, capture_id: str, workspace_id: str, block: str | None) -> None:
        """The capture's target (block: an id or a title) is checked by the uploader before delivery."""
        targets.note_unchecked(self._store, capture_id, workspace_id, block)

    def unchecked_target(self, capture_id: str) -> tuple[str, str | None] | None:
        """(workspace_id, block as given) while the capture's target waits for its check, else None."""
        return targets.unchecked(self._store, capture_id)

    def retarget(
        self, capture_id: str, workspace_id: str, block_id: str | None, *, checked: bool = False
    ) -> int:
        """Send the capture's pending items to `workspace_id` / `block_id`; returns how many.
        `checked`: found by the deferred check, so items spooled later get the block too."""
        return targets.retarget(self._store, capture_id, workspace_id, block_id, checked=checked)

    def keep_local(self, capture_id: str, why: str | None = None) -> int:
        """Take the capture's pending items out of delivery, keeping their local copy; how many."""
        return targets.keep_local(self._store, capture_id, self.record.keep, why)

    # ---- small state for other processes -------------------------------------------------------

    def set_pause_reason(self, reason: str | None) -> None:
        """Persist why delivery is paused (bad key, missing workspace), or clear it with None."""
        self.set_meta(PAUSE_REASON_KEY, reason)

    def pause_reason(self) -> str | None:
        return self.get_meta(PAUSE_REASON_KEY)

    def set_meta(self, key: str, value: str | None) -> None:
        """Persist a small piece of state for other processes (None deletes it)."""
        with self._lock:
            self._store.check_open()
            if value is None:
                self._store.write(DELETE_META, (key,))
            else:
                self._store.write(SET_META, (key, value))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            self._store.check_open()
            row = self._conn.execute(SELECT_META, (key,)).fetchone()
            return None if row is None else str(row[0])

    # ---- reading -------------------------------------------------------------------------------

    def next_pending(
        self,
        stream: tuple[str, str] | None = None,
        *,
        exclude_streams: Collection[tuple[str, str]] = (),
        exclude_workspaces: Collection[str] = (),
        exclude_blocks: Collection[str] = (),
        exclude_captures: Collection[str] = (),
        up_to_id: int | None = None,
    ) -> SpoolItem | None:
        """The oldest pending item, skipping the streams, workspaces and blocks named.

        A stream is `(capture_id, stream_id)`; `stream` restricts the search to one of them;
        `up_to_id` to items spooled no later than that item id (see `max_pending_id`). Items
        delivered whose record waits for disk space are not handed out again. An item that cannot
        be read back is set aside (kept, as failed) and the next one is returned.
        """
        with self._lock:
            sql, params = pending_query(
                stream, exclude_streams, exclude_workspaces, exclude_blocks, up_to_id,
                skip_ids=self._held.deliveries.keys(), exclude_captures=exclude_captures,
            )  # fmt: skip
            self._store.check_open()
            while True:
                try:
                    row = self._conn.execute(sql, params).fetchone()
                except sqlite3.Error as exc:
                    raise self._store.read_error(exc) from None
                if row is None:
                    return None
                try:
                    return load_item(self._conn, row[0], strict=True)
                except Unreadable as why:
                    # One bad item must not block its stream: set it aside (kept, as failed) and go on.
                    set_aside(self._store, row[0], str(why))

    def get(self, item_id: int) -> SpoolItem | None:
        with self._lock:
            self._store.check_open()
            return load_item(self._conn, item_id)

    def max_pending_id(self) -> int:
        """The id of the newest pending item (0 if none): what was waiting at this moment."""
        return self._store.scalar(MAX_PENDING_ID)

    def pending_count(self) -> int:
        """Pending items, less those delivered whose record waits for disk space (`mark_delivered`)."""
        with self._lock:
            held = len(self._held.deliveries)
            return self._store.scalar(COUNT_PENDING) - held

    def failed_count(self) -> int:
        return self._store.scalar(COUNT_FAILED)

    def stored_bytes(self) -> int:
        """Bytes of artifacts held (pending + failed), the quantity bounded by `max_bytes`."""
        with self._lock:
            self._store.check_open()
            return read_stored_bytes(self._conn)

    def stats(self) -> list[CaptureDelivery]:
        """Per capture, oldest first: delivered, pending, failed, dropped, bytes, age, last error."""
        return capture_deliveries(self._store, self._drops)

    def losses(self, capture_id: str | None = None) -> list[Loss]:
        """What is not on the server and no retry will bring there, per capture, stream and reason.

        Chunks the spool refused (`spool_full`, `spool_full_screens_paused`, `disk_full`, or the
        error of a failing disk), counted even while the disk was full (held in memory until they
        can be written), and items kept as `failed` (rejected for good by the server, or unreadable
        in the spool), with their chunk indexes and the last reason.
        """
        with self._lock:
            self._store.check_open()
            return self._drops.losses(capture_id)

    # ---- delivery lock and lifetime -----------------------------------------------------------

    def try_lock_delivery(self) -> bool:
        """Take the per-spool delivery lock (one uploader per spool); False if another process has it.

        The OS releases it when the process dies, even on SIGKILL.
        """
        with self._lock:
            self._store.check_open()
            return self._delivery_lock.try_lock()

    def delivery_active(self) -> bool:
        """True while some process (this one included) holds the delivery lock: it is delivering.

        A process that died (even by SIGKILL) holds nothing: the OS released its lock.
        """
        with self._lock:
            self._store.check_open()
            return self._delivery_lock.active()

    def unlock_delivery(self) -> None:
        with self._lock:
            self._delivery_lock.unlock()

    def close(self) -> None:
        with self._lock:
            if self._store.closed:
                return
            if self.read_only:
                self._store.close()
                return
            # Counts and delivery records that a full disk refused: written now, with the reserve's
            # space if need be, so `status` and the next `upload` see them.
            if not self._flush_held() and self._reserve.use() and not self._flush_held():
                log.warning(
                    "the disk holding %s is full: %d refusal count(s), %d delivery record(s) and %d "
                    "capture end(s) could not be written", self.root, len(self._drops.unsaved),
                    len(self._held.deliveries), len(self._held.ends),
                )  # fmt: skip
            self._delivery_lock.unlock()
            self._store.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
