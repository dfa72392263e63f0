"""`collector pause` / `collector resume`: pause screen capture for privacy; EEG keeps recording."""

from __future__ import annotations

import argparse
import time

from collector.capture.pause import PauseControl
from collector.commands import summary
from collector.commands._common import add_verbose


def add_parser(subparsers) -> None:
    pause = subparsers.add_parser(
        "pause",
        help=summary("pause"),
        description=(
            "Pause screen capture of a running `collector run` (from any terminal) until "
            "`collector resume`. EEG keeps recording; the paused period is recorded in the "
            "metadata of the next screenshot. A pause also holds for a capture started later. "
            "The running capture also accepts SIGUSR1 (pause) and SIGUSR2 (resume)."
        ),
    )
    add_verbose(pause)
    pause.set_defaults(func=run, action="pause")
    resume = subparsers.add_parser(
        "resume",
        help=summary("resume"),
        description="Resume screen capture paused by `collector pause` or SIGUSR1.",
    )
    add_verbose(resume)
    resume.set_defaults(func=run, action="resume")


def _clock(ms: int | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else "?"


def run(args: argparse.Namespace) -> int:
    control = PauseControl()
    before = control.state()
    if args.action == "pause":
        state = control.pause()
        if before.paused:
            print(f"Screen capture was already paused (since {_clock(state.since_ms)}).")
        else:
            print(f"Screen capture paused at {_clock(state.since_ms)}; EEG continues.")
    else:
        state = control.resume()
        if not before.paused:
            print("Screen capture was not paused.")
        else:
            seconds = ((state.until_ms or 0) - (state.since_ms or 0)) / 1000
            print(f"Screen capture resumed (paused for {seconds:.0f} s).")
    pid = control.notify_running(paused=args.action == "pause")
    if pid is not None:
        print(f"Running capture (pid {pid}) notified.")
    elif control.running_pid() is not None:
        print(f"Running capture (pid {control.running_pid()}) will see it before its next screenshot.")
    else:
        what = "starts paused" if state.paused else "captures the screen"
        print(f"No capture is running; the next `collector run` {what}.")
    return 0
