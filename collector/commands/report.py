"""`collector report --workspace W [--block B] [--prompt TEXT]`: the workspace's performance analysis.

Without --prompt the API answers in report mode (summary, strengths, gaps, next practice); with
it, in chat mode (a markdown answer). --json prints the raw reply.
"""

from __future__ import annotations

import argparse
import json

from collector.api.client import OpenLessonClient
from collector.api.models import PerformanceRequest
from collector.api.targets import resolve_block_id
from collector.commands import summary
from collector.commands._common import add_api_options, api_settings, require_uuid
from collector.commands._replies import format_report


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help=summary("report"),
        description="Performance analysis of a workspace: a report, or an answer to --prompt.",
    )
    parser.add_argument("--workspace", "-w", required=True, metavar="ID", help="workspace id (UUID)")
    parser.add_argument(
        "--block", "-b", metavar="ID|TITLE", help="limit the analysis to one block (id or title, any case)"
    )
    parser.add_argument("--prompt", help="ask a question instead (chat mode, markdown answer)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON reply")
    add_api_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workspace_id = require_uuid(args.workspace, "Workspace id")
    with OpenLessonClient(api_settings(args)) as client:
        block_id = resolve_block_id(client, workspace_id, args.block) if args.block else None
        request = PerformanceRequest(prompt=args.prompt or None, block_id=block_id)
        reply = client.performance(workspace_id, request)
    if args.json:
        print(json.dumps(reply.model_dump(mode="json"), indent=2))
    elif reply.mode == "chat":
        print(reply.response or "(empty answer)")
    else:
        print(format_report(reply))
    return 0
