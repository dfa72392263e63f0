"""The session summary averages what exists: windows without band powers are left out (issue 19.6),
and every window weighs the same, whichever minute holds it (issue 24.9).

Through the real `collector replay` of the field case `mindmonitor_muse2016.csv.gz` (2 s of NaN
raw values: headband lifted) against the sandbox: the summary's shares are the mean over the
windows that have powers, as each chunk's are, and `windows_with_powers` counts only those. And of
a recording of one full minute of alpha then 15 s of beta: the mean is over windows, not over the
two minutes' means.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
from test_field_cases import HEADER, HEADER_MS, XdfStream, chunks_of, field, replay, write_xdf

pytestmark = pytest.mark.slow


def summary_of(sandbox) -> dict:
    rows = [
        r
        for r in sandbox.evidence(sandbox.workspace_id)
        if (r.get("metadata") or {}).get("kind") == "session-summary"
    ]
    assert len(rows) == 1, rows
    return json.loads(sandbox.read_artifact(rows[0]["id"]))


def test_mind_monitor_summary_means_leave_out_windows_without_powers(sandbox, tmp_path, monkeypatch):
    src = field("mindmonitor_muse2016.csv.gz")
    csv = tmp_path / "mindmonitor_muse2016.csv"
    with gzip.open(src, "rb") as fin, open(csv, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    monkeypatch.setitem(os.environ, "TZ", "Europe/Berlin")
    proc, _ = replay(sandbox, csv, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    windows = [w for c in chunks for w in c["windows"]]
    powered = [
        w for w in windows if any(all(v is not None for v in p.values()) for p in w["relative"].values())
    ]
    assert 0 < len(powered) < len(windows)  # the lifted headband leaves some windows without powers
    summary = summary_of(sandbox)
    assert summary["totals"]["windows"] == len(windows)
    assert summary["totals"]["windows_with_powers"] == len(powered)
    shares = summary["band_powers"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert shares["alpha"] > 0.9  # every chunk says about 0.99
    for c in chunks:
        if c["band_powers"]:
            assert sum(c["band_powers"].values()) == pytest.approx(1.0, abs=0.01)


def test_summary_means_weigh_every_window_the_same_not_every_minute(sandbox, tmp_path):
    # 60 s of a 10 Hz rhythm from a minute's start (the header time), then 15 s of 20 Hz: one full
    # minute of alpha windows, then a short minute of beta ones.
    sfreq, channels = 256.0, ["O1", "O2"]
    t = np.arange(int(75 * sfreq)) / sfreq
    rhythm = np.where(t < 60.0, np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 20 * t))
    noise = np.random.default_rng(3).normal(0, 1, (len(t), len(channels)))
    values = (20 * rhythm[:, None] + noise).astype(np.float32)
    path = tmp_path / "alpha_then_beta.xdf"
    stream = XdfStream("MinutesEEG", "EEG", sfreq, channels, 5000.0 + t, values, source_id="minutes-eeg")
    write_xdf(path, [stream], start=HEADER)
    assert HEADER_MS % 60000 == 0  # the recording starts on a minute: minute 1 is full
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    windows = [w for c in chunks_of(sandbox) for w in c["windows"]]
    summary = summary_of(sandbox)
    full, short = summary["minutes"]
    assert full["windows"] > 3 * short["windows"] > 0, (full["windows"], short["windows"])
    assert full["mean"]["alpha"] > 0.8 and short["mean"]["beta"] > 0.8  # each minute is what it holds
    # The documented mean: over channels and windows of the relative powers, as a chunk's is.
    shares = [p for w in windows for p in w["relative"].values() if all(v is not None for v in p.values())]
    assert len(shares) == len(channels) * summary["totals"]["windows_with_powers"]
    for band in ("alpha", "beta"):
        by_window = float(np.mean([p[band] for p in shares]))
        by_minute = (full["mean"][band] + short["mean"][band]) / 2
        assert abs(by_window - by_minute) > 0.1  # the two differ by far here: the check has bite
        assert summary["band_powers"][band] == pytest.approx(by_window, rel=1e-3, abs=1e-4), (
            f"{band}: the summary says {summary['band_powers'][band]}, the mean over windows is "
            f"{by_window:.4f} (over minutes it would be {by_minute:.4f})"
        )
