"""`collector fit`: check each EEG channel's contact before recording, like a headset app's horseshoe.

Exit 0 when the fit is good (no channel bad for 3 s), 1 at --timeout (naming the channels and
what to do), 5 when there is no stream. See collector/core/fit.py for the grades.
"""

from __future__ import annotations

import argparse
import sys
import time

from collector.commands._common import add_verbose
from collector.errors import EXIT_FAILURE, EXIT_OK

GRADE_STYLE = {"good": "bold green", "fair": "bold yellow", "bad": "bold red"}


def add_source_options(p: argparse.ArgumentParser) -> None:
    """The EEG source options of `collector run` (same names, same defaults)."""
    p.add_argument("--profile", metavar="NAME|PATH", help="a profile from profiles/ or a TOML file")
    eeg = p.add_argument_group("EEG")
    eeg.add_argument("--device", choices=("lsl", "muse"), help="EEG source (default lsl)")
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
        help="check the headset's fit: contact quality per channel, before recording",
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


def band_settings(profile):
    from collector.core.bandpower import BandSettings

    a = profile.analysis
    return BandSettings(window_s=a.window_s, step_s=a.step_s, segment_s=a.segment_s, bands=dict(a.bands))


def fit_line(elapsed_s: float, channels: dict, streak: int, needed: int) -> str:
    """One line per second for logs: `fit 00:05 TP9 good, AF7 fair (line noise) · good for 2/3 s`."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    cells = ", ".join(f"{ch} {f.label()}" for ch, f in channels.items())
    return f"fit {minutes:02d}:{seconds:02d} {cells} · good for {min(streak, needed)}/{needed} s"


def fit_table(elapsed_s: float, channels: dict, streak: int, needed: int, timeout_s: float):
    """The terminal view: one column per channel, in the order the headset lists them (left to right)."""
    from rich.table import Table

    table = Table(
        title=f"Headset fit · {int(elapsed_s)} s of {timeout_s:g} · "
        f"good for {min(streak, needed)}/{needed} s",
        caption="Ctrl-C to stop",
        expand=False,
    )
    for ch in channels:
        table.add_column(ch, justify="center")
    table.add_row(*(f"[{GRADE_STYLE[f.grade]}]{f.grade}[/]" for f in channels.values()))
    table.add_row(*(f.reason or "" for f in channels.values()))
    table.add_row(*(f"{f.ptp_uv:.0f} µV p-p" if f.ptp_uv is not None else "" for f in channels.values()))
    return table


def check_fit(source, description, profile, *, timeout_s: float, require: str, log_format: str, out=None):
    """Run the fit check on an open source, drawing it live in a terminal or one line a second."""
    from collector.capture.logformat import format_line
    from collector.core.fit import run_fit_check

    out = out or sys.stdout
    needed = 3
    interactive = out.isatty() and log_format == "text"
    if interactive:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        with Live(console=console, auto_refresh=False, transient=False) as live:

            def draw(elapsed, channels, streak):
                live.update(fit_table(elapsed, channels, streak, needed, timeout_s), refresh=True)

            return run_fit_check(
                source, description, settings=band_settings(profile), timeout_s=timeout_s,
                needed_s=needed, require=require, on_tick=draw,
            )  # fmt: skip

    def line(elapsed, channels, streak):
        # The collector's one line layout (collector/capture/logformat.py): time, level, message, event=fit.
        fields = {"event": "fit"}
        if log_format == "json":
            fields |= {
                "elapsed_s": round(elapsed, 1), "good_for_s": min(streak, needed),
                "channels": {c: {"grade": f.grade, "reason": f.reason or None} for c, f in channels.items()},
            }  # fmt: skip
        text = format_line(log_format, "info", fit_line(elapsed, channels, streak, needed), fields)
        print(text, file=out, flush=True)

    return run_fit_check(
        source, description, settings=band_settings(profile), timeout_s=timeout_s,
        needed_s=needed, require=require, on_tick=line,
    )  # fmt: skip


def describe_failure(result, require: str) -> str:
    bad = result.not_good(require)
    listing = ", ".join(f"{ch} {f.label()}" for ch, f in bad.items())
    return f"{listing}. To fix: {result.advice(require)}."


def run(args: argparse.Namespace) -> int:
    from collector.commands.run import open_eeg, profile_from_args

    if not args.timeout > 0:
        from collector.errors import UsageError

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
            from collector.capture.logformat import format_line

            sentence = format_line("json", "info", sentence, {"event": "fit_good"})
        print(sentence, flush=True)
        return EXIT_OK
    failure = describe_failure(result, args.require)
    print(f"collector: The fit is not good after {result.elapsed_s:.0f} s: {failure}", file=sys.stderr)
    return EXIT_FAILURE
