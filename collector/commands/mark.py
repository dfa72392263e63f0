"""`collector mark TEXT`: put an event on the running capture's EEG timeline, at the moment it ran."""

from __future__ import annotations

import argparse
import time

from collector.capture.marks import MAX_TEXT, clean_text, process_start_ms, send_mark
from collector.capture.pause import PauseControl
from collector.commands import summary
from collector.commands._common import add_verbose
from collector.errors import NoSourceError, UsageError

_IMPORTED_MS = time.time() * 1000.0  # fallback "moment it ran" where /proc has no start time


def add_parser(sub) -> None:
    p = sub.add_parser(
        "mark",
        help=summary("mark"),
        description="Put an event with TEXT on the running `collector run`'s EEG timeline at the "
        "moment this command ran (within 50 ms); it is delivered in the EEG chunk that covers it, "
        "like an LSL marker. Bind it to a key for one-press notes. TEXT is at most 500 characters "
        "(longer: exit 2). Exit 5 when no capture is running.",
    )
    p.add_argument("text", nargs="+", metavar="TEXT", help="what happened (several words are joined)")
    add_verbose(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    moment_ms = process_start_ms() or _IMPORTED_MS
    text = " ".join(" ".join(args.text).split())
    if not text:
        raise UsageError("The mark's TEXT is empty; say what happened, e.g. `collector mark distracted`.")
    if len(text) > MAX_TEXT:  # a marker is a note, not a document: refused, never cut silently
        raise UsageError(
            f"The mark's TEXT is {len(text):,} characters; at most {MAX_TEXT} are allowed. Say it shorter."
        )
    text = clean_text(text)
    control = PauseControl()
    pid = control.running_pid()
    if pid is None:
        raise NoSourceError(
            "No capture is running, so there is no timeline to mark. Start one with `collector run`."
        )
    try:
        send_mark(control.state_dir, pid, text, moment_ms)
    except FileNotFoundError:
        raise NoSourceError(
            f"The running capture (pid {pid}) records no EEG yet (starting, or --no-eeg), so there is no "
            "timeline to mark. Try again once it shows EEG."
        ) from None
    clock = time.strftime("%H:%M:%S", time.localtime(moment_ms / 1000)) + f".{int(moment_ms % 1000):03d}"
    print(f"Marked {text!r} at {clock} in the running capture (pid {pid}).")
    return 0
