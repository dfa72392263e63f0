"""A pause left on is visible: `status`, `doctor` and `run` say so, with since when (real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from collector.capture.pause import PauseControl, pause_fields, pause_notice

REPO = Path(__file__).resolve().parents[2]


def collector(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)  # platformdirs ignores an XDG_RUNTIME_DIR that is not 0700
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.pop("DISPLAY", None)
    env.update(
        PYTHONPATH=str(REPO),
        COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
    )
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_notice_says_since_when_and_how_to_resume(tmp_path):
    control = PauseControl(tmp_path / "state")
    assert pause_notice(control) is None and pause_fields(control)["paused"] is False
    state = control.pause()
    now = state.since_ms + 20 * 60 * 1000
    notice = pause_notice(control, now_ms=now)
    # A pause that began on another day than `now` names its date (23:54 + 20 min is tomorrow).
    same_day = time.localtime(state.since_ms / 1000)[:3] == time.localtime(now / 1000)[:3]
    clock = time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(state.since_ms / 1000))
    assert notice == (
        f"Screen capture is paused since {clock} (20 min ago); `collector resume` turns it back on."
    )
    fields = pause_fields(control)
    assert fields["paused"] and fields["since_ms"] == state.since_ms and fields["since"].startswith("20")


def test_status_and_doctor_show_a_pause_left_on(tmp_path):
    assert "paused" not in collector(tmp_path, "status").stdout
    before_ms = time.time_ns() // 1_000_000
    assert collector(tmp_path, "pause").returncode == 0
    status = collector(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    as_json = json.loads(collector(tmp_path, "status", "--json").stdout)
    assert as_json["screen_pause"]["paused"] is True
    assert abs(as_json["screen_pause"]["since_ms"] - before_ms) < 5000
    # The pause's own minute (not the test's: a minute may turn between the two).
    clock = time.strftime("%H:%M", time.localtime(as_json["screen_pause"]["since_ms"] / 1000))
    assert status.stdout.startswith(f"Screen capture is paused since {clock}")
    assert "`collector resume`" in status.stdout.splitlines()[0]

    doctor = collector(tmp_path, "doctor", "--lsl-wait", "0.2", "--base-url", "http://127.0.0.1:9")
    pause_line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["pause"])
    assert pause_line.startswith("warn") and f"paused since {clock}" in pause_line

    assert collector(tmp_path, "resume").returncode == 0
    assert "paused" not in collector(tmp_path, "status").stdout
    assert json.loads(collector(tmp_path, "status", "--json").stdout)["screen_pause"]["paused"] is False


@pytest.mark.lsl
def test_run_says_at_start_that_screen_capture_is_paused(tmp_path):
    from collector.devices.player import play_sine_to_lsl

    name = f"pause-visible-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    try:
        assert collector(tmp_path, "pause").returncode == 0
        ws, block = str(uuid.uuid4()), str(uuid.uuid4())
        proc = collector(
            tmp_path, "run", "-w", ws, "-b", block, "--offline", "--stream-name", name,
            "--duration", "1", "--log-format", "json", timeout=120,
        )  # fmt: skip
    finally:
        stop.set()
        player.join(10)
    assert proc.returncode == 0, proc.stderr  # --offline: the chunk waits in the spool, by design
    first = json.loads(proc.stderr.splitlines()[0])
    assert "warning" in (first.get("level"), first.get("event")), first
    assert "Screen capture is paused since" in first["message"]
    assert "`collector resume`" in first["message"]


@pytest.mark.xvfb
def test_a_paused_screen_only_run_says_once_that_nothing_is_captured(tmp_path):
    """review13 #13: a paused `run --no-eeg` said the pause three times, and "EEG is recorded"."""
    import shutil

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from xserver import Xvfb

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    assert collector(tmp_path, "pause").returncode == 0
    server = Xvfb(640, 480)
    try:
        runtime = tmp_path / "run"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
        env.update(PYTHONPATH=str(REPO), DISPLAY=server.display, XDG_RUNTIME_DIR=str(runtime))
        proc = subprocess.run(
            [sys.executable, "-m", "collector", "run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()),
             "--offline", "--no-eeg", "--screen-interval", "1", "--duration", "3",
             "--spool", str(tmp_path / "spool")],
            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr  # documented: the learner's choice, said at start
    lines = proc.stderr.splitlines()
    said = [line for line in lines if "capture is paused" in line.lower() or "capture paused" in line]
    assert len(said) == 1, lines
    assert "Until then nothing is captured (--no-eeg" in said[0] and "event=screen_paused" in said[0]
    assert "EEG is recorded" not in proc.stderr
    started = next(line for line in lines if "event=capture_started" in line)
    assert "screen=paused since" in started or 'screen="paused since' in started, started


def test_since_names_the_date_only_for_a_pause_from_another_day():
    from collector.capture.pause import _since

    noon = time.mktime((2026, 11, 28, 12, 0, 0, 0, 0, -1)) * 1000  # local noon: no midnight nearby
    assert _since(int(noon), int(noon + 20 * 60_000)) == "since 12:00 (20 min ago)"
    assert _since(int(noon), int(noon + 2 * 86_400_000)) == "since 2026-11-28 12:00 (2 days ago)"
