"""The capture plumbing of `run`, `replay` and `demo`: their shared options, the target check, the
status view, and the spool and uploader around one capture. The profile and the sources they
capture from come from _sources.py."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from collector.api.ids import is_uuid
from collector.api.settings import ApiSettings
from collector.api.targets import ENV_WORKSPACE, pick_target, verify_target
from collector.capture.logformat import setup_logging
from collector.capture.marks import MarkInbox, marks_path
from collector.capture.pause import PauseControl, pause_notice
from collector.capture.pipeline import Capture
from collector.capture.session import run_session
from collector.capture.status_view import LogToStatus, StatusOutput
from collector.commands._common import add_api_options, add_spool_option, api_settings
from collector.commands._fit import check_fit, describe_failure
from collector.commands._sources import open_aux, open_eeg, open_screen
from collector.core.records import StreamDescription
from collector.delivery.opening import open_spool
from collector.delivery.spool.targets import LOCAL_WORKSPACE
from collector.errors import ApiError, NetworkError, NoSourceError, UsageError
from collector.profiles.profile import Profile

if TYPE_CHECKING:
    from collector.api.models import Block

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
    p.add_argument(
        "--offline",
        action="store_true",
        help="spool only, nothing checked or sent; deliver later with `collector upload` (a block title "
        "is resolved then). Without a workspace: as --local (then --block is refused)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="no account: keep the capture on this machine only (sessions, review, export); nothing is "
        "sent or left pending",
    )
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines when not in a terminal"
    )
    add_spool_option(p)
    add_api_options(p)


def check_target(args: argparse.Namespace, profile: Profile) -> tuple[ApiSettings | None, str, str | None]:
    """Key, workspace and block checked before anything is captured. Returns (settings, ws, block).

    Only an answer that proves the target wrong stops the capture before it starts (AuthError,
    exit 3: a wrong, revoked or read-only key, teams_required; NotFoundError, exit 4; UsageError,
    exit 2: a title matching several blocks). No answer (network, DNS, timeout, 5xx, a portal's
    page) starts the capture anyway, spooled: `args.unchecked` is then (workspace, block as given)
    and `args.api_silent` the error, and the uploader checks the target before it delivers
    anything (collector/delivery/gate.py). `--offline` checks nothing and leaves the same
    `args.unchecked` for `collector upload`. `--local` (or `--offline` with no workspace): no target;
    a --block given with either is refused (UsageError, exit 2) rather than dropped.
    """
    args.unchecked = None
    args.api_silent = None
    local = getattr(args, "local", False)
    if local or (args.offline and not _has_workspace(args, profile)):
        if local and (args.workspace or args.block):
            raise UsageError(
                "--local keeps the capture on this machine only; drop --workspace/--block "
                "(or drop --local to deliver it)."
            )
        if args.block:  # a block asked for could only be dropped here: it needs a workspace
            raise UsageError(
                f"--block {args.block} needs a workspace: add --workspace ID (or set [session] workspace "
                f"in the profile, or ${ENV_WORKSPACE}), or drop --block to keep the capture on this "
                "machine only."
            )
        args.local = True
        return None, LOCAL_WORKSPACE, None
    workspace_id, block = pick_target(args.workspace, args.block, profile)
    if args.offline:
        try:
            settings = api_settings(args)
        except UsageError:
            settings = None  # offline needs no key now; `collector upload` will
        args.unchecked = (workspace_id, block)
        args.block_title = None if block is None or is_uuid(block) else block
        return settings, workspace_id, block.lower() if block and is_uuid(block) else None
    settings = api_settings(args)
    try:
        found = find_block(settings, workspace_id, block)
    except (NetworkError, ApiError) as exc:
        if not _no_answer(exc):
            raise
        args.unchecked = (workspace_id, block)
        args.api_silent = exc
        args.block_title = None if block is None or is_uuid(block) else block
        log.warning(
            "The API does not answer (%s) Capturing anyway into the spool: delivery waits for the API, "
            "and the key and target are checked before anything is sent.",
            exc,
            extra={"event": "api_unreachable"},
        )
        return settings, workspace_id, block.lower() if block and is_uuid(block) else None
    args.block_title = found.title if found else None  # for the local record (`collector sessions`)
    return settings, workspace_id, found.id if found else None


def _has_workspace(args: argparse.Namespace, profile: Profile) -> bool:
    return bool(args.workspace or profile.session.workspace or os.environ.get(ENV_WORKSPACE))


def _no_answer(exc: BaseException) -> bool:
    """True for what says nothing about the target: network, DNS, timeout, 5xx, 429, a portal page."""
    return isinstance(exc, NetworkError) or (isinstance(exc, ApiError) and exc.retryable)


def find_block(settings: ApiSettings, workspace_id: str, block: str | None) -> Block | None:
    """The key and the workspace checked against the API (retried once on transient errors), the
    block `block` (an id or a title) looked up in it, and the key's right to add evidence
    (`verify_target`); None when no block is asked for."""
    return _verify_retrying(settings, workspace_id, block)


STARTUP_TRIES = 2  # the start-up check rides out a blip (1 try + 1 retry, 1-1.5 s), then starts anyway
STARTUP_TIMEOUT_S = 10.0  # each try's bound: no answer in 10 s is no answer (a capture must start)


def _verify_retrying(settings: ApiSettings, workspace_id: str, block: str | None) -> Block | None:
    """The target check, retried on transient errors (network, 5xx, 429, portal pages) only.

    tenacity does the retrying: `STARTUP_TRIES` tries, a wait of 1 s plus up to 0.5 s of jitter,
    or the server's Retry-After (at most 10 s) when it gives one; each try bounded by
    `STARTUP_TIMEOUT_S` (or a shorter --timeout). A refused key or a missing workspace fails at
    once. Giving up raises the last error (the caller then starts the capture, spooled).
    """
    import tenacity

    from collector.api.client import OpenLessonClient  # the HTTP stack: not for offline captures

    backoff = tenacity.wait_exponential_jitter(initial=1, max=4, jitter=0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        return min(10.0, retry_after) if retry_after is not None else backoff(state)

    def say(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0  # set before every sleep
        log.info("target check failed (%s); retrying in %.0f s", exc, sleep)

    quick = dataclasses.replace(settings, timeout_s=min(settings.timeout_s, STARTUP_TIMEOUT_S))
    with OpenLessonClient(quick) as client:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_no_answer),
            stop=tenacity.stop_after_attempt(STARTUP_TRIES),
            wait=wait,
            before_sleep=say,
            reraise=True,  # the last error's own one-line message reaches the user
        )
        return retrying(verify_target, client, workspace_id, block)


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
    unchecked: tuple[str, str | None] | None = None,
    api_silent: BaseException | None = None,
    aux_sources: list | None = None,
) -> int:
    """Spool + uploader around one Capture, then the session loop. Shared by run, replay and demo.

    `kind` (run | replay | demo), `source` and `block_title` describe the capture in the local
    record. `offline`: spool only, no uploader. `deliver_all`: see `run_session`;
    `chunk_max_bytes`: EEG chunks' encoded-size bound. `unchecked` (workspace, block as given):
    the target the start-up check could not check (no answer, or --offline), noted in the spool
    for the uploader to check before delivery; `api_silent`: the start-up check's no-answer error.
    A `workspace_id` of `LOCAL_WORKSPACE` (`--local`): kept on this machine only, no uploader.
    """
    spool = open_spool(spool_root, max_bytes=profile.delivery.spool_max_bytes)
    local = workspace_id == LOCAL_WORKSPACE
    offline = offline or local
    uploader = None
    try:
        if not offline:
            from collector.delivery.uploader import Uploader  # the HTTP stack: not for offline captures

            uploader = Uploader(
                spool,
                settings,
                rate_per_min=profile.delivery.rate_per_min,
                on_event=lambda event, **f: output.log(event, **f),
            )
            if api_silent is not None:
                uploader.api_not_answering()  # said at start-up; "answers again" comes once it does
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
            local=local,
            aux_sources=aux_sources or (),
        )
        if unchecked is not None:  # before any item is spooled: none can be sent unchecked
            spool.note_unchecked_target(capture.capture_id, *unchecked)
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
            local=local,
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
    unchecked: tuple[str, str | None] | None = None,
    api_silent: BaseException | None = None,
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
            unchecked=unchecked,
            api_silent=api_silent,
        )
    finally:
        output.stop_keys()  # the terminal gets its line mode back whatever happened
        pause_control.unregister_running()
        marks.close()
        for source in (eeg_source, screen_source, *(src for _, src, _ in aux_sources)):
            if source is not None:
                source.close()
