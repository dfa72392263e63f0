"""`collector sessions [--json] [--spool DIR]`: the captures this machine remembers, newest last."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from collector.commands._common import add_spool_option, add_verbose


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list the captures kept on this machine (newest last)",
        description="The captures in the spool, newest last: start time, duration, kind, block, samples, "
        "screenshots, markers, and delivered/pending/failed items. `collector review` and "
        "`collector export` take a capture id from this list.",
    )
    add_spool_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_verbose(parser)
    parser.set_defaults(func=run)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def list_sessions(spool) -> list[dict[str, Any]]:
    """One dict per capture (see the README's `collector sessions --json`), in the order they were
    made (a replay of a 2017 file made today comes after yesterday's run)."""
    from collector.delivery.interrupted import capture_state

    stats = {s.capture_id: s for s in spool.stats()}
    lost: dict[str, list[dict[str, Any]]] = {}
    for loss in spool.losses():  # refused by the spool or rejected for good by the server
        lost.setdefault(loss.capture_id, []).append(
            {"stream_id": loss.stream_id, "reason": loss.reason, "count": loss.count}
        )
    rows = []
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
            "markers": counts.get("markers", 0),
            "gaps": counts.get("gaps", 0),
            "delivered": s.delivered if s else 0,
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
    from collector.errors import UsageError

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


def run(args: argparse.Namespace) -> int:
    from collector.commands._common import spool_folder
    from collector.delivery.opening import open_spool
    from collector.delivery.spool import DB_NAME

    root = spool_folder(args)
    sessions: list[dict[str, Any]] = []
    if (root / DB_NAME).exists():
        with open_spool(root) as spool:
            sessions = list_sessions(spool)
    if args.json:
        print(json.dumps(sessions, indent=2))
    else:
        from collector.capture.pause import pause_notice

        notice = pause_notice()  # a pause left on removes screenshots from every later session
        if notice:
            print(notice)
        print(format_sessions(sessions, root))
    return 0


def _local(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z") if iso else "-"


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _kept(s: dict[str, Any]) -> str:
    """Items readable on this machine (kept copies, plus items still in the spool) of all spooled."""
    total = s["delivered"] + s["pending"] + s["failed"]
    here = min(total, s["kept_items"] + s["pending"] + s["failed"])
    if not total:
        return "-"
    return "all" if here == total else "none" if here == 0 else f"{here}/{total}"


def format_sessions(sessions: list[dict[str, Any]], root) -> str:
    if not sessions:
        return f"No captures in {root}."
    # A replay keeps its recording's own times: shown in RECORDED when it is not when it was captured.
    recorded = any(
        s["started_at"] and s["captured_at"] and abs(_unix(s["started_at"]) - _unix(s["captured_at"])) > 300
        for s in sessions
    )
    header = (
        "CAPTURED", *(("RECORDED",) if recorded else ()), "DURATION", "KIND", "BLOCK", "SAMPLES", "SHOTS",
        "SKIPPED", "MARKERS", "DELIV/PEND/FAIL", "KEPT", "CAPTURE",
    )  # fmt: skip
    rows = [header]
    for s in sessions:
        kind = s["kind"] or "?"
        if s.get("state") in ("running", "interrupted"):
            kind += f" ({s['state']})"
        markers = "-" if s["markers"] is None else str(s["markers"])
        rows.append((
            _local(s.get("captured_at")), *((_local(s["started_at"]),) if recorded else ()),
            _duration(s["duration_s"]), kind, (s["block_title"] or s["block_id"] or "-")[:32],
            f"{s['samples']:,}", str(s["screenshots"]), _or_dash(s["screenshots_skipped"]), markers,
            f"{s['delivered']}/{s['pending']}/{s['failed']}", _kept(s), s["capture_id"],
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    from collector.delivery.spool import LOSS_REASONS

    for s in sessions:
        for loss in s["lost"]:
            why = LOSS_REASONS.get(loss["reason"], loss["reason"])
            lines.append(f"  {s['capture_id'][:8]}: {loss['count']} chunk(s) of {loss['stream_id']} {why}")
    if any(s.get("state") == "interrupted" for s in sessions):
        lines.append(
            "interrupted: the collector was stopped before it finished (killed, crashed); it was finished "
            "from what it had spooled."
        )
    lines.append(
        "Review one with `collector review CAPTURE_ID` (or --last: the last one made); "
        "export it with `collector export`."
    )
    return "\n".join(lines)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"
