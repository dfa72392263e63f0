"""`collector export [CAPTURE_ID | --last] --format csv|edf --out PATH [--spool DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.commands import summary
from collector.commands._common import add_spool_option, add_verbose, spool_dir
from collector.commands._kept import add_capture_choice, nothing_kept_error, open_capture
from collector.errors import UsageError
from collector.review.export import load_samples, write_export
from collector.review.kept import NOT_KEPT_LABEL


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help=summary("export"),
        description="Write the EEG samples of a capture kept on this machine: CSV in muselsl's layout "
        "(timestamps in Unix seconds, one column per channel, Marker) or EDF+ with markers as annotations. "
        "Gaps stay gaps: no sample is invented.",
    )
    add_capture_choice(parser)
    parser.add_argument("--format", choices=("csv", "edf"), required=True, help="file format")
    parser.add_argument("--out", metavar="PATH", required=True, help="the file to write")
    add_spool_option(parser)
    add_verbose(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spool, session = open_capture(spool_dir(args), args.capture_id, args.last)
    try:
        samples = load_samples(spool, session["capture_id"])
    finally:
        spool.close()
    if samples is None or not len(samples.times_s):
        if session.get("samples") == 0 and session.get("kept_items"):
            raise UsageError(
                f"Capture {session['capture_id']} has no EEG (screenshots only); nothing to export."
            )
        raise nothing_kept_error(session)
    out = Path(args.out).expanduser()
    try:
        report = write_export(samples, args.format, out)
    except OSError as exc:
        raise UsageError(f"Cannot write {out} ({exc.strerror or exc}). Choose another --out.") from None
    except ValueError as exc:
        raise UsageError(f"Cannot export capture {session['capture_id']} as {args.format}: {exc}.") from None
    line = (
        f"{len(samples.times_s):,} samples of {len(samples.channels)} channels, "
        f"{len(samples.markers)} markers"
    )
    if report is not None:
        worst = max(report.resolution_uv.values())
        line += f"; 16-bit resolution up to {worst:.4f} µV; {report.gaps} gap(s) marked {'BAD_ACQ_SKIP'}"
        if report.undelivered:
            line += (
                f"; {report.undelivered:,} sample(s) the source did not deliver (non-finite) in "
                f"{report.undelivered_stretches} stretch(es), 0 µV marked BAD_ACQ_SKIP"
            )
        if report.not_kept:
            line += f"; {report.not_kept} stretch(es) no longer on this machine marked {NOT_KEPT_LABEL}"
    print(f"{out.resolve()} ({line})")
    if samples.missing.any:  # after the path, so scripts reading stdout still get it first
        where = f"marked {NOT_KEPT_LABEL} in the EDF" if args.format == "edf" else "a jump in timestamps"
        text = samples.missing.describe(session["capture_id"])
        print(f"collector: warning: {text} ({where}).", file=sys.stderr)
    return 0
