"""The spool's on-disk layout and SQLite schema, its migrations, and opening its database file.

Layout of the spool folder (0700; every file 0600):

    spool.db        SQLite in WAL mode: the index (`items`), the artifact bytes (`blobs`),
                    refused-chunk counters (`drops`) and small key/value state (`meta`), and the
                    local record's `captures` and `record` (collector/delivery/local_record.py).
    spool.db-wal    SQLite's write-ahead log; same permissions as spool.db.
    uploader.lock   held (flock) by the one process that is delivering from this spool (lock.py).
    spool.reserve   256 kB of zeros, given up only when the disk is full and a delivery record or
                    a count held in memory must be written; made again when space returns. Nothing
                    is sent while it is missing, so every 201 can be recorded (none is sent twice)
                    (reserve.py).

Tables of spool.db (the spool's own; the local record adds its two):

    items   one row per spooled request: its identity (`capture_id`, `stream_id`, `chunk_index`),
            unique in the spool; its full request (EvidenceCreate fields without `data`), so it can
            be re-sent after a restart without the capture that made it; its state (items.py),
            attempts and last error; after delivery the server's evidence id.
    blobs   the artifact bytes of a pending or failed item and their SHA-256, inline, in the same
            transaction as their index row: a crash at any point leaves either a complete item or
            none (no orphan or half-written files to sweep). Reads of the index never touch the
            blob pages, because they are in their own table.
    drops   per capture, stream and reason: how many chunks the spool refused, and the first 1000
            of their chunk indexes (losses.py).
    meta    key/value: `stored_bytes` (bytes of pending + failed items, the bounded quantity),
            `pause_reason`, the delivering process's rate, `record_bytes` (the local record's).

Migrations: a spool made before checksums has no `blobs.sha256` (its items are not checked), one
made before refused chunk indexes has no `drops.chunks`; both columns are added when it is opened.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from collector.errors import SpoolDamagedError, SpoolError, SpoolFullError

DB_NAME = "spool.db"
LOCK_NAME = "uploader.lock"
RESERVE_NAME = "spool.reserve"

_SQLITE_FULL = 13
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26  # damaged file: exit 2, not 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    capture_id    TEXT    NOT NULL,
    stream_id     TEXT    NOT NULL,
    chunk_index   INTEGER NOT NULL,
    workspace_id  TEXT    NOT NULL,
    block_id      TEXT,
    type          TEXT    NOT NULL,
    request_json  TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
    created_ms    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    evidence_id   TEXT,
    done_ms       INTEGER,
    UNIQUE (capture_id, stream_id, chunk_index)
);
CREATE INDEX IF NOT EXISTS items_state ON items (state, id);
CREATE INDEX IF NOT EXISTS items_stream ON items (state, stream_id, id);
CREATE TABLE IF NOT EXISTS blobs (
    item_id    INTEGER PRIMARY KEY,
    data       BLOB NOT NULL,
    sha256     TEXT,
    local_copy BLOB  -- a screenshot's small copy for the local record (collector.core.screen_copy)
);
CREATE TABLE IF NOT EXISTS drops (
    capture_id TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    count      INTEGER NOT NULL,
    last_ms    INTEGER NOT NULL,
    chunks     TEXT NOT NULL DEFAULT '',  -- the refused chunk indexes, comma-separated (the first 1000)
    PRIMARY KEY (capture_id, stream_id, reason)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('stored_bytes', '0');
"""

# Columns added since the first spools: (table, column, its definition).
MIGRATIONS = (
    ("blobs", "sha256", "sha256 TEXT"),  # a spool made before checksums
    ("drops", "chunks", "chunks TEXT NOT NULL DEFAULT ''"),  # before refused chunk indexes
    ("blobs", "local_copy", "local_copy BLOB"),  # before screenshots carried their small copy
)


def connect(root: Path) -> sqlite3.Connection:
    """Make the folder (0700) and the database file (0600) if need be, and connect to it.

    Raises the `SpoolError` that `open_error` names.
    """
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        db_path = root / DB_NAME
        # Create the file 0600 ourselves: SQLite gives its -wal/-shm files the db's mode.
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(db_path, 0o600)
        return sqlite3.connect(db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise open_error(root, exc) from None


def connect_read_only(root: Path) -> sqlite3.Connection:
    """Connect to an existing spool without writing anything (a copy, a read-only mount).

    SQLite's `mode=ro` still needs to make the WAL's shared-memory file; where the folder cannot
    be written, the file is opened `immutable=1` (no locks, no WAL: right for a copy nobody
    writes). Raises the `SpoolError` that `open_error` names.
    """
    db_path = root / DB_NAME
    if not db_path.is_file():
        raise SpoolError(f"There is no spool at {root} (no {DB_NAME}). Check --spool DIR.")
    uri = db_path.resolve().as_uri()
    last: BaseException | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}?{flags}", uri=True, check_same_thread=False, isolation_level=None)
            conn.execute("SELECT COUNT(*) FROM items").fetchone()
            return conn
        except sqlite3.Error as exc:
            last = exc
    raise open_error(root, last or OSError("cannot open"))


def can_write(root: Path) -> bool:
    """False when the spool folder (or its database file) cannot be written: a read-only mount
    (EROFS holds even for root), or permissions that stop this user."""
    db_path = root / DB_NAME
    if not root.is_dir():
        return True  # to be made: the writable path says what goes wrong
    return os.access(root, os.W_OK) and (not db_path.exists() or os.access(db_path, os.W_OK))


def prepare(conn: sqlite3.Connection) -> None:
    """Set the connection's pragmas, create the spool's tables and migrate an older spool.

    Raises sqlite3.Error (the caller closes the connection and raises `open_error`).
    """
    # Set before the first table exists (later it is a no-op that still needs a write, which
    # a full disk refuses): lets `compact` give space back.
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: each commit is fsynced, so an item that `add` returned survives a power cut,
    # not just a crash (NORMAL would only survive a process kill). Cost: ~1 fsync per chunk,
    # which the benchmark shows is far above the capture rate (a few chunks per second).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    for table, column, definition in MIGRATIONS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC and SQLITE_FULL: the disk (or the database's page limit) has no room."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)
    return False


def damaged_advice(root: Path) -> str:
    """What to do with a spool whose database cannot be read (`collector doctor` says the same)."""
    return (
        f"Move the spool aside (`mv {root} {root}.damaged`) so a new one starts there, or choose another "
        f"with --spool DIR; its items may be recovered with `sqlite3 {root}.damaged/{DB_NAME} .recover`."
    )


def open_error(root: Path, exc: BaseException) -> SpoolError:
    """The one-line error for a spool that cannot be opened: full disk, damaged file, or other."""
    if is_disk_full(exc):
        return SpoolFullError(
            f"SPOOL FULL: the disk holding the spool {root} is full; nothing can be saved. "
            "Free disk space, then run `collector upload`."
        )
    if getattr(exc, "sqlite_errorcode", None) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return SpoolDamagedError(
            f"The spool database {root / DB_NAME} is damaged ({exc}). {damaged_advice(root)}"
        )
    return SpoolError(
        f"Cannot open the spool at {root} ({exc}). Check the folder exists and is writable "
        "by you, or choose another with --spool DIR."
    )
