"""Jitter is not a gap: the two real muselsl sessions of tests/data/field-cases (and one of them with
a real lost packet) through the real `collector replay --speed max` against the sandbox.

What is checked is what the sandbox stored (decoded artifacts): no gap and band powers on every
window for the jittery sessions, every sample once in file order, delivered times strictly
increasing and within the file's own jitter of its stamps; exactly one gap where a packet is lost.
The model itself (thresholds, live = replay) is tested in tests/test_time_repair_model.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_field_cases import check_sound, chunks_of, field, gaps_of, replay

START = "2024-05-01T10:00:00Z"  # the files' stamps are LSL-clock seconds: anchor them
START_MS = 1714557600000.0
EEG4 = ["TP9", "AF7", "AF8", "TP10"]
P_MS = 1000.0 / 256

pytestmark = pytest.mark.slow


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, "object"]:
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
    assert len(windows) >= 50 and all(w["relative"] for w in windows), [w for w in windows if not w["relative"]]
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
    # In the window that holds it no band powers (a hole in the data), every other one has them.
    bad = [w for w in windows_of(chunks) if not w["relative"]]
    assert 1 <= len(bad) <= 2
