"""A capture kept on this machine, as `review`, `export` and `demo` pick and read it: CAPTURE_ID or
--last, the spool opened at that capture, and its review page written."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collector.commands._common import spool_folder
from collector.delivery.opening import open_spool_to_read
from collector.delivery.spool import DB_NAME, Spool
from collector.errors import UsageError
from collector.review.captures import find_capture
from collector.review.export import open_private
from collector.review.page import load_review, render_review


def add_capture_choice(parser: argparse.ArgumentParser) -> None:
    """CAPTURE_ID (a unique prefix is enough) or --last: which kept capture a command works on."""
    parser.add_argument("capture_id", nargs="?", metavar="CAPTURE_ID", help="a capture id or a unique prefix")
    parser.add_argument("--last", action="store_true", help="the newest capture (the default)")


def open_capture(root: Path, capture_id: str | None, last: bool) -> tuple[Spool, dict[str, Any]]:
    """(spool, session row) for CAPTURE_ID or --last in the spool folder `root`; UsageError (exit 2)
    when there is none."""
    if capture_id is not None and last:
        raise UsageError("Give either CAPTURE_ID or --last, not both (see `collector sessions` for the ids).")
    if capture_id is not None and not capture_id.strip():
        raise UsageError("CAPTURE_ID is empty. Pass an id from `collector sessions`, or --last.")
    root = spool_folder(root)
    if not (root / DB_NAME).exists():
        raise UsageError(f"There is no spool at {root}: nothing was captured there. Pass --spool DIR.")
    spool = open_spool_to_read(root)
    try:
        return spool, find_capture(spool, capture_id, last)
    except BaseException:
        spool.close()
        raise


def nothing_kept_error(session: dict[str, Any]) -> UsageError:
    if session.get("finished") and not session.get("samples") and not session.get("screenshots"):
        # Nothing was captured at all: not a pruning question (0 samples were never kept).
        return UsageError(
            f"Capture {session['capture_id']} recorded nothing: 0 EEG samples and no screenshots (the "
            "stream sent no sample before the capture stopped). Check the source with `collector fit`."
        )
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


def write_review_page(spool: Spool, session: dict[str, Any], out: str | None) -> Path:
    """The capture's review page written to `out` (default ./review-<capture>.html), readable by the
    owner only (it holds EEG and screenshots); closes the spool. Returns the page's full path."""
    try:
        data = load_review(spool, session)
    finally:
        spool.close()
    if data.empty:
        raise nothing_kept_error(session)
    path = Path(out).expanduser() if out else Path(f"review-{session['capture_id'][:8]}.html")
    page = render_review(data)
    try:
        with open_private(path) as f:  # also when the file was already there with a wider mode
            f.write(page.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"Cannot write {path} ({exc.strerror or exc}). Choose another --out.") from None
    return path.resolve()
