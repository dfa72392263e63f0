"""`collector upload [--spool DIR]`: deliver everything waiting in the spool, then exit.

Exit 0 when nothing is pending any more, 6 when items remain (deadline, Ctrl-C, server still
failing), 7 when items were rejected for good during this upload (kept as failed, named in the
closing line), 3 when the key is refused, 4 when a workspace or block is not found, 1 when the
disk holding the spool is full. Nothing is ever removed from the spool by a failure: run the
command again once the cause is fixed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from collector.commands import summary
from collector.commands._common import add_api_options, add_spool_option, api_settings, spool_dir
from collector.delivery.opening import open_spool
from collector.delivery.spool import DB_NAME
from collector.delivery.uploader import STOP_GRACE_S, Uploader
from collector.errors import EXIT_DATA_LOST, EXIT_NOT_FOUND, EXIT_OK, EXIT_PENDING, SpoolError, UsageError

log = logging.getLogger("collector.upload")
PROGRESS_EVERY_S = 15.0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "upload",
        help=summary("upload"),
        description="Deliver every item waiting in the spool (oldest first), then exit: 0 when the spool "
        "is empty, 6 when items remain, 7 when items were rejected for good, 3 when the key is refused, "
        "4 when a workspace is not found.",
    )
    add_spool_option(parser)
    parser.add_argument(
        "--flush-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS and leave the rest in the spool (default: no limit; Ctrl-C stops)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="move items the server rejected back to pending first (after fixing the cause)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        metavar="PER_MIN",
        help="requests per minute at most (default 100; the API allows 120 per key)",
    )
    add_api_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0:  # no upper bound: a self-hosted API may allow more than the public 120/min
        raise UsageError(
            f"--rate must be a positive number of requests per minute; {args.rate:g} is invalid."
        )
    root = spool_dir(args)
    if not (root / DB_NAME).exists():
        print(f"Nothing to send: there is no spool at {root}.", file=sys.stderr)
        return EXIT_OK
    settings = api_settings(args)
    with open_spool(root) as spool:
        if args.retry_failed:
            moved = spool.retry_failed()
            print(f"Moved {moved} failed item(s) back to pending.", file=sys.stderr)
        pending = spool.pending_count()
        failed = spool.failed_count()
        if pending == 0:
            print(f"Nothing to send: the spool at {root} has no pending items.", file=sys.stderr)
            _report_failed(failed)
            return EXIT_OK
        print(f"Sending {pending} item(s) from {root} ...", file=sys.stderr)

        rejected: dict[str, list[int]] = {}  # stream -> chunk indexes rejected for good in this upload

        def on_event(event: str, **fields) -> None:
            if event == "failed":  # paused/parked are reported once, at the end
                rejected.setdefault(fields["stream_id"], []).append(fields["chunk_index"])
                print(f"collector: {fields['message']}", file=sys.stderr)

        uploader = Uploader(spool, settings, rate_per_min=args.rate, on_event=on_event)
        with _TermAsInterrupt():
            uploader.start()
            interrupted = False
            try:
                _wait(uploader, args.flush_timeout, total=pending)
            except KeyboardInterrupt:
                interrupted = True
            # The deadline holds: no further flush, only a request on the wire gets its short grace.
            left = uploader.stop(0.0, grace_s=None if interrupted else STOP_GRACE_S)

        counters = uploader.counters()
        delivered = counters["delivered"]
        paused = uploader.paused_error
        if isinstance(paused, SpoolError):  # a full or failing disk: its own one line
            print(
                f"collector: Delivered {delivered} item(s), then stopped: {paused} "
                f"{left} item(s) wait in {root}.",
                file=sys.stderr,
            )
            return paused.exit_code
        if paused is not None:
            print(
                f"collector: Delivery paused after {delivered} item(s): {paused} {left} item(s) are kept in "
                f"{root}; run `collector upload` again once fixed.",
                file=sys.stderr,
            )
            return paused.exit_code
        parked = uploader.parked_errors
        if parked and left:
            print(f"collector: {parked[0]} {left} item(s) are kept in {root}.", file=sys.stderr)
            return EXIT_NOT_FOUND
        if rejected:  # exit 7: these are not on the server, and sending them again will not help
            named = "; ".join(
                f"{len(chunks)} chunk(s) of {stream} (chunk {', '.join(map(str, sorted(chunks)[:5]))}"
                + (", …" if len(chunks) > 5 else "") + ")"
                for stream, chunks in rejected.items()
            )  # fmt: skip
            print(
                f"collector: DATA LOST: the server rejected {counters['failed']} item(s) for good: {named}. "
                f"They are kept in {root} as failed; see `collector status`, fix the cause, then "
                "`collector upload --retry-failed`."
                + (f" {left} other item(s) are still waiting." if left else ""),
                file=sys.stderr,
            )
            return EXIT_DATA_LOST
        set_aside = spool.failed_count() - failed
        if set_aside > 0:  # unreadable items the spool set aside so their streams could flow
            print(
                f"collector: DATA LOST: {set_aside} item(s) could not be read back from the spool and were "
                f"set aside as failed (kept in {root}); `collector status` shows which and why."
                + (f" {left} other item(s) are still waiting." if left else ""),
                file=sys.stderr,
            )
            return EXIT_DATA_LOST
        _report_failed(spool.failed_count())  # earlier runs' rejects too: they wait for --retry-failed
        if left:
            reason = "interrupted" if interrupted else "the --flush-timeout was reached"
            if counters["last_error"]:
                reason += f"; last error: {counters['last_error']}"
            print(
                f"collector: {left} item(s) are still waiting in {root} ({reason}). "
                "Run `collector upload` again to send them.",
                file=sys.stderr,
            )
            return EXIT_PENDING
        spool.prune_delivered()
        spool.compact()
        print(f"Delivered {delivered} item(s); nothing is pending in {root}.", file=sys.stderr)
        return EXIT_OK


def _wait(uploader, timeout_s: float | None, total: int = 0) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if sys.stderr.isatty() and total:
        _wait_with_bar(uploader, deadline, total)
        return
    while True:
        step = PROGRESS_EVERY_S if deadline is None else min(PROGRESS_EVERY_S, deadline - time.monotonic())
        if step <= 0 or uploader.wait_idle(step):
            return
        c = uploader.counters()
        log.info(
            "sent %d, %s pending, %.0f/min%s",
            c["delivered"],
            c["pending"],
            c["rate_per_min"],
            f", last error: {c['last_error']}" if c["last_error"] else "",
        )


def _wait_with_bar(uploader, deadline: float | None, total: int) -> None:
    """In a terminal: a rich progress bar of the items delivered, with the current rate."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("delivering"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as bar:
        task = bar.add_task("upload", total=total, rate="")
        while True:
            step = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            done = step <= 0 or uploader.wait_idle(step)
            c = uploader.counters()
            rate = f"{c['rate_per_min']:.0f}/min" if c.get("rate_per_min") else ""
            bar.update(task, completed=min(total, c["delivered"]), rate=rate)
            if done:
                return


def _report_failed(failed: int) -> None:
    if failed:
        print(
            f"collector: {failed} item(s) were rejected by the server and are kept as failed; "
            "see `collector status`, fix the cause, then `collector upload --retry-failed`.",
            file=sys.stderr,
        )


class _TermAsInterrupt:
    """SIGTERM stops like Ctrl-C: nothing more is sent, the spool keeps the rest."""

    def __enter__(self):
        self._old = None
        try:
            self._old = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread (tests calling run() from a thread)
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
