"""`collector fit`: check each EEG channel's contact before recording, like a headset app's horseshoe.

Exit 0 when the fit is good (no channel bad for 3 s), 1 at --timeout (naming the channels and
what to do), 5 when there is no stream. See collector/core/fit.py for the grades and
collector/commands/_fit.py for the live view.
"""

from __future__ import annotations

import argparse
import sys
import time

from collector.capture.logformat import format_line
from collector.commands import summary
from collector.commands._common import add_verbose
from collector.commands._fit import check_fit, describe_failure
from collector.commands._sources import add_device_options, open_eeg, profile_from_args
from collector.errors import EXIT_FAILURE, EXIT_OK, UsageError


def add_source_options(p: argparse.ArgumentParser) -> None:
    """The EEG source options of `collector run` (same names, same defaults)."""
    p.add_argument("--profile", metavar="NAME|PATH", help="a profile from profiles/ or a TOML file")
    eeg = p.add_argument_group("EEG")
    add_device_options(eeg, aux=False)
    eeg.add_argument("--address", metavar="MAC", help="Muse address (default: the first found)")
    eeg.add_argument(
        "--model", default=None, help="Muse model: auto, muse-2016, muse-2, muse-s, muse-s-athena"
    )
    eeg.add_argument("--stream-name", help="LSL stream name")
    eeg.add_argument("--stream-type", help="LSL stream type (default EEG)")
    eeg.add_argument("--source-id", help="LSL source id")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit",
        help=summary("fit"),
        description="Show each EEG channel's contact quality once a second (good / fair / bad, with "
        "the reason: flat, railed, noisy, line noise; no signal when no sample came for a second), from the "
        "same quality flags as the chunks. "
        "Ends by itself when no channel has been bad for 3 s (exit 0), at --timeout (exit 1, naming "
        "the channels and what to do) or when there is no stream (exit 5). Nothing is recorded and no "
        "marker stream is followed.",
    )
    add_source_options(p)
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="give up after S seconds, the wait for the stream (a Muse connecting) included (default 60)",
    )
    p.add_argument(
        "--require",
        choices=("fair", "good"),
        default="fair",
        help="fair (default): no channel bad; good: every channel good (no line noise, no artifacts)",
    )
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="lines when not in a terminal"
    )
    add_verbose(p)
    # Nothing is recorded, so no marker stream is followed (or warned about).
    p.set_defaults(func=run, chunk_seconds=None, flush_timeout=None, screen=None, markers="off")


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds; {args.timeout:g} is invalid.")
    profile = profile_from_args(args)
    started = time.monotonic()
    # --timeout bounds the whole check, waiting for the stream (a Muse's connection) included.
    source, description = open_eeg(profile, open_timeout_s=args.timeout)  # no stream: exit 5
    try:
        result = check_fit(
            source, description, profile, require=args.require, log_format=args.log_format,
            timeout_s=max(0.0, args.timeout - (time.monotonic() - started)),
        )  # fmt: skip
    finally:
        source.close()
    if result.ok:
        grades = ", ".join(f"{c} {f.label()}" for c, f in result.channels.items())
        sentence = f"Fit is good: no channel bad for 3 s ({grades}). Start recording with `collector run`."
        if args.log_format == "json":  # a lab's parser gets JSON on every line
            sentence = format_line("json", "info", sentence, {"event": "fit_good"})
        print(sentence, flush=True)
        return EXIT_OK
    failure = describe_failure(result, args.require)
    print(f"collector: The fit is not good after {result.elapsed_s:.0f} s: {failure}", file=sys.stderr)
    return EXIT_FAILURE
