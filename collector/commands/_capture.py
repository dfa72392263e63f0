"""The capture plumbing of `run`, `replay`, `fit` and `demo`: their shared options, the profile they
make of them, the target check, opening the EEG and screen sources, and the spool and uploader
around one capture."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.api.client import OpenLessonClient
from collector.api.models import Block, is_uuid
from collector.api.settings import ApiSettings
from collector.api.targets import offline_title_error, pick_target, resolve_block
from collector.capture.logformat import setup_logging
from collector.capture.marks import MarkInbox, marks_path
from collector.capture.pause import PauseControl, pause_notice
from collector.capture.pipeline import Capture
from collector.capture.session import run_session
from collector.capture.status_view import LogToStatus, StatusOutput
from collector.commands._common import add_api_options, add_spool_option, api_settings
from collector.commands._fit import check_fit, describe_failure
from collector.commands._sources import open_aux, open_eeg
from collector.core.records import StreamDescription
from collector.delivery.opening import open_spool
from collector.delivery.uploader import Uploader
from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.source import ScreenSource
from collector.errors import ApiError, NetworkError, NoSourceError, UsageError
from collector.profiles.profile import Profile, load_profile

log = logging.getLogger("collector.run")


def add_capture_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `replay`: target, profile, chunking, delivery, output."""
    p.add_argument(
        "--workspace",
        "-w",
        metavar="ID",
        help="workspace id (or [session] workspace / $COLLECTOR_WORKSPACE)",
    )
    p.add_argument(
        "--block",
        "-b",
        metavar="ID|TITLE",
        help="block id or title, any case (or [session] block / $COLLECTOR_BLOCK)",
    )
    p.add_argument("--profile", metavar="NAME|PATH", help="a profile from profiles/ or a TOML file")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        metavar="S",
        help="EEG chunk length in seconds (default 5; replay: 60 s, under 4 MB, unless this option or "
        "the profile's [analysis] chunk_s is given)",
    )
    p.add_argument(
        "--flush-timeout",
        type=float,
        metavar="S",
        help="seconds to keep delivering after the end (default 30; replay: until all is delivered)",
    )
    p.add_argument("--offline", action="store_true", help="spool only; deliver later with `collector upload`")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines when not in a terminal"
    )
    add_spool_option(p)
    add_api_options(p)


def add_device_options(eeg: Any, *, aux: bool = True) -> None:
    """`--device` and the BrainFlow board options (run and fit); `--aux` for a capture."""
    eeg.add_argument("--device", choices=("lsl", "muse", "brainflow"), help="EEG source (default lsl)")
    eeg.add_argument(
        "--board",
        metavar="NAME|ID",
        help="BrainFlow board (with --device brainflow): a BoardIds name such as synthetic, cyton, ganglion, "
        "crown, muse_s_athena, or its id; `collector devices` lists them",
    )
    eeg.add_argument("--serial-port", metavar="PORT", help="BrainFlow serial_port (e.g. /dev/ttyUSB0, COM3)")
    eeg.add_argument("--mac-address", metavar="MAC", help="BrainFlow mac_address (BLE boards)")
    eeg.add_argument("--serial-number", metavar="SN", help="BrainFlow serial_number (e.g. a Muse's name)")
    eeg.add_argument(
        "--board-preset", metavar="PRESET", help="BrainFlow preset carrying the EEG (default DEFAULT)"
    )
    eeg.add_argument(
        "--board-file", metavar="PATH", help="BrainFlow playback_file board: the file to replay live"
    )
    eeg.add_argument(
        "--master-board", metavar="NAME|ID", help="BrainFlow playback_file board: the board that recorded it"
    )
    eeg.add_argument(
        "--board-config",
        metavar="CMD",
        action="append",
        help="a BrainFlow config_board command sent before streaming (repeatable; e.g. old_timestamps)",
    )
    if aux:
        eeg.add_argument(
            "--aux",
            metavar="auto|off|acc,gyro,ppg",
            help="the headset's accelerometer, gyroscope and PPG streams, each captured as its own stream "
            "(default auto: those present; muselsl is started with --acc --gyro --ppg)",
        )


# Profile settings each command-line option sets, so a bad value is reported against the option.
CAPTURE_FLAGS = {
    "analysis.chunk_s": "--chunk-seconds",
    "delivery.flush_timeout_s": "--flush-timeout",
    "screen.interval_s": "--screen-interval",
    "screen.max_width": "--screen-max-width",
    "screen.keepalive_s": "--screen-keepalive",
    "screen.monitor": "--monitor",
    "device.address": "--address",
}


def profile_from_args(args: argparse.Namespace) -> Profile:
    profile = load_profile(args.profile)
    monitor = getattr(args, "monitor", None)
    if monitor is not None and monitor != "all":
        monitor = int(monitor) if monitor.isdigit() else monitor
    return profile.with_overrides(
        flags=CAPTURE_FLAGS,
        analysis={"chunk_s": args.chunk_seconds},
        delivery={"flush_timeout_s": args.flush_timeout},
        device={
            "kind": getattr(args, "device", None),
            "address": getattr(args, "address", None),
            "aux_sensors": getattr(args, "aux", None),
            "board": getattr(args, "board", None),
            "board_preset": getattr(args, "board_preset", None),
            "serial_port": getattr(args, "serial_port", None),
            "mac_address": getattr(args, "mac_address", None),
            "serial_number": getattr(args, "serial_number", None),
            "board_file": getattr(args, "board_file", None),
            "master_board": getattr(args, "master_board", None),
            "board_config": getattr(args, "board_config", None),
        },
        stream={
            "name": getattr(args, "stream_name", None),
            "type": getattr(args, "stream_type", None),
            "source_id": getattr(args, "source_id", None),
            "markers": getattr(args, "markers", None),
        },
        screen={
            "mode": getattr(args, "screen", None),
            "interval_s": getattr(args, "screen_interval", None),
            "max_width": getattr(args, "screen_max_width", None),
            "keepalive_s": getattr(args, "screen_keepalive", None),
            "monitor": monitor,
        },
    )


def check_target(args: argparse.Namespace, profile: Profile) -> tuple[ApiSettings | None, str, str | None]:
    """Key, workspace and block checked before anything is captured. Returns (settings, ws, block)."""
    workspace_id, block = pick_target(args.workspace, args.block, profile)
    if args.offline:
        if block and not is_uuid(block):
            raise offline_title_error(block, workspace_id)
        try:
            settings = api_settings(args)
        except UsageError:
            settings = None  # offline needs no key now; `collector upload` will
        return settings, workspace_id, block.lower() if block else None
    settings = api_settings(args)
    found = find_block(settings, workspace_id, block)
    args.block_title = found.title if found else None  # for the local record (`collector sessions`)
    return settings, workspace_id, found.id if found else None


def find_block(settings: ApiSettings, workspace_id: str, block: str | None) -> Block | None:
    """The key and the workspace checked against the API (retried on transient errors), and the
    block `block` (an id or a title) looked up in it; None when no block is asked for."""
    blocks = _list_blocks_retrying(settings, workspace_id)
    return resolve_block(blocks, block, workspace_id) if block else None


STARTUP_TRIES = 4  # the start-up check rides out a short blip: 1 try + 3 retries, 7-8.5 s in all


def _list_blocks_retrying(settings: ApiSettings, workspace_id: str) -> list[Block]:
    """The target check, retried on transient errors (network, 5xx, 429, portal pages) only.

    tenacity does the retrying: `STARTUP_TRIES` tries, with exponential waits of 1, 2 and 4 s
    plus up to 0.5 s of jitter each (7-8.5 s in all), or the server's Retry-After (at most 10 s)
    when it gives one. A refused key or a missing workspace fails at once. Giving up raises the
    last error, its message saying how many tries over how long.
    """
    import tenacity

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, NetworkError) or (isinstance(exc, ApiError) and exc.retryable)

    backoff = tenacity.wait_exponential_jitter(initial=1, max=4, jitter=0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        return min(10.0, retry_after) if retry_after is not None else backoff(state)

    def say(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0  # set before every sleep
        log.warning("target check failed (%s); retrying in %.0f s", exc, sleep)

    started = time.monotonic()
    with OpenLessonClient(settings) as client:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            stop=tenacity.stop_after_attempt(STARTUP_TRIES),
            wait=wait,
            before_sleep=say,
            reraise=True,  # the last error's own one-line message reaches the user
        )
        try:
            return retrying(client.list_blocks, workspace_id)
        except (NetworkError, ApiError) as exc:
            if not transient(exc):
                raise
            took = time.monotonic() - started
            exc.args = (
                f"The start-up check of the key and target failed {STARTUP_TRIES} times over {took:.0f} s; "
                f"gave up, nothing was captured. Last error: {exc}",
            )
            raise


def open_screen(profile: Profile, output: StatusOutput, pause_control: PauseControl | None = None):
    """The screen source, or None; `--screen on` without a display is fatal (exit 5)."""
    mode = profile.screen.mode
    if mode == "off":
        return None
    s = profile.screen
    kwargs: dict[str, Any] = {
        "interval_s": s.interval_s,
        "max_width": s.max_width,
        "keepalive_s": s.keepalive_s,
        "monitor": s.monitor,
        "redact": tuple(tuple(r) for r in s.redact),
    }
    if s.format:
        kwargs["image_format"] = s.format
    if s.quality:
        kwargs["quality"] = s.quality
    source = ScreenSource(ScreenSettings(**kwargs), pause_control=pause_control)
    try:
        source.open()
    except NoSourceError as err:
        if mode == "on":
            raise NoSourceError(
                f"{err} (--screen on was asked for; use --screen auto to continue EEG-only)"
            ) from None
        output.log("screen_unavailable", message=f"{err}; continuing EEG-only.")
        return None
    return source


def fit_check_before_capture(
    fit_check_s: float, log_format: str, profile: Profile, output: StatusOutput, eeg_source, description
) -> None:
    """`--fit-check S`: the fit check of `collector fit` on the opened source; capture starts either way."""
    result = check_fit(
        eeg_source,
        description,
        profile,
        timeout_s=fit_check_s,
        require="fair",
        log_format=log_format,
        out=output.stream,
    )
    if result.ok:
        output.log(
            "fit_good", message=f"The fit is good after {result.elapsed_s:.0f} s; starting the capture."
        )
    else:
        output.log(
            "fit_not_good",
            message=f"The fit is not good after {result.elapsed_s:.0f} s: {describe_failure(result, 'fair')} "
            "Capturing anyway.",
        )


def make_output(log_format: str, verbose: int = 0) -> StatusOutput:
    """The status view; from here on, log records go through it too (so they keep its format)."""
    output = StatusOutput(sys.stderr, log_format=log_format)
    setup_logging(verbose, log_format, handler=LogToStatus(output))
    return output


def deliver_and_capture(
    profile: Profile,
    output: StatusOutput,
    *,
    spool_root: Path,
    offline: bool,
    eeg_source,
    description: StreamDescription | None,
    screen_source,
    settings: ApiSettings | None,
    workspace_id: str,
    block_id: str | None,
    block_title: str | None = None,
    duration_s: float | None = None,
    progress: Callable[[], dict] | None = None,
    stop_event=None,
    marks: MarkInbox | None = None,
    kind: str = "run",
    source: str | None = None,
    recording_s: Callable[[], float] | None = None,
    deliver_all: bool = False,
    chunk_max_bytes: int | None = None,
    aux_sources: list | None = None,
) -> int:
    """Spool + uploader around one Capture, then the session loop. Shared by run, replay and demo.

    `kind` (run | replay | demo), `source` and `block_title` describe the capture in the local
    record. `offline`: spool only, no uploader. `deliver_all`: see `run_session`;
    `chunk_max_bytes`: EEG chunks' encoded-size bound.
    """
    spool = open_spool(spool_root, max_bytes=profile.delivery.spool_max_bytes)
    uploader = None
    try:
        if not offline:
            uploader = Uploader(
                spool,
                settings,
                rate_per_min=profile.delivery.rate_per_min,
                on_event=lambda event, **f: output.log(event, **f),
            )
        capture = Capture(
            profile=profile,
            workspace_id=workspace_id,
            block_id=block_id,
            spool=spool,
            eeg_source=eeg_source,
            screen_source=screen_source,
            marks=marks,
            kind=kind,
            about={"block_title": block_title, "source": source},
            chunk_max_bytes=chunk_max_bytes,
            aux_sources=aux_sources or (),
        )
        result = run_session(
            capture,
            uploader=uploader,
            description=description,
            duration_s=duration_s,
            flush_timeout_s=profile.delivery.flush_timeout_s,
            output=output,
            progress=progress,
            stop_event=stop_event,
            recording_s=recording_s,
            offline=offline,
            deliver_all=deliver_all and not offline,
        )
        return result.exit_code
    finally:
        spool.close()


def _source_label(profile: Profile, description: StreamDescription | None, screen_source) -> str:
    parts = []
    if description is not None:
        parts.append(f"{profile.device.kind} stream {description.name!r}")
    if screen_source is not None:
        parts.append("screen")
    return " + ".join(parts)


def capture_live(
    profile: Profile,
    output: StatusOutput,
    *,
    spool_root: Path,
    offline: bool,
    settings: ApiSettings | None,
    workspace_id: str,
    block_id: str | None,
    block_title: str | None = None,
    duration_s: float | None = None,
    no_eeg: bool = False,
    fit_check_s: float | None = None,
    log_format: str = "text",
    kind: str = "run",
) -> int:
    """A live capture (`collector run`, and `collector demo`'s): the sources opened from the profile,
    `collector pause`/`mark` wired to them, then deliver_and_capture. Returns the exit code."""
    eeg_source = description = None
    screen_source = None
    aux_sources: list = []
    # `collector pause` / `resume` (or SIGUSR1/SIGUSR2) reach this capture through the pid file.
    pause_control = PauseControl()
    # `collector mark TEXT` finds this capture through the same pid file.
    marks = MarkInbox(marks_path(pause_control.state_dir, os.getpid()))
    pause_control.register_running()
    notice = pause_notice(pause_control) if profile.screen.mode != "off" else None
    if notice:  # said once, here: the screen source stays quiet about a pause that began before it
        until = (
            "nothing is captured (--no-eeg: the screen is all this run records)"
            if no_eeg
            else "no screenshots are taken (EEG is recorded)"
        )
        output.log("screen_paused", message=f"{notice} Until then {until}.")
    try:
        if not no_eeg:
            eeg_source, description = open_eeg(profile)
            marks.accept()  # from here on marks have an EEG timeline to land on
            output.enable_mark_key(lambda text, pressed_ms: marks.add(text, pressed_ms))  # `m` key
            if fit_check_s is not None:
                fit_check_before_capture(fit_check_s, log_format, profile, output, eeg_source, description)
            aux_sources = open_aux(profile, description, output)
        screen_source = open_screen(profile, output, pause_control)
        if eeg_source is None and screen_source is None:
            raise NoSourceError("Nothing to capture: --no-eeg was given and no screen is available.")
        return deliver_and_capture(
            profile,
            output,
            spool_root=spool_root,
            offline=offline,
            eeg_source=eeg_source,
            description=description,
            screen_source=screen_source,
            settings=settings,
            workspace_id=workspace_id,
            block_id=block_id,
            block_title=block_title,
            duration_s=duration_s,
            marks=marks,
            kind=kind,
            source=_source_label(profile, description, screen_source),
            aux_sources=aux_sources,
        )
    finally:
        output.stop_keys()  # the terminal gets its line mode back whatever happened
        pause_control.unregister_running()
        marks.close()
        for source in (eeg_source, screen_source, *(src for _, src, _ in aux_sources)):
            if source is not None:
                source.close()
