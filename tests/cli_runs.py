"""Helpers for tests that run the real `collector` CLI as a subprocess against the sandbox."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(sandbox=None, *, key: str | None = None, display: str | None = None, **extra: str) -> dict:
    """A lab machine's environment: no display unless given, the sandbox as the API, our tree first."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "COLLECTOR_SPOOL_DIR")
    }
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if sandbox is not None:
        env.update(OPENLESSON_API_KEY=key or sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    if display:
        env["DISPLAY"] = display
    env.update(extra)
    return env


def collector(args: list[str], env: dict, *, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_collector(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def spool_items(root: Path) -> list[dict]:
    """Every item of a spool as stored on disk (read-only look at the real SQLite file)."""
    conn = sqlite3.connect(f"file:{root / 'spool.db'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT id, capture_id, stream_id, chunk_index, type, state, last_error, size_bytes FROM items"
            " ORDER BY id"
        )]  # fmt: skip
    finally:
        conn.close()


def is_summary(row: dict) -> bool:
    """The one session-summary row each capture posts last (type eeg, metadata kind session-summary)."""
    return (row.get("metadata") or {}).get("kind") == "session-summary"


def rows_of(sandbox, kind: str | None = None) -> list[dict]:
    """Stored rows in arrival order; `kind` "eeg" means EEG chunks (not the session summary)."""
    rows = sandbox.evidence(sandbox.workspace_id)
    return [r for r in rows if kind is None or (r["type"] == kind and not is_summary(r))]


def eeg_chunks(sandbox) -> list[dict]:
    """Delivered EEG artifacts, one per identity (duplicates must be byte-identical), by chunk_index."""
    by_identity: dict[tuple, bytes] = {}
    for row in rows_of(sandbox, "eeg"):  # chunks only
        meta = row["metadata"]
        ident = (meta["capture_id"], meta["stream_id"], row["chunk_index"])
        raw = sandbox.read_artifact(row["id"])
        assert by_identity.setdefault(ident, raw) == raw, "a duplicate must be the same chunk"
    return [json.loads(by_identity[k]) for k in sorted(by_identity, key=lambda k: (k[0], k[1], k[2]))]
