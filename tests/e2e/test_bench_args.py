"""The issue-23 benchmarks refuse options they cannot run with one usage line, before any work:
no traceback after minutes of building a recording that cannot fit in memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("bench_replay_ratio.py", ["--no-account", "--hours", "1e9"], "--hours: 1e9 must be at most 24"),
        ("bench_review.py", ["--hours", "1e9"], "--hours: 1e9 must be at most 24"),
        # replay takes 0.5 to 600 s: said at once, not after the recording and the reference are made
        (
            "bench_replay_ratio.py",
            ["--no-account", "--hours", "0.003", "--chunk-seconds", "1e9"],
            "must be at most 600",
        ),
        ("bench_replay_ratio.py", ["--hours", "0.003", "--chunk-seconds", "0.001"], "must be at least 0.5"),
    ],
)
def test_a_benchmark_refuses_an_option_out_of_range_in_one_line(script, args, says):
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert says in last, proc.stderr
