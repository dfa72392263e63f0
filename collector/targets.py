"""Which workspace and block a capture goes to: checked against the API before capturing."""

from __future__ import annotations

import os

from collector.errors import NotFoundError, UsageError
from collector.models import Block, is_uuid

ENV_WORKSPACE = "COLLECTOR_WORKSPACE"
ENV_BLOCK = "COLLECTOR_BLOCK"


def short(value: str) -> str:
    return value[:4] + "…" if len(value) > 8 else value


def pick_target(flag_workspace: str | None, flag_block: str | None, profile) -> tuple[str, str | None]:
    """--workspace/--block, else the profile's [session], else $COLLECTOR_WORKSPACE/$COLLECTOR_BLOCK."""
    workspace = flag_workspace or profile.session.workspace or os.environ.get(ENV_WORKSPACE)
    block = flag_block or profile.session.block or os.environ.get(ENV_BLOCK)
    if not workspace:
        raise UsageError(
            "No workspace: pass --workspace ID (or set [session] workspace in the profile, "
            f"or ${ENV_WORKSPACE})."
        )
    if not is_uuid(workspace):
        raise UsageError(f"Workspace {workspace!r} is not a valid id (expected a UUID). Check the value.")
    return workspace.lower(), block


def resolve_block(blocks: list[Block], value: str, workspace_id: str) -> Block:
    """A block by id, or by exact title; an ambiguous title lists the matches."""
    if is_uuid(value):
        for block in blocks:
            if block.id.lower() == value.lower():
                return block
        raise NotFoundError(
            f"Block {short(value)} is not in workspace {short(workspace_id)} (block_not_found). "
            f"Run `collector blocks --workspace {workspace_id}`.",
            code="block_not_found",
            status=404,
        )
    matches = [b for b in blocks if b.title == value]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(
            f"No block titled {value!r} in workspace {short(workspace_id)} (block_not_found). "
            f"Run `collector blocks --workspace {workspace_id}`.",
            code="block_not_found",
            status=404,
        )
    listing = "; ".join(f"{b.id} ({b.status})" for b in matches)
    raise UsageError(
        f"The title {value!r} matches {len(matches)} blocks: {listing}. Pass --block with one id."
    )
