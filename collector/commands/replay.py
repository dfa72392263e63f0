"""`collector replay FILE --workspace W --block B`: send a recording through the live pipeline.

FILE is XDF, a muselsl or Mind Monitor CSV, or EDF/EDF+/BDF (collector/devices/recordings/detect.py
tells which from the content)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from collector.commands import summary
from collector.commands._capture import (
    add_capture_options,
    check_target,
    deliver_and_capture,
    make_output,
)
from collector.commands._common import spool_dir
from collector.commands._sources import profile_from_args
from collector.core.chunk import DELIVERY_CHUNK_BYTES, DELIVERY_CHUNK_S
from collector.devices.player import play_to_lsl
from collector.devices.recordings.source import RecordingSource
from collector.errors import UsageError
from collector.profiles.profile import load_profile

log = logging.getLogger(__name__)


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed takes a number or 'max', not {value!r}") from None
    if speed <= 0:
        raise argparse.ArgumentTypeError("--speed must be positive")
    return speed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "replay",
        help=summary("replay"),
        description="Replay a recording (EEG stream and markers) through the same pipeline as a "
        "live capture: same windows, chunks, format and delivery. Accepted: XDF, muselsl CSV, "
        "Mind Monitor CSV, EDF, EDF+ and BDF, recognised from the file's content.",
    )
    p.add_argument(
        "file", metavar="FILE", help="the recording: .xdf/.xdfz, .csv (muselsl, Mind Monitor), .edf/.bdf"
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="N|max",
        help="1 = real time (default), N = N times faster, max = as fast as possible",
    )
    p.add_argument(
        "--start-time",
        default="file",
        metavar="file|now|ISO-8601",
        help="time anchor of the first sample (default: the recording's own start); an ISO-8601 time "
        "without an offset (Z, +01:00) is this machine's local time",
    )
    p.add_argument(
        "--stream",
        metavar="NAME",
        help="stream to replay when the file has several: its name, source_id or the file's numeric "
        "stream id (one part of a restarted stream), or channels by label (e.g. 'Fpz-Cz,Pz-Oz')",
    )
    p.add_argument("--to-lsl", action="store_true", help="publish the recording as a live LSL stream instead")
    p.add_argument("--stream-name", help="with --to-lsl: LSL stream name (default: the recording's)")
    p.add_argument(
        "--loop",
        action="store_true",
        help="with --to-lsl: play the file again and again until Ctrl-C (as `collector demo` does); "
        "each pass's stamps follow the last one's",
    )
    add_capture_options(p)
    p.set_defaults(func=run)


def _start_time(value: str):
    if value in ("file", "now"):
        return value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--start-time {value!r} is not 'file', 'now' or an ISO-8601 time.") from None
    # No offset: this machine's local time (TZ), made explicit so the log can say which instant it is.
    return moment if moment.tzinfo is not None else moment.astimezone()


def _log_anchor(value: str, moment) -> None:
    local = (
        "" if _has_offset(value) else f" (no offset given: read as this machine's local time, {moment:%Z %z})"
    )
    log.info(
        "--start-time %s: the recording's start is anchored at %s UTC%s",
        value,
        moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", ""),
        local,
    )


def _has_offset(value: str) -> bool:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def _to_lsl(args) -> int:
    """Publish the file as a live LSL stream; say when it has been played (or stopped)."""
    unused = [flag for flag, value in (("--workspace", args.workspace), ("--block", args.block)) if value]
    if unused:
        raise UsageError(
            f"--to-lsl publishes the recording as an LSL stream and sends nothing to the API; "
            f"drop {' and '.join(unused)} (or drop --to-lsl to replay into a block)."
        )
    if args.loop and args.speed is None:
        raise UsageError(
            "--loop with --speed max would push the file without end as fast as possible; "
            "give a --speed N (1 = real time) with --loop."
        )
    stop = threading.Event()
    started = time.monotonic()
    if args.loop:
        print(f"--loop: playing {args.file} again and again; Ctrl-C to stop.", file=sys.stderr, flush=True)
    interrupted = False
    pushed = 0
    if args.speed is None:
        # As fast as possible: samples pushed before an inlet connects would reach nobody.
        print(
            "--speed max: the whole file is pushed as fast as possible once a consumer connects "
            "(e.g. `collector run --stream-name NAME`); waiting for it.",
            file=sys.stderr,
            flush=True,
        )
    try:
        pushed = play_to_lsl(
            args.file,
            stream_name=args.stream_name,
            speed=args.speed,  # None (max): blocks of 256 samples as fast as the outlet takes them
            loop=args.loop,
            stop_event=stop,
            stream=args.stream,
            wait_for_consumer_s=float("inf") if args.speed is None else None,
        )
    except KeyboardInterrupt:
        stop.set()
        interrupted = True
    wall = time.monotonic() - started
    if interrupted:
        print(f"Stopped playing {args.file} after {wall:.1f} s.", file=sys.stderr)
        return 130
    print(
        f"Played {args.file} to LSL: {pushed} samples in {wall:.1f} s; the stream has ended.", file=sys.stderr
    )
    return 0


def chunk_length_given(args: argparse.Namespace) -> bool:
    """True when the user chose the EEG chunk length: `--chunk-seconds`, or `[analysis] chunk_s` in
    the profile or one it extends (a value only inherited from the built-in default does not count)."""
    return args.chunk_seconds is not None or "chunk_s" in load_profile(args.profile).analysis.model_fields_set


def run(args: argparse.Namespace) -> int:
    if args.to_lsl:
        return _to_lsl(args)
    if args.loop:
        raise UsageError("--loop plays a file again and again as an LSL stream: it goes with --to-lsl.")
    start_time = _start_time(args.start_time)
    spool_root = spool_dir(args)  # a --spool that is a file is refused before the file is read
    profile = profile_from_args(args)
    delivery_sized = not chunk_length_given(args)
    if delivery_sized:
        # The recording is all there: send it in chunks sized for delivery (60 s, a few MB at most),
        # about 60 requests per hour of 4-channel EEG instead of 720. --chunk-seconds, or a
        # profile that sets [analysis] chunk_s itself, wins.
        profile = profile.with_overrides(analysis={"chunk_s": DELIVERY_CHUNK_S})
    output = make_output(args.log_format, int(args.verbose or 0))
    if not isinstance(start_time, str):
        _log_anchor(args.start_time, start_time)
    # Open the file first: a corrupt file is bad input (exit 2) whatever the network says.
    source = RecordingSource(
        args.file,
        stream=args.stream,
        start_time=start_time,
        speed=args.speed,
        chunk_s=0.25 if args.speed else 5.0,
    )
    # Offline or local, the target needs no network: bad usage is said before the file is read.
    target = check_target(args, profile) if args.offline or args.local else None
    try:
        description = source.open()
        settings, workspace_id, block_id = target or check_target(args, profile)
        t0 = time.monotonic()

        def progress() -> dict:
            done = getattr(source, "samples_read", None)
            total = getattr(source, "total_samples", None)
            fields = {"file": args.file}
            if done is not None and total:
                fields["read_pct"] = round(100.0 * done / total, 1)
                elapsed = time.monotonic() - t0
                if done and elapsed > 0:
                    fields["read_eta_s"] = round(elapsed * (total - done) / done, 1)
            return fields

        return deliver_and_capture(
            profile,
            output,
            spool_root=spool_root,
            offline=args.offline,
            eeg_source=source,
            description=description,
            screen_source=None,
            settings=settings,
            workspace_id=workspace_id,
            block_id=block_id,
            block_title=getattr(args, "block_title", None),
            progress=progress,
            kind="replay",
            source=f"file {Path(args.file).name}",
            recording_s=lambda: source.seconds_read,
            # A replay finishes its job: it delivers everything unless --flush-timeout bounds it.
            deliver_all=args.flush_timeout is None,
            chunk_max_bytes=DELIVERY_CHUNK_BYTES if delivery_sized else None,
            unchecked=args.unchecked,
            api_silent=args.api_silent,
        )
    finally:
        source.close()
