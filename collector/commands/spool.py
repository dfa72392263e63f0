"""`collector spool drop|retarget CAPTURE_ID`: what to do with a capture's items that wait for
delivery and should not go where they were meant to (a made-up or deleted workspace, a wrong block).

- `drop CAPTURE_ID [--yes]`: its pending items leave delivery for good. Each keeps its local copy
  (as a delivered one would: `review`, `export`, `sessions` still show it, for the profile's
  retention); `status` counts them as `local`. Asks first; `--yes` skips the question, and without
  a terminal `--yes` is required (exit 2).
- `retarget CAPTURE_ID -w W [-b B]`: its pending items go to workspace W / block B (an id or a
  title), checked against the API first as the start-up check does (exit 3 for the key, 4 for a
  missing workspace or block, with "did you mean …"). Deliver them with `collector upload`.

CAPTURE_ID may be a unique prefix, as `collector sessions` and `status` show it.
"""

from __future__ import annotations

import argparse
import sys

from collector.api.client import OpenLessonClient
from collector.api.targets import verify_target
from collector.commands import summary
from collector.commands._common import (
    add_api_options,
    add_spool_option,
    add_verbose,
    api_settings,
    require_uuid,
    spool_dir,
    spool_folder,
)
from collector.delivery.opening import open_spool
from collector.delivery.spool import DB_NAME, Spool
from collector.errors import EXIT_OK, EXIT_USAGE, UsageError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "spool",
        help=summary("spool"),
        description="Change where a capture's pending items go: drop them from delivery, or retarget them.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    drop = actions.add_parser(
        "drop",
        help="take a capture's pending items out of delivery (their local copy stays)",
        description="Take a capture's pending items out of delivery for good; they are never sent. "
        "Their local copy stays for review and export (the profile's retention).",
    )
    drop.add_argument("capture_id", metavar="CAPTURE_ID", help="the capture (a unique prefix is enough)")
    drop.add_argument("--yes", "-y", action="store_true", help="do not ask (required without a terminal)")
    add_spool_option(drop)
    add_verbose(drop)
    drop.set_defaults(func=run_drop)
    retarget = actions.add_parser(
        "retarget",
        help="send a capture's pending items to another workspace / block",
        description="Send a capture's pending items to another workspace and block, checked against "
        "the API first; then deliver them with `collector upload`.",
    )
    retarget.add_argument("capture_id", metavar="CAPTURE_ID", help="the capture (a unique prefix is enough)")
    retarget.add_argument("--workspace", "-w", required=True, metavar="ID", help="the new workspace id")
    retarget.add_argument("--block", "-b", metavar="ID|TITLE", help="the new block: an id or a title")
    add_spool_option(retarget)
    add_api_options(retarget)
    retarget.set_defaults(func=run_retarget)
    parser.set_defaults(func=lambda args: parser.print_help() or EXIT_USAGE)


def _open(args: argparse.Namespace) -> Spool:
    root = spool_folder(spool_dir(args))
    if not (root / DB_NAME).exists():
        raise UsageError(f"There is no spool at {root}. Pass --spool DIR.")
    return open_spool(root)


def _capture(spool: Spool, given: str) -> tuple[str, int]:
    """(capture_id, pending items) of the capture named by `given` (an id or a unique prefix)."""
    wanted = given.strip().lower()
    found = [s for s in spool.stats() if s.capture_id.lower().startswith(wanted)] if wanted else []
    if len(found) != 1:
        what = "matches no capture" if not found else f"matches {len(found)} captures"
        raise UsageError(
            f"{given!r} {what} in the spool {spool.root}; `collector status --spool {spool.root}` lists them."
        )
    return found[0].capture_id, found[0].pending


def run_drop(args: argparse.Namespace) -> int:
    with _open(args) as spool:
        capture_id, pending = _capture(spool, args.capture_id)
        if pending == 0:
            print(f"Capture {capture_id} has nothing pending; nothing to drop.", file=sys.stderr)
            return EXIT_OK
        if spool.delivery_active():
            raise UsageError(
                "A collector process is delivering from this spool now; stop it (or let it finish) first."
            )
        question = (
            f"Drop {pending} pending item(s) of capture {capture_id} from delivery? They will never be "
            "sent (their local copy stays for review and export)."
        )
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    f"collector: {question} Not without a terminal: pass --yes to drop them.", file=sys.stderr
                )
                return EXIT_USAGE
            answer = input(f"{question} [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("Nothing dropped.", file=sys.stderr)
                return EXIT_OK
        dropped = spool.keep_local(capture_id, "dropped from delivery by `collector spool drop`")
        spool.compact()
    print(f"Dropped {dropped} item(s) of capture {capture_id} from delivery; kept locally.", file=sys.stderr)
    return EXIT_OK


def run_retarget(args: argparse.Namespace) -> int:
    workspace_id = require_uuid(args.workspace, "Workspace id")
    with _open(args) as spool:
        capture_id, pending = _capture(spool, args.capture_id)
        if spool.delivery_active():
            raise UsageError(
                "A collector process is delivering from this spool now; stop it (or let it finish) first."
            )
        with OpenLessonClient(api_settings(args)) as client:
            found = verify_target(client, workspace_id, args.block)  # 3, 4 or 2 as at start-up
        block_id = found.id if found is not None else None
        moved = spool.retarget(capture_id, workspace_id, block_id)
    where = f"workspace {workspace_id}" + (f", block {found.title!r} ({found.id})" if found else "")
    print(
        f"Retargeted {moved} pending item(s) of capture {capture_id} to {where}. "
        f"Send them with `collector upload --spool {spool.root}`.",
        file=sys.stderr,
    )
    return EXIT_OK
