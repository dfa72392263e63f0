"""Which workspace and block a command works on: a block by id or by title, checked against the API.

Every command that takes `--block` (run, replay, report, doctor) resolves it here, so they all
accept the same things: a block id, or a title matched case-insensitively when it is unique,
with "did you mean …" (difflib's close matches) on a near miss.
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING

from collector.api.ids import is_uuid
from collector.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from collector.api.models import Block

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


def _fold(title: str) -> str:
    return " ".join(title.casefold().split())


def resolve_block(blocks: list[Block], value: str, workspace_id: str) -> Block:
    """A block by id, by exact title, or by a title matched case-insensitively when unique.

    Raises NotFoundError (exit 4) when nothing matches, naming the closest titles
    ("did you mean …", difflib.get_close_matches, cutoff 0.6) and `collector blocks`;
    UsageError (exit 2) when a title matches several blocks, listing their ids.
    """
    listing_hint = f"Run `collector blocks --workspace {workspace_id}`."
    if is_uuid(value):
        for block in blocks:
            if block.id.lower() == value.lower():
                return block
        raise NotFoundError(
            f"Block {short(value)} is not in workspace {short(workspace_id)} (block_not_found). "
            + listing_hint,
            code="block_not_found",
            status=404,
        )
    matches = [b for b in blocks if b.title == value]
    if not matches:  # "scales, hands separately" finds "Scales, hands separately"
        matches = [b for b in blocks if _fold(b.title) == _fold(value)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        by_fold = {_fold(b.title): b.title for b in blocks}
        close = difflib.get_close_matches(_fold(value), list(by_fold), n=3, cutoff=0.6)
        guess = f" Did you mean {' or '.join(repr(by_fold[c]) for c in close)}?" if close else ""
        raise NotFoundError(
            f"No block titled {value!r} in workspace {short(workspace_id)} (block_not_found).{guess} "
            f"{listing_hint}",
            code="block_not_found",
            status=404,
        )
    listing = "; ".join(f"{b.id} {b.title!r} ({b.status})" for b in matches)
    raise UsageError(
        f"The title {value!r} matches {len(matches)} blocks: {listing}. Pass --block with one id."
    )


def resolve_block_id(client, workspace_id: str, value: str) -> str:
    """The id of `value` (an id, returned as it is, or a title looked up with `client.list_blocks`)."""
    if is_uuid(value):
        return value.lower()
    return resolve_block(client.list_blocks(workspace_id), value, workspace_id).id


def verify_target(client, workspace_id: str, block: str | None) -> Block | None:
    """The whole target check: the key, the workspace and the block (an id or a title) checked
    with `client.list_blocks`, then the key's right to add evidence (`client.check_write_access`:
    a key without `workspaces:write` fails here, not after the capture). Returns the block, or None
    when none is asked for.

    Raises what proves the target wrong: `AuthError` (exit 3), `NotFoundError` (4, with "did you
    mean …"), `UsageError` (2, a title matching several blocks); and what is no answer:
    `NetworkError`, `ServerError`, `RateLimitedError` (the caller waits and tries again).
    """
    blocks = client.list_blocks(workspace_id)
    found = resolve_block(blocks, block, workspace_id) if block else None
    client.check_write_access(workspace_id)
    return found
