"""`collector run --workspace W --block B`: capture EEG and screens during a practice session."""

from __future__ import annotations

import argparse
import logging
import sys

from collector.commands._common import add_api_options, add_spool_option, api_settings, spool_dir

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


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="capture EEG and screenshots into a workspace block",
        description="Capture EEG and screenshots during a practice session and deliver them.",
    )
    add_capture_options(p)
    eeg = p.add_argument_group("EEG")
    eeg.add_argument("--device", choices=("lsl", "muse"), help="EEG source (default lsl)")
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
    scr.add_argument("--monitor", help="monitor number or 'all' (default: the primary monitor)")
    eeg.add_argument(
        "--fit-check",
        type=float,
        metavar="S",
        help="check the headset's fit first (as `collector fit`); start when it is good or after S "
        "seconds with a warning naming the channels",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop by itself after S seconds")
    p.add_argument("--capture-kind", choices=("run", "demo"), default="run", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


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


def profile_from_args(args: argparse.Namespace):
    from collector.profiles.profile import load_profile

    profile = load_profile(args.profile)
    monitor = getattr(args, "monitor", None)
    if monitor is not None and monitor != "all":
        monitor = int(monitor) if monitor.isdigit() else monitor
    return profile.with_overrides(
        flags=CAPTURE_FLAGS,
        analysis={"chunk_s": args.chunk_seconds},
        delivery={"flush_timeout_s": args.flush_timeout},
        device={"kind": getattr(args, "device", None), "address": getattr(args, "address", None)},
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


def check_target(args: argparse.Namespace, profile):
    """Key, workspace and block checked before anything is captured. Returns (settings, ws, block)."""
    from collector.api.models import is_uuid
    from collector.api.targets import offline_title_error, pick_target, resolve_block
    from collector.errors import UsageError

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
    blocks = _list_blocks_retrying(settings, workspace_id)
    found = resolve_block(blocks, block, workspace_id) if block else None
    args.block_title = found.title if found else None  # for the local record (`collector sessions`)
    return settings, workspace_id, found.id if found else None


STARTUP_TRIES = 4  # the start-up check rides out a short blip: 1 try + 3 retries, 7-8.5 s in all


def _list_blocks_retrying(settings, workspace_id: str):
    """The target check, retried on transient errors (network, 5xx, 429, portal pages) only.

    tenacity does the retrying: `STARTUP_TRIES` tries, with exponential waits of 1, 2 and 4 s
    plus up to 0.5 s of jitter each (7-8.5 s in all), or the server's Retry-After (at most 10 s)
    when it gives one. A refused key or a missing workspace fails at once. Giving up raises the
    last error, its message saying how many tries over how long.
    """
    import time

    import tenacity

    from collector.api.client import OpenLessonClient
    from collector.errors import ApiError, NetworkError

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, NetworkError) or (isinstance(exc, ApiError) and exc.retryable)

    backoff = tenacity.wait_exponential_jitter(initial=1, max=4, jitter=0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        return min(10.0, retry_after) if retry_after is not None else backoff(state)

    def say(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("target check failed (%s); retrying in %.0f s", exc, state.next_action.sleep)

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


def open_screen(profile, output, pause_control=None):
    """The screen source, or None; `--screen on` without a display is fatal (exit 5)."""
    from collector.errors import NoSourceError

    mode = profile.screen.mode
    if mode == "off":
        return None
    from collector.devices.screen.settings import ScreenSettings
    from collector.devices.screen.source import ScreenSource

    s = profile.screen
    kwargs = {
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


def open_eeg(profile, open_timeout_s: float | None = None):
    """The EEG source, opened: (source, description). open_timeout_s bounds the wait for the stream
    (`fit --timeout`); by default a Muse gets 60 s to connect and an LSL stream 5 s to appear."""
    if profile.device.kind == "muse":
        from collector.devices.muse import MuseSource

        source = MuseSource(
            address=profile.device.address,
            model=profile.device.model or "auto",
            eeg_channels=profile.device.channels or None,
            aux_channels=profile.device.aux,
            markers=profile.stream.markers,
            **({"connect_timeout_s": open_timeout_s} if open_timeout_s is not None else {}),
        )
    else:
        from collector.devices.lsl.source import LslSource

        source = LslSource(
            **({"resolve_timeout_s": min(5.0, open_timeout_s)} if open_timeout_s is not None else {}),
            stream_name=profile.stream.name,
            stream_type=profile.stream.type,
            source_id=profile.stream.source_id,
            eeg_channels=profile.device.channels or None,
            aux_channels=profile.device.aux,
            model=profile.device.model,
            markers=profile.stream.markers,
        )
    try:
        description = source.open()
    except BaseException:
        source.close()
        raise
    return source, description


def fit_check_before_capture(args, profile, output, eeg_source, description) -> None:
    """`--fit-check S`: the fit check of `collector fit` on the opened source; capture starts either way."""
    from collector.commands.fit import check_fit, describe_failure

    result = check_fit(
        eeg_source,
        description,
        profile,
        timeout_s=args.fit_check,
        require="fair",
        log_format=args.log_format,
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


def make_output(args):
    """The status view; from here on, log records go through it too (so they keep its format)."""
    from collector.capture.logformat import setup_logging
    from collector.capture.status_view import LogToStatus, StatusOutput

    output = StatusOutput(sys.stderr, log_format=args.log_format)
    setup_logging(int(getattr(args, "verbose", 0) or 0), args.log_format, handler=LogToStatus(output))
    return output


def deliver_and_capture(
    args,
    profile,
    output,
    *,
    eeg_source,
    description,
    screen_source,
    settings,
    workspace_id,
    block_id,
    progress=None,
    stop_event=None,
    marks=None,
    kind: str = "run",
    source: str | None = None,
    recording_s=None,
    deliver_all: bool = False,
    chunk_max_bytes: int | None = None,
) -> int:
    """Spool + uploader around one Capture, then the session loop. Shared by run, replay and demo.

    `kind` (run | replay | demo) and `source` describe the capture in the local record.
    `deliver_all`: see `run_session`; `chunk_max_bytes`: EEG chunks' encoded-size bound.
    """
    from collector.capture.pipeline import Capture
    from collector.capture.session import run_session
    from collector.delivery.opening import open_spool
    from collector.delivery.uploader import Uploader

    spool = open_spool(spool_dir(args), max_bytes=profile.delivery.spool_max_bytes)
    uploader = None
    try:
        if not args.offline:
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
            about={"block_title": getattr(args, "block_title", None), "source": source},
            chunk_max_bytes=chunk_max_bytes,
        )
        result = run_session(
            capture,
            uploader=uploader,
            description=description,
            duration_s=getattr(args, "duration", None),
            flush_timeout_s=profile.delivery.flush_timeout_s,
            output=output,
            progress=progress,
            stop_event=stop_event,
            recording_s=recording_s,
            offline=bool(args.offline),
            deliver_all=deliver_all and not args.offline,
        )
        return result.exit_code
    finally:
        spool.close()


def _source_label(profile, description, screen_source) -> str:
    parts = []
    if description is not None:
        parts.append(f"{profile.device.kind} stream {description.name!r}")
    if screen_source is not None:
        parts.append("screen")
    return " + ".join(parts)


def run(args: argparse.Namespace) -> int:
    import os

    from collector.capture.marks import MarkInbox, marks_path
    from collector.capture.pause import PauseControl, pause_notice
    from collector.errors import NoSourceError, UsageError

    fit_check_s = getattr(args, "fit_check", None)
    if fit_check_s is not None and not fit_check_s > 0:  # as `fit --timeout`: refused, not skipped
        raise UsageError(f"--fit-check must be a positive number of seconds; {fit_check_s:g} is invalid.")
    profile = profile_from_args(args)
    output = make_output(args)
    settings, workspace_id, block_id = check_target(args, profile)
    eeg_source = description = None
    screen_source = None
    # `collector pause` / `resume` (or SIGUSR1/SIGUSR2) reach this capture through the pid file.
    pause_control = PauseControl()
    # `collector mark TEXT` finds this capture through the same pid file.
    marks = MarkInbox(marks_path(pause_control.state_dir, os.getpid()))
    pause_control.register_running()
    notice = pause_notice(pause_control) if profile.screen.mode != "off" else None
    if notice:  # said once, here: the screen source stays quiet about a pause that began before it
        until = (
            "nothing is captured (--no-eeg: the screen is all this run records)"
            if args.no_eeg
            else "no screenshots are taken (EEG is recorded)"
        )
        output.log("screen_paused", message=f"{notice} Until then {until}.")
    try:
        if not args.no_eeg:
            eeg_source, description = open_eeg(profile)
            marks.accept()  # from here on marks have an EEG timeline to land on
            output.enable_mark_key(lambda text, pressed_ms: marks.add(text, pressed_ms))  # `m` key
            if fit_check_s is not None:
                fit_check_before_capture(args, profile, output, eeg_source, description)
        screen_source = open_screen(profile, output, pause_control)
        if eeg_source is None and screen_source is None:
            raise NoSourceError("Nothing to capture: --no-eeg was given and no screen is available.")
        return deliver_and_capture(
            args,
            profile,
            output,
            eeg_source=eeg_source,
            description=description,
            screen_source=screen_source,
            settings=settings,
            workspace_id=workspace_id,
            block_id=block_id,
            marks=marks,
            kind=args.capture_kind,
            source=_source_label(profile, description, screen_source),
        )
    finally:
        output.stop_keys()  # the terminal gets its line mode back whatever happened
        pause_control.unregister_running()
        marks.close()
        for source in (eeg_source, screen_source):
            if source is not None:
                source.close()
