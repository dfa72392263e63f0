"""`collector status [--spool DIR] [--json]`: what the spool holds, per capture."""

from __future__ import annotations

import argparse
import json
import time

from collector.capture.pause import pause_fields, pause_notice
from collector.commands import summary
from collector.commands._common import add_spool_option, add_verbose, spool_dir
from collector.delivery.events import DELIVERY_RATE_KEY
from collector.delivery.opening import open_spool_to_read
from collector.delivery.spool import DB_NAME, Loss


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help=summary("status"),
        description="Per capture: delivered, pending, failed and dropped items, bytes held, the age of the "
        "oldest pending item and the last error.",
    )
    add_spool_option(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table: spool, exists, pending, failed, stored_bytes, pause_reason, "
        "delivering, delivery_rate, read_only, "
        "captures, losses, screen_pause, screen_pause_notice (see the README)",
    )
    add_verbose(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = spool_dir(args)
    if not (root / DB_NAME).exists():
        report = {"spool": str(root), "exists": False, "pending": 0, "failed": 0, "stored_bytes": 0,
                  "pause_reason": None, "delivering": False, "delivery_rate": None, "captures": [],
                  "losses": [], "read_only": False}  # fmt: skip
    else:
        with open_spool_to_read(root) as spool:
            captures = spool.stats()
            records = spool.record.captures()
            backends = {r["capture_id"]: (r["counts"] or {}).get("screen_backend") for r in records}
            report = {
                "spool": str(root),
                "exists": True,
                "pending": sum(c.pending for c in captures),
                "failed": sum(c.failed for c in captures),
                "stored_bytes": spool.stored_bytes(),
                "pause_reason": spool.pause_reason(),
                # Whether a live process holds the delivery lock (not a figure a killed one left).
                "delivering": spool.delivery_active(),
                "delivery_rate": _delivery_rate(spool),
                # The screen backend of each finished capture (x11, portal, grim), from its local record.
                "captures": [{**c.as_dict(), "screen_backend": backends.get(c.capture_id)} for c in captures],
                # What is not on the server, per capture, stream and reason (the closing lines' counts).
                "losses": [loss.as_dict() for loss in spool.losses()],
                "read_only": spool.read_only,
            }
    report["screen_pause"] = pause_fields()  # a pause left on holds for every later session
    report["screen_pause_notice"] = pause_notice()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_status(report))
    return 0


def format_status(report: dict) -> str:
    notice = [report["screen_pause_notice"]] if report.get("screen_pause_notice") else []
    if not report["exists"]:
        return "\n".join(notice + [f"Spool {report['spool']}: empty (nothing captured yet)."])
    lines = notice + [
        f"Spool {report['spool']}: {report['pending']} pending, {report['failed']} failed, "
        f"{_size(report['stored_bytes'])} held"
    ]
    if report["pause_reason"]:
        reason = report["pause_reason"]
        lines.append(reason if reason.startswith("Delivery paused") else f"Delivery paused: {reason}")
    rate = report.get("delivery_rate")
    if rate:
        lines.append(
            f"Delivering now at {rate['rate_per_min']:g} requests/min (adapts to the server; "
            f"ceiling {rate['ceiling_per_min']:g}/min)"
        )
    header = (
        "CAPTURE",
        "DELIVERED",
        "PENDING",
        "FAILED",
        "DROPPED",
        "BYTES",
        "OLDEST",
        "LOCAL",
        "SCREEN",
        "LAST ERROR",
    )
    rows = [header]
    for c in report["captures"]:
        rows.append((
            c["capture_id"], str(c["delivered"]), str(c["pending"]), str(c["failed"]), str(c["dropped"]),
            _size(c["bytes"]), _age(c["oldest_pending_age_s"]), str(c.get("local", 0)),
            c.get("screen_backend") or "-", c["last_error"] or "",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(r[1:-1], widths[1:], strict=True)]
        lines.append("  ".join(cells + [r[-1]]).rstrip())
    if not report["captures"]:
        lines.append("(no captures)")
    for loss in report.get("losses", []):
        lines.append(f"LOST in {loss['capture_id']}: {_describe(loss)}")
    if report.get("read_only"):
        lines.append("(read-only spool: shown as it is; nothing can be delivered or changed from here)")
    if report["pending"] and report.get("delivering"):
        lines.append("A collector process is delivering them now; run `collector status` again to follow it.")
    elif report["pending"]:
        lines.append(f"Send the pending items with `collector upload --spool {report['spool']}`.")
    return "\n".join(lines)


def _describe(loss: dict) -> str:
    return Loss(**{**loss, "chunks": tuple(loss["chunks"])}).describe()


def _delivery_rate(spool) -> dict | None:
    """The rate of the process delivering from this spool now (it refreshes it every 10 s), or None."""
    raw = spool.get_meta(DELIVERY_RATE_KEY)
    try:
        rate = json.loads(raw) if raw else None
        age_s = time.time() - float(rate["updated_unix"]) if rate else None
    except (ValueError, TypeError, KeyError):
        return None
    # A process killed mid-delivery leaves its last figure behind: only a live lock holder counts.
    if not rate or age_s is None or age_s > 60 or not spool.delivery_active():
        return None
    return {**rate, "age_s": round(max(0.0, age_s), 1)}


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
