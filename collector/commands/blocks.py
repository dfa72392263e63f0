"""`collector blocks --workspace W`: list a workspace's blocks as a table, or --json."""

from __future__ import annotations

import argparse
import json

from collector.commands._common import add_api_options, api_settings, require_uuid


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "blocks", help="list the blocks of a workspace", description="List the blocks of a workspace."
    )
    parser.add_argument("--workspace", "-w", required=True, metavar="ID", help="workspace id (UUID)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    add_api_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workspace_id = require_uuid(args.workspace, "Workspace id")
    from collector.api.client import OpenLessonClient

    with OpenLessonClient(api_settings(args)) as client:
        blocks = client.list_blocks(workspace_id)
    if args.json:
        print(json.dumps({"blocks": [b.model_dump(mode="json") for b in blocks]}, indent=2))
    else:
        print(format_blocks(blocks))
    return 0


def format_blocks(blocks) -> str:
    """id, title, status, start flag; one block per line, columns aligned."""
    rows = [("ID", "TITLE", "STATUS", "START")]
    rows += [(b.id, b.title, b.status, "start" if b.is_start else "") for b in blocks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows
    ]
    if not blocks:
        lines.append("(no blocks)")
    return "\n".join(line.rstrip() for line in lines)
