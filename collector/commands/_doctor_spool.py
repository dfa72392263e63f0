"""`collector doctor`'s spool check: the folder is writable, the disk has room, and what waits in it.

The spool module (which needs numpy) is imported inside the check, as in _doctor_machine.py: a
broken install is a failed check, not a doctor that cannot start.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import tempfile
from pathlib import Path

from collector.commands._common import spool_dir
from collector.commands._doctor_checks import OK, WARN, Check
from collector.errors import SpoolDamagedError, SpoolFullError

SPOOL_FAIL_FREE_BYTES = 100 * 1024**2  # below this a capture fills the disk within minutes of screens
SPOOL_WARN_FREE_BYTES = 1024**3


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_spool(args: argparse.Namespace) -> Check:
    try:
        root = spool_dir(args)
    except Exception as exc:
        return Check.failed(
            "spool", f"cannot tell where the spool is: {exc}", "Pass --spool DIR or set COLLECTOR_SPOOL_DIR."
        )
    fix_perm = (
        f"Pass --spool DIR (or set COLLECTOR_SPOOL_DIR) to a folder this user can write, "
        f"or give it to this user: `sudo chown -R {_user()} {root}`."
    )
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        fd, probe = tempfile.mkstemp(prefix=".doctor-probe-", dir=root)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        usage = shutil.disk_usage(root)
    except (FileExistsError, NotADirectoryError):
        return Check.failed(
            "spool",
            f"cannot use {root}: a file is in the way (not a folder)",
            "Pass --spool DIR (or set COLLECTOR_SPOOL_DIR) to a folder, or move that file away.",
        )
    except OSError as exc:  # the fix depends on why: a full disk is not a permission problem
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"Free disk space on the disk holding {root}, or move the spool with --spool DIR."
        elif exc.errno == errno.EROFS:
            fix = f"{root} is on a read-only file system: pass --spool DIR (or set COLLECTOR_SPOOL_DIR)."
        else:
            fix = fix_perm
        return Check.failed("spool", f"cannot write to {root} ({exc.strerror or exc})", fix)

    notes = []
    mode = root.stat().st_mode & 0o777
    if mode & 0o077:
        notes.append(f"folder mode {mode:o} lets other users read evidence")
    pending, unreadable = _spool_backlog(root)
    if unreadable is not None:  # the folder is writable, but the spool in it is not usable
        from collector.delivery.spool import damaged_advice

        if isinstance(unreadable, SpoolFullError):
            fix = f"Free disk space on the disk holding {root}, or move the spool with --spool DIR."
        elif isinstance(unreadable, SpoolDamagedError):
            fix = damaged_advice(root)
        else:
            fix = fix_perm
        why = str(unreadable).rstrip(".")
        if isinstance(unreadable, SpoolDamagedError):  # the cause only: the fix says what to do
            why = why.split(". Move the spool aside")[0]
        return Check.failed("spool", f"{root} is writable but its database cannot be opened ({why})", fix)
    detail = f"{root} writable, {_human(usage.free)} free" + (f"; {pending}" if pending else "")
    if usage.free < SPOOL_FAIL_FREE_BYTES:
        return Check.failed(
            "spool",
            detail + f" (under {_human(SPOOL_FAIL_FREE_BYTES)})",
            "Free disk space, or move the spool with --spool DIR / COLLECTOR_SPOOL_DIR.",
        )
    if usage.free < SPOOL_WARN_FREE_BYTES:
        notes.append(f"under {_human(SPOOL_WARN_FREE_BYTES)} free: screenshots may fill it within hours")
    if notes:
        return Check(
            "spool",
            WARN,
            detail + "; " + "; ".join(notes),
            f"`chmod 700 {root}`" if mode & 0o077 else "Free disk space or move the spool.",
        )
    return Check("spool", OK, detail)


def _spool_backlog(root: Path) -> tuple[str, Exception | None]:
    """('N items waiting', None) for an existing spool, or ('', the error) when it cannot be opened.

    Never creates one."""
    if not (root / "spool.db").exists():
        return "", None
    owner = root.stat().st_uid
    if hasattr(os, "geteuid") and owner != os.geteuid():
        # Opening it would leave SQLite side files owned by us (root, typically) in a service's spool.
        who = _user_name(owner)
        return f"owned by {who}: backlog not read (`collector status` as that user tells it)", None
    try:
        from collector.delivery.opening import open_spool

        with open_spool(root) as spool:
            pending, failed, reason = spool.pending_count(), spool.failed_count(), spool.pause_reason()
    except Exception as exc:
        return "", exc
    parts = []
    if pending:
        parts.append(f"{pending} item(s) waiting (`collector upload` sends them)")
    if failed:
        parts.append(f"{failed} rejected item(s)")
    if reason:
        parts.append(reason if reason.lower().startswith("delivery paused") else f"delivery paused: {reason}")
    return "; ".join(parts), None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "$USER"
