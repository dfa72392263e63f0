"""Opening the spool as every command does: open it, then finish the captures whose process died.

`Spool(...)` only opens the database; `open_spool` adds the step a command needs before it reads
or delivers anything: captures killed, crashed or cut off by a power loss get their end, counts
and session summary from what they spooled (interrupted.py).
"""

from __future__ import annotations

from pathlib import Path

from collector.delivery.interrupted import finish_interrupted
from collector.delivery.spool import DEFAULT_MAX_BYTES, SCREEN_LIMIT_RATIO, Spool
from collector.delivery.spool.schema import can_write
from collector.errors import SpoolDamagedError, SpoolError


def open_spool(
    root: Path, max_bytes: int = DEFAULT_MAX_BYTES, *, screen_limit_ratio: float = SCREEN_LIMIT_RATIO
) -> Spool:
    """The spool at `root` (see `Spool`), with its interrupted captures finished."""
    spool = Spool(root, max_bytes, screen_limit_ratio=screen_limit_ratio)
    try:
        finish_interrupted(spool)  # captures whose process was killed: end time, counts, summary
    except BaseException:
        spool.close()
        raise
    return spool


def open_spool_to_read(root: Path) -> Spool:
    """The spool at `root` for the commands that only read it (`status`, `sessions`, `review`,
    `export`): as `open_spool` when it can be written, else read-only (a copy, a read-only mount,
    a backup): shown as it is, nothing finished, created or changed."""
    if can_write(root):
        try:
            return open_spool(root)
        except SpoolDamagedError:
            raise
        except SpoolError as err:
            if "readonly" not in str(err).replace("-", "") and "Permission denied" not in str(err):
                raise
    return Spool(root, read_only=True)
