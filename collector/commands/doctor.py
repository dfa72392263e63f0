"""`collector doctor`: can this machine capture and deliver? One line per check, with the fix.

Checks, in the order printed:

    python      Python 3.10+                          packages   installed versions
    liblsl      the LSL library loads                 lsl        LSL streams visible (short resolve)
    bluetooth   an adapter for a Muse (no scan)       display    a 1x1 screenshot works
    pause       screen capture is not left paused (`collector pause`)
    spool       the spool folder is writable, free disk space, items waiting
    api         the API answers                        key        the key is accepted
    workspace   --workspace exists                     block      --block exists (id or title)
    sources     at least one of: an LSL EEG stream, a Muse adapter, a display

Exit 0 when every check is ok or a warning; otherwise the exit code of the most serious failure:
3 (key), 4 (workspace or block), 5 (nothing to capture), 2 (bad settings), 1 (anything else).
Slow checks (LSL resolve, screenshot, API) run side by side, each with its own time bound, so a
doctor run stays under ~10 s even with no network. The key is never printed, its prefix at most.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from collector import __version__
from collector.commands import summary
from collector.commands._common import add_api_options, add_spool_option, require_uuid
from collector.commands._doctor_api import check_api
from collector.commands._doctor_brainflow import check_brainflow
from collector.commands._doctor_checks import Check, overall_exit_code, render_text, run_side_by_side
from collector.commands._doctor_machine import (
    check_bluetooth,
    check_display,
    check_lsl,
    check_packages,
    check_pause,
    check_profile,
    check_python,
    check_sources,
)
from collector.commands._doctor_spool import check_spool
from collector.errors import UsageError

__all__ = ["Check", "add_parser", "overall_exit_code", "run"]

LSL_WAIT_S = 1.5
API_TIMEOUT_S = 5.0  # per request; doctor's default instead of the usual 30 s
SLOW_CHECK_LIMIT_S = 9.0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help=summary("doctor"),
        description=(
            "Check the environment and print each check as ok/warn/fail with the fix. "
            "Exit 0 when nothing failed (warnings don't fail); otherwise 3 (key), 4 (workspace or "
            "block not found), 5 (no data source at all), 2 (bad settings) or 1. "
            f"API requests time out after {API_TIMEOUT_S:g} s unless --timeout is given."
        ),
    )
    p.add_argument(
        "--workspace", "-w", metavar="ID", help="also check this workspace exists (or $COLLECTOR_WORKSPACE)"
    )
    p.add_argument(
        "--block",
        "-b",
        metavar="ID|TITLE",
        help="also check this block exists, by id or title (or $COLLECTOR_BLOCK)",
    )
    p.add_argument(
        "--profile", metavar="NAME|PATH", help="check this profile loads; use its [session] target"
    )
    p.add_argument(
        "--lsl-wait",
        type=float,
        default=LSL_WAIT_S,
        metavar="S",
        help=f"seconds to look for LSL streams (default {LSL_WAIT_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_spool_option(p)
    add_api_options(p)
    for action in p._actions:  # doctor must stay fast offline: its own default and help
        if action.dest == "timeout":
            action.help = f"seconds per request (default {API_TIMEOUT_S:g} here)"
    p.set_defaults(func=run, timeout=API_TIMEOUT_S)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.lsl_wait <= 10:
        raise UsageError(f"--lsl-wait must be between 0 and 10 seconds; {args.lsl_wait:g} is invalid.")
    profile_check, profile = check_profile(args.profile)
    workspace, block = _target(args, profile)

    checks: list[Check] = [check_python(), check_packages(), check_brainflow()]
    if profile_check:
        checks.append(profile_check)
    slow = run_side_by_side(
        {
            "lsl": lambda: check_lsl(args.lsl_wait),
            "bluetooth": lambda: [check_bluetooth(profile)],
            "display": lambda: [check_display(profile)],
            "spool": lambda: [check_spool(args)],
            "api": lambda: check_api(args, workspace, block),
        },
        limit_s=SLOW_CHECK_LIMIT_S,
    )
    for group in ("lsl", "bluetooth", "display", "spool", "api"):
        checks.extend(slow[group])
        if group == "display":
            checks.append(check_pause())
    checks.append(check_sources(checks))

    exit_code = overall_exit_code(checks)
    if args.json:
        print(
            json.dumps(
                {"version": __version__, "exit_code": exit_code, "checks": [asdict(c) for c in checks]},
                indent=2,
            )
        )
    else:
        print(render_text(checks, exit_code))
    return exit_code


def _target(args: argparse.Namespace, profile) -> tuple[str | None, str | None]:
    """--workspace/--block, else the profile's [session], else $COLLECTOR_WORKSPACE/$COLLECTOR_BLOCK."""
    session = getattr(profile, "session", None)
    workspace = (
        args.workspace or getattr(session, "workspace", None) or os.environ.get("COLLECTOR_WORKSPACE") or None
    )
    block = args.block or getattr(session, "block", None) or os.environ.get("COLLECTOR_BLOCK") or None
    if block and not workspace:
        raise UsageError("--block needs --workspace ID (a block is looked up inside its workspace).")
    return (require_uuid(workspace, "Workspace") if workspace else None), block
