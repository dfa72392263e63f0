"""The sandbox's state on disk: SQLite rows plus decoded artifacts as plain files under --data.

    <data>/sandbox.db                  keys (SHA-256 + prefix only), workspaces, blocks, files, evidence
    <data>/keys.txt                    0600; the sandbox's own credential store: the plaintext keys
                                       it generated, so a restart can print them again
    <data>/artifacts/<ws>/<id><ext>    each evidence row's decoded bytes
    <data>/files/<ws>/<id><ext>        workspace plan files

Every method takes the one lock: the server's event loop and the test thread both call in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.api.models import EvidenceCreate, WorkspaceFile

DEFAULT_SCOPES = ("workspaces:read", "workspaces:write", "ghl:read", "ghl:write")

# name -> (prefix, scopes, has Teams, revoked, expired)
KEY_SPECS: dict[str, tuple[str, tuple[str, ...], bool, bool, bool]] = {
    "member": ("sk_", DEFAULT_SCOPES, True, False, False),
    "guest": ("gsk_", DEFAULT_SCOPES, True, False, False),
    "read_only": ("sk_", ("workspaces:read",), True, False, False),
    "teams_required": ("sk_", DEFAULT_SCOPES, False, False, False),
    "revoked": ("sk_", DEFAULT_SCOPES, True, True, False),
    "expired": ("sk_", DEFAULT_SCOPES, True, False, True),
}

EXTENSIONS = {
    "application/json": ".json",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}

BLOCK_TITLES = ("Warm-up: {topic}", "Core ideas", "Guided practice", "Review and reflect")
READY_PROMPT = "Sandbox practice"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, prefix TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL,
    teams INTEGER NOT NULL, revoked INTEGER NOT NULL, expires_at TEXT);
CREATE TABLE IF NOT EXISTS workspaces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, title TEXT, root_topic TEXT,
    status TEXT, notes TEXT, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS blocks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, workspace_id TEXT NOT NULL,
    title TEXT, description TEXT, is_start INTEGER, next_node_ids TEXT, status TEXT, created_at TEXT);
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, workspace_id TEXT NOT NULL,
    file_name TEXT, file_size INTEGER, mime_type TEXT, path TEXT, created_at TEXT);
CREATE TABLE IF NOT EXISTS evidence (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, workspace_id TEXT NOT NULL,
    block_id TEXT, session_id TEXT, type TEXT, file_name TEXT, mime_type TEXT, file_size INTEGER,
    xai_file_id TEXT, timestamp_ms INTEGER, chunk_index INTEGER, metadata TEXT, tool_name TEXT,
    tool_action TEXT, device_name TEXT, sample_count INTEGER, band_powers TEXT, artifact TEXT,
    created_at TEXT);
"""

# Columns of an evidence row that the contract's 201 reply carries.
EVIDENCE_REPLY_FIELDS = (
    "id", "workspace_id", "block_id", "session_id", "type", "file_name", "mime_type", "file_size",
    "xai_file_id", "timestamp_ms", "chunk_index", "metadata", "tool_name", "tool_action",
    "device_name", "sample_count", "created_at",
)  # fmt: skip


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class SandboxStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data_dir / "sandbox.db", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: a commit costs no fsync (a sandbox may lose its last rows on power loss).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- keys ---------------------------------------------------------------------------------

    def ensure_keys(self) -> dict[str, str]:
        """The plaintext keys by name: those in keys.txt that still match a stored hash, new ones else."""
        path = self.data_dir / "keys.txt"
        known: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                name, sep, key = line.partition("=")
                if sep and not line.startswith("#"):
                    known[name.strip()] = key.strip()
        with self._lock, self._db:
            keys = {}
            for name, (prefix, scopes, teams, revoked, expired) in KEY_SPECS.items():
                row = self._db.execute("SELECT sha256 FROM keys WHERE name = ?", (name,)).fetchone()
                key = known.get(name) or ""  # "": not kept in keys.txt
                if not (row and key and key_hash(key) == row["sha256"]):
                    key = prefix + "sbx_" + secrets.token_hex(20)
                    self._db.execute(
                        "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, key[:8], key_hash(key), json.dumps(scopes), int(teams), int(revoked),
                         "2000-01-01T00:00:00Z" if expired else None),
                    )  # fmt: skip
                keys[name] = key
        # 0600 from creation on: the only file under --data that holds a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# collector sandbox: its own API keys (the database keeps only SHA-256 hashes)\n")
            f.writelines(f"{name}={key}\n" for name, key in keys.items())
        os.chmod(path, 0o600)
        return keys

    def find_key(self, presented: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM keys WHERE sha256 = ?", (key_hash(presented),)).fetchone()
        if row is None:
            return None
        key = dict(row)
        key["scopes"] = frozenset(json.loads(key["scopes"]))
        key["expired"] = bool(key["expires_at"]) and key["expires_at"] < now_iso()
        return key

    # ---- workspaces ---------------------------------------------------------------------------

    def ensure_ready_workspace(self) -> str:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'ready_workspace'").fetchone()
        if row:
            return row["value"]
        workspace, _, _ = self.create_workspace(READY_PROMPT, [])
        with self._lock, self._db:
            self._db.execute("INSERT INTO meta VALUES ('ready_workspace', ?)", (workspace["id"],))
        return workspace["id"]

    def create_workspace(
        self, prompt: str, files: list[WorkspaceFile]
    ) -> tuple[dict, list[dict], list[dict]]:
        topic = " ".join(prompt.split())[:60]
        ws_id, created = str(uuid.uuid4()), now_iso()
        block_ids = [str(uuid.uuid4()) for _ in BLOCK_TITLES]
        file_rows = []
        for f in files:
            file_id = str(uuid.uuid4())
            raw = base64.b64decode(f.data)
            rel = Path("files", ws_id, file_id + EXTENSIONS.get(f.mime_type, ".bin"))
            self._write(rel, raw)
            file_rows.append((file_id, ws_id, f.name, len(raw), f.mime_type, str(rel), now_iso()))
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO workspaces (id, title, root_topic, status, notes, created_at, updated_at) "
                "VALUES (?, ?, ?, 'active', NULL, ?, ?)",
                (ws_id, topic, topic, created, created),
            )
            for i, title in enumerate(BLOCK_TITLES):
                nxt = block_ids[i + 1 : i + 2]
                description = f"Sandbox block {i + 1} of {len(BLOCK_TITLES)} for: {topic}"
                self._db.execute(
                    "INSERT INTO blocks (id, workspace_id, title, description, is_start, next_node_ids, "
                    "status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'available', ?)",
                    (block_ids[i], ws_id, title.format(topic=topic), description, int(i == 0),
                     json.dumps(nxt), now_iso()),
                )  # fmt: skip
            self._db.executemany(
                "INSERT INTO files (id, workspace_id, file_name, file_size, mime_type, path, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                file_rows,
            )
        files_out = [
            {"id": r[0], "file_name": r[2], "file_size": r[3], "mime_type": r[4], "created_at": r[6]}
            for r in file_rows
        ]
        workspace = self.workspace(ws_id)
        assert workspace is not None  # inserted just above
        return workspace, self.blocks(ws_id), files_out

    def workspace(self, workspace_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM workspaces WHERE id = ?", (workspace_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        del out["seq"]
        return out

    def blocks(self, workspace_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM blocks WHERE workspace_id = ? ORDER BY seq", (workspace_id,)
            ).fetchall()
        out = []
        for row in rows:
            block = dict(row)
            del block["seq"], block["workspace_id"]
            block["is_start"] = bool(block["is_start"])
            block["next_node_ids"] = json.loads(block["next_node_ids"])
            out.append(block)
        return out

    # ---- evidence -----------------------------------------------------------------------------

    def add_evidence(self, workspace_id: str, ev: EvidenceCreate) -> dict:
        raw = base64.b64decode(ev.data)
        kind = "screen" if ev.type == "screenshot" else ev.type
        ext = EXTENSIONS.get(ev.mime_type, ".bin")
        evidence_id = str(uuid.uuid4())
        chunk_index = ev.chunk_index or 0
        # The artifact is named by its id, never by the client's file_name (no path tricks).
        rel = Path("artifacts", workspace_id, evidence_id + ext)
        self._write(rel, raw)
        row = {
            "id": evidence_id,
            "workspace_id": workspace_id,
            "block_id": ev.block_id,
            "session_id": ev.session_id,
            "type": kind,
            "file_name": ev.file_name or f"{kind}-{chunk_index}{ext}",
            "mime_type": ev.mime_type,
            "file_size": len(raw),
            "xai_file_id": None,
            "timestamp_ms": ev.timestamp_ms if ev.timestamp_ms is not None else int(time.time() * 1000),
            "chunk_index": chunk_index,
            "metadata": json.dumps(ev.metadata) if ev.metadata is not None else None,
            "tool_name": ev.tool_name,
            "tool_action": ev.tool_action,
            "device_name": ev.device_name,
            "sample_count": ev.sample_count,
            "band_powers": json.dumps(ev.band_powers) if ev.band_powers is not None else None,
            "artifact": str(rel),
            "created_at": now_iso(),
        }
        with self._lock, self._db:
            self._db.execute(
                f"INSERT INTO evidence ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        return self._evidence_out(row)

    def evidence(self, workspace_id: str | None = None) -> list[dict]:
        """Stored rows in insertion order, each with band_powers and its artifact's absolute path."""
        query = "SELECT * FROM evidence ORDER BY seq"
        params: tuple[str, ...] = ()
        if workspace_id is not None:
            query, params = "SELECT * FROM evidence WHERE workspace_id = ? ORDER BY seq", (workspace_id,)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [self._evidence_out(dict(r)) for r in rows]

    def read_artifact(self, evidence_id: str) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT artifact FROM evidence WHERE id = ?", (evidence_id,)).fetchone()
        if row is None:
            raise KeyError(f"no evidence {evidence_id}")
        return (self.data_dir / row["artifact"]).read_bytes()

    def _evidence_out(self, row: dict) -> dict:
        out = {k: row[k] for k in EVIDENCE_REPLY_FIELDS}
        out["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
        out["band_powers"] = json.loads(row["band_powers"]) if row["band_powers"] else None
        out["artifact_path"] = str(self.data_dir / row["artifact"])
        return out

    def _write(self, rel: Path, raw: bytes) -> None:
        path = self.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
