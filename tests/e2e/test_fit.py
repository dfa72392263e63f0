"""`collector fit` and `run --fit-check`: real LSL streams (the bundled Muse recording, a flat channel)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from collector.core.fit import grade_window
from collector.devices.player import XdfPlayer, make_eeg_info
from collector.errors import EXIT_FAILURE, EXIT_NO_SOURCE, EXIT_OK

REPO = Path(__file__).resolve().parents[2]
MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"


def collector(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fit_lines(text: str) -> list[str]:
    """The once-a-second lines in the collector's layout: `<time> INFO    fit 00:05 TP9 good … event=fit`."""
    return [line for line in text.splitlines() if " INFO    fit " in line and line.endswith(" event=fit")]


def play_with_flat_channel(name: str, stop: threading.Event, flat: int = 2, sfreq: float = 256.0) -> None:
    """A 4-channel EEG-like stream (10 Hz sine + noise, 20 µV) whose channel `flat` is a constant."""
    import time

    import pylsl

    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ("TP9", "AF7", "AF8", "TP10"), sfreq))
    rng = np.random.default_rng(1)
    start, pushed, block = pylsl.local_clock(), 0, 8
    while not stop.is_set():
        t = (pushed + np.arange(block)) / sfreq
        values = 20 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 5, (block, 4))
        values[:, flat] = 0.0
        due = start + t[-1]
        time.sleep(max(0.0, due - pylsl.local_clock()))
        outlet.push_chunk(values.astype(np.float32), (start + t).tolist())
        pushed += block


def test_grades_from_the_chunk_quality_flags():
    assert grade_window({}) == ("good", "")
    assert grade_window({"flat": True, "line_noise": True}) == ("bad", "flat")
    assert grade_window({"clipped": True}) == ("bad", "railed")
    assert grade_window({"excessive_amplitude": True}) == ("fair", "noisy")
    assert grade_window({"line_noise": True}) == ("fair", "line noise")


@pytest.mark.lsl
@pytest.mark.slow
def test_fit_passes_on_the_bundled_recording_played_as_a_stream():
    name = f"fit-muse-{uuid.uuid4().hex[:8]}"
    with XdfPlayer(MUSE_XDF, stream_name=name, source_id=name, loop=True):
        proc = collector("fit", "--stream-name", name, "--timeout", "30")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    ticks = fit_lines(proc.stdout)
    assert 3 <= len(ticks) <= 10  # one line per second, ends by itself a few seconds in
    assert ticks[-1].endswith("good for 3/3 s event=fit")
    for ch in ("TP9", "AF7", "AF8", "TP10"):
        assert f"{ch} " in ticks[-1]
    assert "Right AUX" not in ticks[-1]  # AUX is not EEG
    assert lines[-1].startswith("Fit is good")


@pytest.mark.lsl
@pytest.mark.slow
def test_fit_fails_at_timeout_naming_the_flat_channel_and_the_fix():
    import pylsl

    from collector.devices.player import make_marker_info

    name = f"fit-flat-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(target=play_with_flat_channel, args=(name, stop), daemon=True)
    player.start()
    # Marker streams of other sessions on the host: fit records nothing, so it ignores markers
    # (review13 #13: it used to warn about them naming an internal option).
    others = [pylsl.StreamOutlet(make_marker_info(f"{name}-x{k}-markers", f"{name}-x{k}")) for k in (1, 2)]
    try:
        proc = collector("fit", "--stream-name", name, "--timeout", "4")
    finally:
        stop.set()
        player.join(5)
        del others
    assert "marker" not in proc.stderr.lower(), proc.stderr
    assert proc.returncode == EXIT_FAILURE, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("collector: The fit is not good after")
    assert "AF8 bad (flat)" in last and "wet the sensors" in last
    assert "TP9" not in last  # only the channels that need attention are named
    ticks = fit_lines(proc.stdout)
    assert 4 <= len(ticks) <= 6 and all("AF8 bad" in t for t in ticks)


@pytest.mark.lsl
def test_fit_without_a_stream_exits_5():
    proc = collector("fit", "--stream-name", f"nothing-{uuid.uuid4().hex[:8]}", "--timeout", "3")
    assert proc.returncode == EXIT_NO_SOURCE
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("collector: ")


@pytest.mark.lsl
@pytest.mark.slow
def test_run_fit_check_warns_naming_the_bad_channel_then_captures(tmp_path):
    name = f"fit-run-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(target=play_with_flat_channel, args=(name, stop), daemon=True)
    player.start()
    try:
        proc = collector(
            "run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()), "--offline", "--stream-name", name,
            "--fit-check", "3", "--duration", "2", "--screen", "off", "--spool", str(tmp_path / "spool"),
        )  # fmt: skip
    finally:
        stop.set()
        player.join(5)
    assert proc.returncode == 0, proc.stderr  # captured into the spool (--offline)
    err = proc.stderr
    warning = next(line for line in err.splitlines() if "The fit is not good after" in line)
    assert "AF8 bad (flat)" in warning and "Capturing anyway" in warning
    assert err.index("The fit is not good") < err.index("capture_started")
    assert len(fit_lines(err)) >= 3


_PLAY_CLEAN = """
import sys, time
import numpy as np, pylsl
from collector.devices.player import make_eeg_info
name, seconds, sfreq = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ("TP9", "AF7", "AF8", "TP10"), sfreq))
outlet.wait_for_consumers(15)  # samples pushed before the inlet connects would never reach it
rng = np.random.default_rng(2)
start, pushed, block = pylsl.local_clock(), 0, 8
while pushed / sfreq < seconds:
    t = (pushed + np.arange(block)) / sfreq
    values = 20 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 5, (block, 4))
    time.sleep(max(0.0, start + t[-1] - pylsl.local_clock()))
    outlet.push_chunk(values.astype(np.float32), (start + t).tolist())
    pushed += block
"""


def play_clean_for(name: str, seconds: float, sfreq: float = 256.0) -> subprocess.Popen:
    """A clean 4-channel stream (10 Hz sine + noise, 20 µV) for `seconds` from another process,
    which then ends: the stream is gone, as when a headset app is killed. (In a thread of the
    reading process, destroying the outlet rarely crashed liblsl.)"""
    return subprocess.Popen([sys.executable, "-c", _PLAY_CLEAN, name, str(seconds), str(sfreq)])


@pytest.mark.lsl
def test_a_stream_that_dies_shows_no_signal_and_never_counts_as_good(caplog):
    """review13 #1: a clean stream killed ~2.5 s in: the window is full of good samples, but the
    checks after its death must say "no signal" (no stale grade or µV) and never reach 3/3 s."""
    from collector.core.fit import run_fit_check
    from collector.devices.lsl.source import LslSource

    name = f"fit-dies-{uuid.uuid4().hex[:8]}"
    source = LslSource(stream_name=name, resolve_timeout_s=10, markers=None)
    player = play_clean_for(name, 2.6)
    ticks = []
    try:
        description = source.open()
        result = run_fit_check(
            source, description, timeout_s=7, on_tick=lambda e, ch, streak: ticks.append((e, ch, streak))
        )
    finally:
        source.close()
        player.kill()
        player.wait()
    assert not result.ok, ticks
    assert max(streak for _, _, streak in ticks) < 3
    assert any(f.grade == "good" for _, ch, _ in ticks for f in ch.values())  # it was good while alive
    last = ticks[-1][1]
    assert {f.label() for f in last.values()} == {"bad (no signal)"}
    assert all(f.ptp_uv is None for f in last.values())  # nothing stale shown
    assert ticks[-1][0] >= 6.5
    assert "stopped sending" in result.advice()
    # The source's own line about it names its event (review13 #12).
    assert any(getattr(r, "event", None) == "stream_lost" for r in caplog.records), caplog.text


@pytest.mark.parametrize("value", ["0", "-2"])
def test_fit_check_zero_or_less_is_refused_like_fit_timeout(value, tmp_path):
    """review13 #10: `--fit-check 0` used to skip the check silently; both now refuse with exit 2."""
    run = collector(
        "run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()), "--offline", "--fit-check", value,
        "--stream-name", f"none-{uuid.uuid4().hex[:8]}", "--screen", "off", "--spool", str(tmp_path),
        timeout=60,
    )  # fmt: skip
    fit = collector("fit", "--timeout", value, "--stream-name", f"none-{uuid.uuid4().hex[:8]}", timeout=60)
    for proc, flag in ((run, "--fit-check"), (fit, "--timeout")):
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"collector: {flag} must be a positive number of seconds; {float(value):g} is invalid."
        ]


@pytest.mark.lsl
def test_fit_json_lines_have_the_collectors_layout():
    """review13 #12: `fit --log-format json` lines had no time, level or message."""
    import json

    name = f"fit-json-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(target=play_with_flat_channel, args=(name, stop), daemon=True)
    player.start()
    try:
        proc = collector("fit", "--stream-name", name, "--timeout", "3", "--log-format", "json")
    finally:
        stop.set()
        player.join(5)
    assert proc.returncode == EXIT_FAILURE, proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) >= 3
    for record in records:
        assert {"ts", "time", "level", "message", "event"} <= record.keys(), record
        assert record["event"] == "fit" and record["level"] == "info"
        assert record["message"].startswith("fit 00:0") and record["channels"]["AF8"]["grade"] == "bad"
