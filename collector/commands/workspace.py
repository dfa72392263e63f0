"""`collector workspace create --prompt TEXT [--file PATH ...]`: create a workspace, print its blocks."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from collector.api.client import OpenLessonClient
from collector.api.models import (
    FILE_EXTENSION_MIME,
    MAX_DECODED_BYTES,
    MAX_WORKSPACE_FILES,
    WorkspaceCreate,
    WorkspaceFile,
)
from collector.commands import summary
from collector.commands._common import add_api_options, api_settings
from collector.commands._replies import format_blocks
from collector.errors import UsageError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("workspace", help=summary("workspace"), description="Manage workspaces.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    create = actions.add_parser(
        "create", help="create a workspace from a prompt", description="Create a workspace from a prompt."
    )
    create.add_argument("--prompt", required=True, help="what the learner wants to practise")
    create.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help=f"plan file to attach (pdf, txt, md, jpg, png, webp; ≤ 10 MB; at most {MAX_WORKSPACE_FILES})",
    )
    create.add_argument("--json", action="store_true", help="print the API's JSON reply")
    add_api_options(create)
    create.set_defaults(func=run)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def read_files(paths: list[str]):
    """Plan files as WorkspaceFile models; every problem is a UsageError naming the file."""
    if len(paths) > MAX_WORKSPACE_FILES:
        raise UsageError(f"{len(paths)} files given; a workspace takes at most {MAX_WORKSPACE_FILES}.")
    files = []
    for name in paths:
        path = Path(name).expanduser()
        mime = FILE_EXTENSION_MIME.get(path.suffix.lower())
        if mime is None:
            allowed = ", ".join(sorted(FILE_EXTENSION_MIME))
            raise UsageError(
                f"{name}: unsupported file type {path.suffix or '(none)'!r}; use one of {allowed}."
            )
        try:
            if path.stat().st_size > MAX_DECODED_BYTES:
                raise UsageError(f"{name} is larger than 10 MB; attach a smaller file.")
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"Cannot read {name} ({exc.strerror or exc}). Check the path.") from None
        files.append(WorkspaceFile(name=path.name, mime_type=mime, data=base64.b64encode(data).decode()))
    return files


def run(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise UsageError("--prompt is empty; describe what to practise.")
    request = WorkspaceCreate(initial_prompt=args.prompt, files=read_files(args.file) or None)
    with OpenLessonClient(api_settings(args)) as client:
        created = client.create_workspace(request)
    if args.json:
        print(json.dumps(created.model_dump(mode="json"), indent=2))
        return 0
    ws = created.workspace
    print(f"Workspace {ws.id}  {ws.title}")
    for f in created.files:
        print(f"File {f.id}  {f.file_name} ({f.file_size} bytes)")
    print()
    print(format_blocks(created.blocks))
    print(f"\nNext: collector blocks --workspace {ws.id}")
    return 0
