"""Log lines through the real CLI: one layout, -v for the collector's debug lines, -vv for HTTP internals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s+(\S.*)$")
# liblsl (C++) writes its own errors straight to stderr in loguru's layout; not Python logging's.
LIBLSL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \(\s*[\d.]+s\) \[")


def ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not LIBLSL.match(line)]


def collector(*args: str, sandbox=None, tmp_path=None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.pop("DISPLAY", None)
    env["PYTHONPATH"] = str(REPO)
    if sandbox is not None:
        env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    if tmp_path is not None:
        env["COLLECTOR_SPOOL_DIR"] = str(tmp_path / "spool")
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_v_shows_the_collectors_debug_lines_and_vv_the_http_librarys(sandbox):
    quiet = collector("blocks", "-w", sandbox.workspace_id, sandbox=sandbox)
    assert quiet.returncode == 0 and quiet.stderr == ""
    v = collector("blocks", "-w", sandbox.workspace_id, "-v", sandbox=sandbox)
    assert v.returncode == 0, v.stderr
    lines = v.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    assert any("-> HTTP 200 event=log logger=collector.api.client" in line for line in lines)
    assert "httpcore" not in v.stderr and "HTTP Request" not in v.stderr
    vv = collector("blocks", "-w", sandbox.workspace_id, "-vv", sandbox=sandbox)
    assert "logger=httpcore" in vv.stderr and "-> HTTP 200" in vv.stderr
    assert sandbox.api_key not in vv.stderr


@pytest.mark.lsl
@pytest.mark.slow
def test_a_run_writes_every_line_in_the_layout_with_a_message(tmp_path):
    from collector.devices.player import play_sine_to_lsl

    name = f"loglines-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    try:
        args = ("run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()), "--offline", "--stream-name", name,
                "--duration", "2", "--screen", "off", "-v")  # fmt: skip
        text = collector(*args, tmp_path=tmp_path)
        as_json = collector(*args, "--log-format", "json", tmp_path=tmp_path)
    finally:
        stop.set()
        player.join(10)
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr  # --offline spooled it all
    lines = ours(text.stderr)
    assert all(LINE.match(line) for line in lines), lines
    started = next(line for line in lines if "event=capture_started" in line)
    assert " INFO    capturing EEG from " in started  # the message before the fields, the event a field
    summary = next(line for line in lines if "event=summary" in line)
    assert "Session ended after" in summary and "screenshots_skipped=0" in summary
    # review13 #12: every text line names its event (a log record's too), and not as "warning".
    assert all(" event=" in line for line in lines), [line for line in lines if " event=" not in line]
    assert not any("event=warning" in line for line in lines), lines
    opened = next(line for line in lines if " INFO    LSL stream " in line)
    assert opened.endswith(" event=stream_opened"), opened
    records = [json.loads(line) for line in ours(as_json.stderr)]
    assert records and all(r["message"].strip() and r["level"] and r["time"] for r in records)
    assert {"capture_started", "summary"} <= {r.get("event") for r in records}
