"""`collector review [CAPTURE_ID | --last] [--out FILE.html] [--spool DIR]`: one capture as a page."""

from __future__ import annotations

import argparse
from pathlib import Path

from collector.commands._common import add_capture_choice, add_spool_option, add_verbose, open_capture


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "review",
        help="write a capture's review page (one offline HTML file)",
        description="Write one self-contained HTML page for a capture: band powers over time with zoom, "
        "signal quality, markers, gaps and pauses, the screenshots on the same time axis, and averages "
        "per block of time. It opens offline and loads nothing from the network.",
    )
    add_capture_choice(parser)
    parser.add_argument(
        "--out", metavar="FILE.html", help="where to write (default: ./review-<capture>.html)"
    )
    add_spool_option(parser)
    add_verbose(parser)
    parser.set_defaults(func=run)


def nothing_kept_error(session: dict):
    from collector.errors import UsageError

    days = session.get("retention_days")
    why = (
        "its profile keeps nothing after delivery (retention_days = 0)"
        if days == 0
        else f"its items were delivered more than retention_days = {days:g} days ago and pruned"
        if days
        else "nothing of it was kept"
    )
    return UsageError(
        f"Nothing of capture {session['capture_id']} is kept on this machine: {why}. "
        "Set [delivery] retention_days in the profile to keep the next ones."
    )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (it holds EEG and screenshots), also when
    the file was already there with a wider mode."""
    from collector.review.export import open_private

    with open_private(path) as f:
        f.write(data)


def run(args: argparse.Namespace) -> int:
    from collector.errors import UsageError
    from collector.review.page import load_review, render_review

    spool, session = open_capture(args)
    try:
        data = load_review(spool, session)
    finally:
        spool.close()
    if data.empty:
        raise nothing_kept_error(session)
    out = Path(args.out).expanduser() if args.out else Path(f"review-{session['capture_id'][:8]}.html")
    page = render_review(data)
    try:
        write_private(out, page.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"Cannot write {out} ({exc.strerror or exc}). Choose another --out.") from None
    print(out.resolve())
    return 0
