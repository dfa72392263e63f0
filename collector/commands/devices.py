"""`collector devices`: Muse headsets in Bluetooth range, the LSL streams visible from here, and the
recording formats `collector replay` reads."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import threading
from dataclasses import asdict
from typing import Any

from collector.commands import summary
from collector.commands._common import add_verbose
from collector.devices.brainflow.boards import describe_boards, short_name
from collector.devices.lsl.discovery import list_streams
from collector.devices.muse import MuseScan, list_muses
from collector.devices.recordings.detect import FORMATS
from collector.errors import EXIT_NO_SOURCE, EXIT_OK, NoSourceError

MUSE_SCAN_TIMEOUT_S = 20.0  # muselsl scans for 10.5 s, plus its start-up


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "devices",
        help=summary("devices"),
        description=(
            "List Muse headsets in Bluetooth range (muselsl's scan, about 11 s), the LSL streams "
            "visible on this network (name, type, source_id, channels, rate, host) and the recording "
            "formats `collector replay` reads (XDF, muselsl CSV, Mind Monitor CSV, EDF/EDF+, BDF) and the "
            "boards BrainFlow supports (`collector run --device brainflow --board NAME|ID`). "
            "Use a stream's name or source_id with `collector run --stream-name/--source-id`. Exit 5 "
            "when it finds neither a headset nor a stream."
        ),
    )
    p.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="seconds to look for LSL streams (default 2)"
    )
    p.add_argument("--no-bluetooth", action="store_true", help="skip the Muse (Bluetooth) scan")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verbose(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scan: dict[str, MuseScan] = {}
    scanner = None
    if args.no_bluetooth:
        scan["result"] = MuseScan((), "Bluetooth scan skipped (--no-bluetooth)")
    else:
        scanner = threading.Thread(
            target=lambda: scan.__setitem__("result", list_muses(MUSE_SCAN_TIMEOUT_S)),
            name="muse-scan",
            daemon=True,
        )
        scanner.start()
    streams = list_streams(max(0.1, args.timeout))
    if scanner is not None:
        scanner.join(MUSE_SCAN_TIMEOUT_S + 5)
    muse = scan.get("result") or MuseScan((), "the Bluetooth scan did not finish")

    if args.json:
        doc: dict[str, Any] = {
            "muse": {"headsets": [asdict(m) for m in muse.muses], "reason": muse.reason},
            "lsl_streams": [asdict(s) for s in streams],
            "replay_formats": [{"format": key, "description": text} for key, text in FORMATS],
            "brainflow_boards": [{"name": n, "id": i} for n, i in _brainflow_boards()],
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return _exit_code(muse, streams)

    out = sys.stdout
    print("Muse headsets (Bluetooth):", file=out)
    for m in muse.muses:
        print(f"  {m.name}  {m.address}   use: collector run --device muse --address {m.address}", file=out)
    if not muse.muses:
        print(f"  none: {muse.reason}", file=out)
    print(f"LSL streams (looked for {args.timeout:g} s):", file=out)
    if not streams:
        print("  none: start one (e.g. `muselsl stream --lsltime`) or wait longer with --timeout", file=out)
    else:
        _print_streams(streams, out)
    print("Recordings `collector replay FILE` reads (recognised from the content):", file=out)
    for _, text in FORMATS:
        print(f"  {text}", file=out)
    boards = _brainflow_boards()
    print("BrainFlow boards (collector run --device brainflow --board NAME|ID):", file=out)
    if boards:
        print(textwrap.fill(", ".join(f"{short_name(n).lower()} ({i})" for n, i in boards), 100,
                            initial_indent="  ", subsequent_indent="  "), file=out)  # fmt: skip
    else:
        print("  none: BrainFlow is not installed (pip install 'brainflow>=5.23')", file=out)
    return _exit_code(muse, streams)


def _brainflow_boards() -> list[tuple[str, int]]:
    """The boards the installed BrainFlow supports ([] when it is not installed)."""
    try:
        return describe_boards()
    except NoSourceError:
        return []


def _print_streams(streams, out) -> None:
    rows = [("NAME", "TYPE", "SOURCE_ID", "CHANNELS", "RATE_HZ", "HOST")]
    for s in streams:
        labels = ",".join(s.labels) if s.labels else ""
        channels = f"{s.channel_count}" + (f" ({labels})" if labels else "")
        rate = "irregular" if s.sfreq == 0 else f"{s.sfreq:g}"
        rows.append((s.name, s.type, s.source_id or "-", channels, rate, s.hostname))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True))
        print(f"  {cells}  {r[-1]}", file=out)


def _exit_code(muse, streams) -> int:
    """5 (no data source) when there is neither a headset nor a stream to capture from."""
    return EXIT_OK if muse.muses or streams else EXIT_NO_SOURCE
