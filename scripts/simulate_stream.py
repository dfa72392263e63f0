"""Publish a live LSL EEG stream until Ctrl-C: a recording replayed (XDF, muselsl or Mind Monitor CSV,
EDF/BDF), or a synthetic sine stream.

    python scripts/simulate_stream.py                                  # the bundled Muse recording, looped
    python scripts/simulate_stream.py --file rec.xdf --speed 2         # a recording at twice real time
    python scripts/simulate_stream.py --sine --sfreq 500 --name Sim    # sines + noise, 5 channels

Then `collector devices` lists it and `collector run --stream-name NAME` reads it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from collector.devices.player import play_sine_to_lsl, play_to_lsl  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "collector" / "data" / "muse-p300-subject1.xdf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--file",
        type=Path,
        help=f"recording to replay: XDF, muselsl/Mind Monitor CSV, EDF/BDF (default: {BUNDLED.name})",
    )
    what.add_argument("--sine", action="store_true", help="a synthetic stream instead of a recording")
    parser.add_argument(
        "--name", default=None, help="LSL stream name (default: the recording's, or SimulatedEEG)"
    )
    parser.add_argument("--source-id", default=None, help="LSL source_id (default: derived from the name)")
    parser.add_argument("--stream", default=None, help="which stream of the file to replay (name or type)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed, 1 = real time (default 1)")
    parser.add_argument("--once", action="store_true", help="play the recording once instead of looping")
    parser.add_argument("--sfreq", type=float, default=256.0, help="--sine: sampling rate (default 256)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.speed <= 0:
        parser.error("--speed must be positive")

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.duration is not None:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    if args.sine:
        name = args.name or "SimulatedEEG"
        logging.info("publishing synthetic EEG as LSL stream %r at %g Hz; Ctrl-C to stop", name, args.sfreq)
        play_sine_to_lsl(
            stream_name=name, source_id=args.source_id or name, sfreq=args.sfreq, stop_event=stop
        )
        return 0
    path = args.file or BUNDLED
    if not path.is_file():
        parser.error(f"no such file: {path}")
    from collector.errors import CollectorError

    try:
        play_to_lsl(
            path,
            stream_name=args.name,
            source_id=args.source_id,
            stream=args.stream,
            speed=args.speed,
            loop=not args.once,
            stop_event=stop,
        )
    except CollectorError as err:
        print(f"simulate_stream: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
