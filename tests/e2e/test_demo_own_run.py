"""`collector demo` shows only its own run, even in a data folder with earlier runs (real demo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def demo(data: Path) -> subprocess.CompletedProcess:
    unset = ("DISPLAY", "WAYLAND_DISPLAY", "OPENLESSON_API_KEY", "OPENLESSON_BASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--duration", "3", "--data", str(data)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.lsl
@pytest.mark.slow
def test_second_demo_reports_only_its_own_evidence_and_says_what_next(tmp_path):
    from collector.sandbox.store import SandboxStore

    data = tmp_path / "demo"
    first, second = demo(data), demo(data)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    ws = [re.search(r"this run's workspace ([0-9a-f-]{36})", p.stdout).group(1) for p in (first, second)]
    assert ws[0] != ws[1]
    store = SandboxStore(data / "sandbox")
    try:
        own = [r for r in store.evidence(ws[1]) if r["type"] == "eeg"]
        everything = [r for r in store.evidence() if r["type"] == "eeg"]
    finally:
        store.close()
    assert len(everything) > len(own) >= 1  # the first run's rows are still in the folder
    printed = re.search(r"eeg\s+(\d+) evidence rows", second.stdout)
    assert int(printed.group(1)) == len(own)
    assert f"Evidence: {len(own)} artifacts" in second.stdout  # the report covers this run only
    tail = second.stdout[second.stdout.index("Next steps:") :]
    for needed in ("API key", "export OPENLESSON_API_KEY=", "--base-url", "collector sandbox --data"):
        assert needed in tail
