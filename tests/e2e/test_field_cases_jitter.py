"""Jitter is not a gap: the two real muselsl sessions of tests/data/field-cases (and one of them with
a real lost packet) through the real `collector replay --speed max` against the sandbox.

What is checked is what the sandbox stored (decoded artifacts): no gap and band powers on every
window for the jittery sessions, every sample once in file order, delivered times strictly
increasing and within the file's own jitter of its stamps; exactly one gap where a packet is lost.
The model itself (thresholds, live = replay) is tested in tests/unit/test_time_repair_model.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_field_cases import check_sound, chunks_of, field, gaps_of, replay

from collector.devices.player import make_eeg_info

START = "2024-05-01T10:00:00Z"  # the files' stamps are LSL-clock seconds: anchor them
START_MS = 1714557600000.0
EEG4 = ["TP9", "AF7", "AF8", "TP10"]
P_MS = 1000.0 / 256

pytestmark = pytest.mark.slow


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    import pandas as pd

    frame = pd.read_csv(path)
    return frame["timestamps"].to_numpy(np.float64), frame[EEG4].to_numpy(np.float64), frame


def stamp_jitter_ms(stamps: np.ndarray) -> float:
    """The file's own jitter: the largest distance of a stamp from the least-squares line of stamp
    against sample index over its 10 s stretch (the window the model fits over), in ms. The
    muselsl sessions give about 30 ms (packets stamped when they arrive, up to 30 ms late)."""
    worst = 0.0
    step = 2560
    for a in range(0, stamps.size, step):
        t = stamps[a : a + step]
        x = np.arange(t.size, dtype=np.float64)
        slope, icpt = np.polyfit(x, t - t[0], 1)
        worst = max(worst, float(np.abs(t - t[0] - (icpt + slope * x)).max()))
    return 1000.0 * worst


def delivered(sandbox) -> tuple[list[dict], np.ndarray, np.ndarray]:
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)  # strictly increasing, chunks where their samples are, sane gaps
    samples = np.array([row for c in chunks for row in c["samples"]], dtype=np.float64)
    return chunks, samples, times


def windows_of(chunks: list[dict]) -> list[dict]:
    return [w for c in chunks for w in c["windows"]]


@pytest.mark.parametrize("name", ["muselsl_jitter_n170.csv", "muselsl_jitter_ssaep.csv"])
def test_muselsl_packet_jitter_gives_no_gap_and_band_powers_on_every_window(sandbox, tmp_path, name):
    path = field(name)
    stamps, values, _ = read_csv(path)
    assert np.sum(np.diff(stamps) < 0) > 40  # the stamps do step back, dozens of times
    proc, summary = replay(sandbox, path, tmp_path, "--start-time", START)
    assert proc.returncode == 0, proc.stderr
    assert summary is not None and summary["samples"] == stamps.size
    chunks, samples, times = delivered(sandbox)
    assert gaps_of(chunks) == []
    windows = windows_of(chunks)
    assert len(windows) >= 50 and all(w["relative"] for w in windows), [
        w for w in windows if not w["relative"]
    ]
    # Every sample once, in file order (values at the artifact's 0.001 µV).
    assert samples.shape == values.shape
    np.testing.assert_allclose(samples, values, atol=5e-4)
    # Times: one fitted period apart (contiguous), and each within the file's own jitter of its
    # stamp (the anchor maps the first fitted time to --start-time, so the bound is twice the
    # jitter: the first sample's own offset plus this one's).
    steps = np.diff(times)
    assert steps.min() > 0.9 * P_MS and steps.max() < 1.1 * P_MS
    jitter = stamp_jitter_ms(stamps)
    assert 5.0 < jitter < 40.0
    assert np.abs(times - (START_MS + (stamps - stamps[0]) * 1000.0)).max() <= 2 * jitter
    assert all(c["device"]["sfreq"] == 256.0 for c in chunks)


@pytest.mark.parametrize(("at", "lost"), [(15000, 12), (3000, 24)])
def test_a_real_lost_packet_is_exactly_one_gap_where_it_is(sandbox, tmp_path, at, lost):
    """The n170 session with one packet (12 samples, a step of 49 ms) or two (24, a step of 98 ms:
    over 60 ms at 256 Hz) taken out: exactly one gap, between the samples on either side."""
    _, _, frame = read_csv(field("muselsl_jitter_n170.csv"))
    cut = frame.drop(range(at, at + lost)).reset_index(drop=True)
    path = tmp_path / f"n170_lost_{lost}_at_{at}.csv"
    cut.to_csv(path, index=False, float_format="%.3f")
    stamps, values, _ = read_csv(path)
    proc, _ = replay(sandbox, path, tmp_path, "--start-time", START)
    assert proc.returncode == 0, proc.stderr
    chunks, samples, times = delivered(sandbox)
    np.testing.assert_allclose(samples, values, atol=5e-4)  # every sample once
    gaps = gaps_of(chunks)
    assert len(gaps) == 1, gaps
    # The gap runs from the sample before the lost packet to the one after it ...
    assert gaps[0]["start_ms"] == pytest.approx(times[at - 1], abs=1e-3)
    assert gaps[0]["end_ms"] == pytest.approx(times[at], abs=1e-3)
    # ... and is as long as the missing samples, give or take the level's noise (a few ms).
    assert times[at] - times[at - 1] == pytest.approx((lost + 1) * P_MS, abs=6.0)
    others = np.delete(np.diff(times), at - 1)
    assert others.max() < 1.1 * P_MS
    # The windows (2 s, every 0.5 s) that hold the hole have no band powers and say why; every
    # other window has them.
    windows = windows_of(chunks)
    holding = [
        w for w in windows if w["end_ms"] - 2000.0 < gaps[0]["end_ms"] and w["end_ms"] >= gaps[0]["end_ms"]
    ]
    assert 1 <= len(holding) <= 4
    assert all(not w["relative"] and w["quality"]["gap"] for w in holding)
    assert all(w["relative"] for w in windows if w not in holding)


class PacketPusher(threading.Thread):
    """Pushes the rows in muselsl's 12-sample packets, each when its last stamp is due (real time),
    with the file's own stamps shifted to now (`push_chunk` with explicit timestamps), once a
    consumer is connected."""

    def __init__(self, outlet, data: np.ndarray, stamps: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.outlet, self.data, self.stamps = outlet, data, stamps
        self.stop = threading.Event()

    def run(self) -> None:
        import pylsl

        self.outlet.wait_for_consumers(30.0)
        time.sleep(0.5)  # the inlet's stream opens after it is connected
        base = pylsl.local_clock() - float(self.stamps[0])
        for i in range(0, self.stamps.size, 12):
            due = float(self.stamps[min(i + 11, self.stamps.size - 1)]) + base
            while not self.stop.is_set() and pylsl.local_clock() < due:
                time.sleep(min(0.005, max(0.0, due - pylsl.local_clock())))
            if self.stop.is_set():
                return
            self.outlet.push_chunk(self.data[i : i + 12], (self.stamps[i : i + 12] + base).tolist())


@pytest.mark.lsl
def test_live_n170_stamps_through_lsl_give_the_same_samples_times_and_no_gap_as_replay(
    sandbox_factory, tmp_path
):
    """The first 25 s of the n170 session pushed live through a real pylsl outlet into
    `collector run --stream-name`: the same samples, no gap, and the same fitted times as the
    replay of the same rows (relative to the first sample; 1 ms allows for the LSL-clock -> Unix
    mapping of the live run, the fit itself is identical)."""
    import pylsl

    _, _, frame = read_csv(field("muselsl_jitter_n170.csv"))
    n = 25 * 256
    part = tmp_path / "n170_25s.csv"
    frame.iloc[:n].to_csv(part, index=False, float_format="%.3f")
    stamps, values, _ = read_csv(part)

    replayed = sandbox_factory()
    proc, _ = replay(replayed, part, tmp_path, "--start-time", START)
    assert proc.returncode == 0, proc.stderr
    r_chunks, r_samples, r_times = delivered(replayed)
    assert gaps_of(r_chunks) == [] and r_samples.shape == values.shape

    live = sandbox_factory()
    name = f"n170-live-{uuid.uuid4().hex[:10]}"
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, EEG4, 256.0, channel_format="double64"))
    pusher = PacketPusher(outlet, values, stamps)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=live.api_key, OPENLESSON_BASE_URL=live.base_url)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    try:
        pusher.start()
        proc = subprocess.run(
            [
                sys.executable, "-m", "collector", "run", "--workspace", live.workspace_id,
                "--block", live.block_ids[0], "--stream-name", name, "--markers", "off",
                "--screen", "off", "--duration", "32", "--spool", str(tmp_path / "spool-live"),
                "--flush-timeout", "60", "--log-format", "json",
            ],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=150,
        )  # fmt: skip
    finally:
        pusher.stop.set()
        pusher.join(5)
        del outlet
    assert proc.returncode == 0, proc.stderr
    l_chunks, l_samples, l_times = delivered(live)
    assert gaps_of(l_chunks) == []
    assert l_samples.shape == values.shape  # every sample once ...
    np.testing.assert_allclose(l_samples, r_samples, atol=5e-4)  # ... the same as replayed
    np.testing.assert_allclose(l_times - l_times[0], r_times - r_times[0], atol=1.0, rtol=0)
    assert all(w["relative"] for w in windows_of(l_chunks))
