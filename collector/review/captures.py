"""The captures kept on this machine, read back from the spool's local record: one row per capture
(the list `collector sessions` prints) and the one a command names by id, prefix or --last."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from collector.delivery.interrupted import capture_state
from collector.errors import UsageError


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def list_sessions(spool) -> list[dict[str, Any]]:
    """One dict per capture (see the README's `collector sessions --json`), in the order they were
    made (a replay of a 2017 file made today comes after yesterday's run)."""
    stats = {s.capture_id: s for s in spool.stats()}
    lost: dict[str, list[dict[str, Any]]] = {}
    for loss in spool.losses():  # refused by the spool or rejected for good by the server
        lost.setdefault(loss.capture_id, []).append(
            {"stream_id": loss.stream_id, "reason": loss.reason, "count": loss.count}
        )
    rows: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    known = set()
    for cap, s in stats.items():  # captures made before the local record existed: first
        bare = {"capture_id": cap, "kind": None, "workspace_id": s.workspace_id}
        rows.append((bare, {}, "finished"))
    for c in spool.record.captures():  # in the order they were made
        known.add(c["capture_id"])
        state = capture_state(c)
        counts = c["counts"]
        if c["ended_ms"] is None:  # still running (or not finished yet): what the spool holds so far
            live = spool.record.spooled_counts(c["capture_id"])
            counts = {**live, "data_start_ms": live["first_ms"], "markers": None, "gaps": None}
        rows.append((c, counts, state))
    rows = [r for r in rows if r[0]["kind"] is not None or r[0]["capture_id"] not in known]
    out = []
    for c, counts, state in rows:
        s = stats.get(c["capture_id"])
        start = counts.get("data_start_ms") or c.get("started_ms")
        end = counts.get("data_end_ms") or c.get("ended_ms")
        if c.get("kind") != "replay" and c.get("started_ms") and c.get("ended_ms"):
            # A live capture lasted from its start to its stop, whatever its data: a screen-only run
            # on a static screen sends one frame (its data span would be 0 s).
            start = min(start or c["started_ms"], c["started_ms"])
            end = max(end or c["ended_ms"], c["ended_ms"])
        out.append({
            "capture_id": c["capture_id"],
            "kind": c.get("kind"),
            "captured_at": _iso(c.get("started_ms")),
            "started_at": _iso(start),
            "ended_at": _iso(end),
            "duration_s": None if start is None or end is None else round((end - start) / 1000, 1),
            "workspace_id": c.get("workspace_id"),
            "block_id": c.get("block_id"),
            "block_title": c.get("block_title"),
            "source": c.get("source"),
            "device": c.get("device"),
            "profile": c.get("profile"),
            "samples": counts.get("samples", 0),
            "screenshots": counts.get("screenshots", 0),
            "screenshots_skipped": counts.get("screenshots_skipped"),  # None: not known (running, killed)
            "black_frames": counts.get("black_frames"),  # black screenshots held back; None: not known
            "screen_backend": counts.get("screen_backend"),
            "markers": counts.get("markers", 0),
            "gaps": counts.get("gaps", 0),
            "delivered": s.delivered if s else 0,
            "local": s.local if s else 0,  # kept here only, never sent (--local, `spool drop`)
            "pending": s.pending if s else 0,
            "failed": s.failed if s else 0,
            "dropped": s.dropped if s else 0,
            "lost": lost.get(c["capture_id"], []),
            "kept_items": c.get("kept_items", 0),
            "retention_days": c.get("retention_days"),
            "state": state,
            "finished": state == "finished",
        })  # fmt: skip
    return out


def find_capture(spool, capture_id: str | None, last: bool) -> dict[str, Any]:
    """The session named by CAPTURE_ID (a unique prefix is enough) or --last; UsageError if none."""
    sessions = [s for s in list_sessions(spool) if s["kind"] is not None]  # made last = newest
    if not sessions:
        raise UsageError(
            f"No capture is recorded in the spool {spool.root}. Run `collector run` or `collector demo` "
            "first, or pass --spool DIR."
        )
    if last or not capture_id:
        return sessions[-1]
    matches = [s for s in sessions if s["capture_id"].startswith(capture_id.lower())]
    if len(matches) != 1:
        what = "No" if not matches else f"{len(matches)}"
        raise UsageError(
            f"{what} capture matches {capture_id!r} in {spool.root}. See `collector sessions` for the ids."
        )
    return matches[0]
