"""`collector run --workspace W --block B`: capture EEG and screens during a practice session."""

from __future__ import annotations

import argparse
import logging

from collector.commands import summary
from collector.commands._capture import (
    add_capture_options,
    capture_live,
    check_target,
    make_output,
)
from collector.commands._common import positive_seconds, spool_dir
from collector.commands._sources import add_device_options, profile_from_args
from collector.errors import UsageError

log = logging.getLogger("collector.run")  # the capture's own log lines (scripts/check_faults.py writes one)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help=summary("run"),
        description="Capture EEG and screenshots during a practice session and deliver them.",
    )
    add_capture_options(p)
    eeg = p.add_argument_group("EEG")
    add_device_options(eeg)
    eeg.add_argument("--no-eeg", action="store_true", help="capture screens only")
    eeg.add_argument("--address", metavar="MAC", help="Muse address (default: the first found)")
    eeg.add_argument(
        "--model", default=None, help="Muse model: auto, muse-2016, muse-2, muse-s, muse-s-athena"
    )
    eeg.add_argument("--stream-name", help="LSL stream name")
    eeg.add_argument("--stream-type", help="LSL stream type (default EEG)")
    eeg.add_argument("--source-id", help="LSL source id")
    eeg.add_argument(
        "--markers",
        metavar="auto|NAME|off",
        help="LSL marker stream to carry as events (default auto: the EEG stream's own NAME-markers, else "
        "the only marker stream on its host not named after another stream; never a guess among several)",
    )
    scr = p.add_argument_group("screen")
    scr.add_argument(
        "--screen", choices=("auto", "on", "off"), help="screenshots (default auto: when a display exists)"
    )
    scr.add_argument(
        "--no-screen", dest="screen", action="store_const", const="off", help="same as --screen off"
    )
    scr.add_argument(
        "--screen-interval", type=float, metavar="S", help="seconds between screenshots (default 5)"
    )
    scr.add_argument(
        "--screen-max-width", type=int, metavar="PX", help="downscale wider screenshots (default 1920)"
    )
    scr.add_argument(
        "--screen-keepalive", type=float, metavar="S", help="send a frame at least this often (default 60)"
    )
    scr.add_argument(
        "--screen-backend",
        choices=("auto", "x11", "portal", "grim"),
        help="how screenshots are taken (default auto: on Wayland the desktop portal, then grim, then "
        "x11; elsewhere x11, i.e. mss)",
    )
    scr.add_argument(
        "--monitor",
        type=monitor_choice,
        help="monitor number, 'all' or 'primary' (default: the primary monitor)",
    )
    eeg.add_argument(
        "--fit-check",
        type=float,
        metavar="S",
        help="check the headset's fit first (as `collector fit`); start when it is good or after S "
        "seconds with a warning naming the channels",
    )
    p.add_argument("--duration", type=positive_seconds, metavar="S", help="stop by itself after S seconds")
    p.add_argument("--capture-kind", choices=("run", "demo"), default="run", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def monitor_choice(text: str) -> str:
    """argparse type for --monitor: a monitor number (1 is the first, 0 all), `all` or `primary`."""
    if text.strip().lower() in ("all", "primary") or text.isdigit():
        return text.strip().lower()
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a monitor: give its number (1, 2, ...), 'all' or 'primary'"
    )


def run(args: argparse.Namespace) -> int:
    fit_check_s = getattr(args, "fit_check", None)
    if fit_check_s is not None and not fit_check_s > 0:  # as `fit --timeout`: refused, not skipped
        raise UsageError(f"--fit-check must be a positive number of seconds; {fit_check_s:g} is invalid.")
    profile = profile_from_args(args)
    output = make_output(args.log_format, int(args.verbose or 0))
    settings, workspace_id, block_id = check_target(args, profile)
    return capture_live(
        profile,
        output,
        spool_root=spool_dir(args),
        offline=args.offline,
        settings=settings,
        workspace_id=workspace_id,
        block_id=block_id,
        block_title=getattr(args, "block_title", None),
        duration_s=args.duration,
        no_eeg=args.no_eeg,
        fit_check_s=fit_check_s,
        log_format=args.log_format,
        kind=args.capture_kind,
        unchecked=args.unchecked,
        api_silent=args.api_silent,
    )
