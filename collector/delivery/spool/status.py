"""What `collector status` and `sessions` read from the spool: each capture's delivery state
(`CaptureDelivery`), computed from the items' rows and the refusal counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.delivery.spool.items import DELIVERED, FAILED, PENDING
from collector.delivery.spool.losses import DropCounts
from collector.delivery.spool.store import Store

PER_CAPTURE = (
    "SELECT capture_id, MIN(id),"
    f" SUM(state = '{DELIVERED}' AND evidence_id IS NOT NULL),"
    f" SUM(state = '{PENDING}'), SUM(state = '{FAILED}'),"
    f" SUM(CASE WHEN state != '{DELIVERED}' THEN size_bytes ELSE 0 END),"
    f" MIN(CASE WHEN state = '{PENDING}' THEN created_ms END),"
    " MIN(workspace_id), GROUP_CONCAT(DISTINCT stream_id),"
    f" SUM(state = '{DELIVERED}' AND evidence_id IS NULL)"
    " FROM items GROUP BY capture_id"
)
LAST_ERRORS = (
    "SELECT capture_id, last_error FROM items WHERE id IN ("
    " SELECT MAX(id) FROM items WHERE last_error IS NOT NULL GROUP BY capture_id)"
)
# Small state for other processes (`status`): why delivery is paused, the delivering process's rate.
PAUSE_REASON_KEY = "pause_reason"
SELECT_META = "SELECT value FROM meta WHERE key = ?"
SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
DELETE_META = "DELETE FROM meta WHERE key = ?"


@dataclass(frozen=True, slots=True)
class CaptureDelivery:
    """How far one capture's items got: delivered, pending, failed, refused (`dropped`)."""

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
    local: int = 0  # kept on this machine only, never sent (`--local`, `collector spool drop`)

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
            "local": self.local,
        }


def capture_deliveries(store: Store, drop_counts: DropCounts) -> list[CaptureDelivery]:
    """Per capture, oldest first (see `Spool.stats`)."""
    now = store.now_ms()
    with store.lock:
        store.check_open()
        rows = store.conn.execute(PER_CAPTURE).fetchall()
        errors = dict(store.conn.execute(LAST_ERRORS).fetchall())
        drops, drop_streams = drop_counts.per_capture()
    out: list[tuple[int, CaptureDelivery]] = []
    seen = set()
    for cap, first_id, delivered, pending, failed, nbytes, oldest_ms, ws, streams, local in rows:
        seen.add(cap)
        out.append((first_id, CaptureDelivery(
            capture_id=cap, delivered=delivered or 0, pending=pending or 0, failed=failed or 0,
            dropped=drops.get(cap, 0), bytes=nbytes or 0,
            oldest_pending_age_s=None if oldest_ms is None else max(0.0, (now - oldest_ms) / 1000),
            last_error=errors.get(cap), workspace_id=ws, local=local or 0,
            streams=tuple(sorted(set((streams or "").split(",")) - {""} | drop_streams.get(cap, set()))),
        )))  # fmt: skip
    for cap in drops.keys() - seen:  # captures whose every chunk was refused
        out.append((1 << 62, CaptureDelivery(
            capture_id=cap, delivered=0, pending=0, failed=0, dropped=drops[cap], bytes=0,
            oldest_pending_age_s=None, last_error=None, workspace_id=None,
            streams=tuple(sorted(drop_streams[cap])),
        )))  # fmt: skip
    return [s for _, s in sorted(out, key=lambda p: p[0])]
