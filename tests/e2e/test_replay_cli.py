"""`collector replay` summaries and `--to-lsl` (real CLI, the bundled Muse recording)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from collector.errors import EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
RECORDING_S = 30732 / 256  # samples / sfreq of the bundled recording


def collector(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.pop("DISPLAY", None)
    env.update(PYTHONPATH=str(REPO), COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"))
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_replay_summary_gives_recording_time_and_wall_time_separately(tmp_path):
    proc = collector(
        tmp_path, "replay", str(MUSE_XDF), "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()),
        "--speed", "max", "--offline", "--log-format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # --offline: everything waits in the spool
    summary = next(json.loads(line) for line in proc.stderr.splitlines() if '"summary"' in line)
    assert summary["recording_s"] == pytest.approx(RECORDING_S, abs=0.1)
    assert 0 < summary["wall_s"] < summary["recording_s"] / 4  # --speed max: much faster than real time
    assert "duration_s" not in summary  # no single number that could mean either


def test_to_lsl_rejects_a_target_it_does_not_use(tmp_path):
    proc = collector(tmp_path, "replay", str(MUSE_XDF), "--to-lsl", "-w", str(uuid.uuid4()), "-b", "Warm-up")
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip() == (
        "collector: --to-lsl publishes the recording as an LSL stream and sends nothing to the API; "
        "drop --workspace and --block (or drop --to-lsl to replay into a block)."
    )


@pytest.mark.lsl
@pytest.mark.slow
def test_to_lsl_says_when_the_recording_has_been_played(tmp_path):
    name = f"tolsl-done-{uuid.uuid4().hex[:8]}"
    proc = collector(tmp_path, "replay", str(MUSE_XDF), "--to-lsl", "--stream-name", name, "--speed", "40")
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Played {MUSE_XDF} to LSL: 30732 samples in ")
    assert last.endswith("the stream has ended.")


@pytest.mark.slow
@pytest.mark.lsl
def test_to_lsl_speed_max_pushes_the_whole_file_fast_once_a_consumer_connects(tmp_path):
    """review13 #7: `--to-lsl --speed max` played the 120 s recording in real time (2 min)."""
    import time

    import pylsl

    name = f"tolsl-max-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.update(PYTHONPATH=str(REPO), COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "replay", str(MUSE_XDF), "--to-lsl", "--stream-name", name,
         "--speed", "max"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        found = pylsl.resolve_bypred(f"name='{name}'", 1, 30)
        assert found, "the stream never appeared"
        time.sleep(2)  # nothing is pushed before a consumer connects: waiting loses no sample
        inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        inlet.open_stream(10)
        connected = time.monotonic()
        samples = 0
        while proc.poll() is None or inlet.samples_available():
            chunk, _ = inlet.pull_chunk(timeout=0.5, max_samples=4096)
            samples += len(chunk)
        took = time.monotonic() - connected
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "waiting for it" in err
    assert samples == 30732, err
    assert took < 40, took  # the recording is 120 s; real time would be at least that


@pytest.mark.slow
def test_replay_delivers_its_last_items_without_a_time_limit_and_says_so(sandbox, tmp_path):
    """review13 #11: after the file, a replay said "delivering the last 1 item(s), for up to 30 s"
    while the README says it delivers until everything is sent (without --flush-timeout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.update(
        PYTHONPATH=str(REPO), COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"),
        OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url,
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "replay", str(MUSE_XDF), "-w", sandbox.workspace_id,
         "-b", sandbox.block_ids[0], "--speed", "max"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    flushing = [line for line in proc.stderr.splitlines() if "delivering the last" in line]
    assert flushing, proc.stderr  # the session summary is spooled when the file ends
    assert all("until they are delivered" in line and "for up to" not in line for line in flushing), flushing
    kinds = [row.get("metadata", {}).get("kind") for row in sandbox.evidence(sandbox.workspace_id)]
    assert "session-summary" in kinds, kinds
