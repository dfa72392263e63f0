"""`collector devices` through the real CLI and liblsl: exit 5 when nothing is there to capture."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from collector.errors import EXIT_NO_SOURCE

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.lsl
def test_devices_exits_5_when_it_finds_no_headset_and_no_stream(tmp_path):
    # A liblsl config of its own (an unused multicast port, machine scope): streams that other
    # tests publish at the same time are not visible, so "nothing found" is really nothing.
    cfg = tmp_path / "lsl_api.cfg"
    port = random.randint(30000, 40000)
    cfg.write_text(
        f"[ports]\nMulticastPort = {port}\nBasePort = {port + 1}\n[multicast]\nResolveScope = machine\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "LSLAPICFG": str(cfg)}
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "collector", "devices", "--no-bluetooth", "--timeout", "0.5", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == EXIT_NO_SOURCE, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        if extra:
            assert json.loads(proc.stdout)["lsl_streams"] == []
        else:
            assert "none: start one" in proc.stdout
