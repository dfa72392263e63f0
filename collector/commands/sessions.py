"""`collector sessions [--json] [--spool DIR]`: the captures this machine remembers, newest last."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from collector.capture.pause import pause_notice
from collector.commands import summary
from collector.commands._common import add_spool_option, add_verbose, spool_dir, spool_folder
from collector.delivery.opening import open_spool_to_read
from collector.delivery.spool import DB_NAME, LOSS_REASONS
from collector.review.captures import list_sessions


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help=summary("sessions"),
        description="The captures in the spool, newest last: start time, duration, kind, block, samples, "
        "screenshots, markers, and delivered/pending/failed items. `collector review` and "
        "`collector export` take a capture id from this list.",
    )
    add_spool_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_verbose(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = spool_folder(spool_dir(args))
    sessions: list[dict[str, Any]] = []
    if (root / DB_NAME).exists():
        with open_spool_to_read(root) as spool:
            sessions = list_sessions(spool)
    if args.json:
        print(json.dumps(sessions, indent=2))
    else:
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
    total = s["delivered"] + s.get("local", 0) + s["pending"] + s["failed"]
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
        "SKIPPED", "BLACK", "MARKERS", "DELIV/PEND/FAIL", "KEPT", "CAPTURE",
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
            f"{s['samples']:,}", str(s["screenshots"]), _or_dash(s["screenshots_skipped"]),
            _or_dash(s.get("black_frames")), markers,
            f"{s['delivered']}/{s['pending']}/{s['failed']}", _kept(s), s["capture_id"],
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
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
