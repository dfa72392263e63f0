"""`collector blocks --workspace W`: list a workspace's blocks as a table, or --json."""

from __future__ import annotations

import argparse
import json

from collector.api.client import OpenLessonClient
from collector.commands import summary
from collector.commands._common import add_api_options, api_settings, require_uuid
from collector.commands._replies import format_blocks


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "blocks", help=summary("blocks"), description="List the blocks of a workspace."
    )
    parser.add_argument("--workspace", "-w", required=True, metavar="ID", help="workspace id (UUID)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    add_api_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workspace_id = require_uuid(args.workspace, "Workspace id")
    with OpenLessonClient(api_settings(args)) as client:
        blocks = client.list_blocks(workspace_id)
    if args.json:
        print(json.dumps({"blocks": [b.model_dump(mode="json") for b in blocks]}, indent=2))
    else:
        print(format_blocks(blocks))
    return 0
