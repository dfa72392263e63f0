"""End-of-session summaries tell the truth (real `collector run` under Xvfb)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from xserver import Xvfb

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.xvfb
@pytest.mark.slow
def test_static_screen_12_s_at_1_s_is_1_sent_and_11_skipped(tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    server = Xvfb(640, 480)  # nothing draws on it: a static black screen
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
        env.update(PYTHONPATH=str(REPO), DISPLAY=server.display, XDG_RUNTIME_DIR=str(tmp_path))
        os.chmod(tmp_path, 0o700)
        proc = subprocess.run(
            [
                sys.executable, "-m", "collector", "run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()),
                "--offline", "--no-eeg", "--screen", "on", "--screen-interval", "1", "--duration", "11.5",
                "--spool", str(tmp_path / "spool"), "--log-format", "json",
            ],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr  # --offline that spooled everything is a success
    summary = next(json.loads(line) for line in proc.stderr.splitlines() if '"summary"' in line)
    assert summary["screenshots"] == 1
    assert summary["screenshots_skipped"] == 11  # grabs at 0, 1, ..., 11 s: all but the first unchanged
    # review13 #5, #6: `sessions` says the same (skips, and the 11.5 s it ran: not the 0 s between the
    # first and the last screenshot, which are the same frame).
    listed = subprocess.run(
        [sys.executable, "-m", "collector", "sessions", "--json", "--spool", str(tmp_path / "spool")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    (session,) = json.loads(listed.stdout)
    assert session["screenshots"] == 1 and session["screenshots_skipped"] == 11
    assert 11.0 <= session["duration_s"] <= 14.0, session
    table = subprocess.run(
        [sys.executable, "-m", "collector", "sessions", "--spool", str(tmp_path / "spool")],
        env=env, capture_output=True, text=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip

    def cell(column: str) -> str:  # columns are left-aligned under their header
        return table[1][table[0].index(column) :].split()[0]

    assert cell("SKIPPED") == "11" and cell("SHOTS") == "1", table
    assert cell("DURATION") in ("0:11", "0:12", "0:13"), table
