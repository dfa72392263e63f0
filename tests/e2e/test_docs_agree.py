"""The README, the --help texts and the code say the same (demo length and flush timeout, status --json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from docs_text import docs_text, section

REPO = Path(__file__).resolve().parents[2]
README = docs_text()


def collector(*args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout


def test_demo_length_and_flush_timeout_agree():
    from collector.commands.demo import DEMO_DURATION_S, DEMO_FLUSH_TIMEOUT_S

    helptext = " ".join(collector("demo", "--help").split())
    assert f"capture it for {DEMO_DURATION_S:g} s" in helptext
    assert f"(up to {DEMO_FLUSH_TIMEOUT_S:g} s)" in helptext and f"(default {DEMO_DURATION_S:g})" in helptext
    readme = " ".join(README.split())
    assert f"captures it for {DEMO_DURATION_S:g} s" in readme
    assert f"flush timeout {DEMO_FLUSH_TIMEOUT_S:g} s" in readme
    assert f"(~{DEMO_DURATION_S + 10:.0f} s)" in readme  # the README's first command says how long
    summary = " ".join(collector("--help").split())
    assert f"(~{DEMO_DURATION_S + 10:.0f} s)" in summary


def status_section() -> str:
    return section("`collector status --json`")


def status_keys() -> set[str]:
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", status_section(), flags=re.M))
    return {k for pair in documented for k in pair if k}


def test_status_json_keys_are_the_readmes(tmp_path):
    section = status_section()
    keys = status_keys()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "XDG_RUNTIME_DIR": str(runtime)}
    empty = json.loads(collector("status", "--json", env=env))
    assert set(empty) == keys
    helptext = " ".join(collector("status", "--help").split())
    for key in keys:
        assert key in helptext
    for key in ("capture_id", "workspace_id", "oldest_pending_age_s", "since_ms"):
        assert f"`{key}`" in section


def test_status_json_capture_fields_are_the_readmes(tmp_path):
    from collector.delivery.spool import Spool

    with Spool(tmp_path / "spool") as spool:
        spool.add(
            workspace_id="a3090000-0000-4000-8000-000000000001",
            evidence={"type": "eeg", "mime_type": "application/json", "chunk_index": 0,
                      "metadata": {"capture_id": "c", "stream_id": "eeg:x", "collector_version": "0"}},
            data=b"{}",
        )  # fmt: skip
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "XDG_RUNTIME_DIR": str(runtime)}
    report = json.loads(collector("status", "--json", env=env))
    assert set(report) == status_keys()  # review13 #13: the same keys with a spool as without one
    row = next(line for line in README.splitlines() if line.startswith("| `captures` |"))
    assert set(report["captures"][0]) == set(re.findall(r"`(\w+)`", row.split("|")[2]))
    row = next(line for line in README.splitlines() if line.startswith("| `screen_pause` |"))
    assert set(report["screen_pause"]) == set(re.findall(r"`(\w+)`", row.split("|")[2]))
