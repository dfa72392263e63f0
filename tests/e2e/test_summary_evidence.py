"""The session-summary evidence: one per capture, posted last, under 200 kB for a 2-hour replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402

BOUND = 200_000


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_hour_replay_posts_its_summary_last_and_small(sandbox, tmp_path):
    seconds = 2 * 3600
    xdf = tmp_path / "two-hours.xdf"
    # A marker every 0.5 s (14,399 markers): more than the bundled P300 recording's ~1.6 per second.
    write_xdf(xdf, [synthetic_eeg(seconds), synthetic_markers(seconds, every_s=0.5)])
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    # 10-minute chunks keep the upload short; the summary must not depend on the chunk length.
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "replay", str(xdf), "--workspace", sandbox.workspace_id,
         "--block", sandbox.block_ids[0], "--speed", "max", "--chunk-seconds", "600",
         "--spool", str(tmp_path / "spool"), "--flush-timeout", "300"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = sandbox.evidence(sandbox.workspace_id)
    assert len(rows) >= 13  # 10-min chunks (cut shorter when one would pass 9 MB) + the summary
    summary_row = rows[-1]  # posted last
    meta = summary_row["metadata"]
    assert summary_row["type"] == "eeg" and summary_row["mime_type"] == "application/json"
    assert meta["kind"] == "session-summary" and meta["stream_id"] == "session-summary"
    assert summary_row["chunk_index"] == 0 and meta["capture_id"] == rows[0]["metadata"]["capture_id"]
    assert meta["collector_version"]
    raw = sandbox.read_artifact(summary_row["id"])
    assert len(raw) < BOUND, f"summary is {len(raw)} bytes"
    summary = json.loads(raw)
    chunks = [json.loads(sandbox.read_artifact(r["id"])) for r in rows[:-1]]

    # Totals agree with the chunks it summarises.
    assert summary["totals"]["samples"] == sum(len(c["samples"]) for c in chunks) == seconds * 256
    assert summary["totals"]["eeg_chunks"] == len(rows) - 1
    assert summary["totals"]["markers"] == sum(len(c["events"]) for c in chunks) == 14_399
    assert summary["markers_complete"] is False and summary["markers"] == []
    assert sum(sum(m["markers"].values()) for m in summary["minutes"]) == 14_399
    assert summary["duration_s"] == pytest.approx(seconds, abs=1)
    assert 120 <= len(summary["minutes"]) <= 121
    # band_powers = the capture's mean over windows and channels of the relative powers.
    windows = [w for c in chunks for w in c["windows"] if w["relative"]]
    channels = summary["device"]["channels"]
    for band in ("delta", "theta", "alpha", "beta", "gamma"):
        expected = sum(w["relative"][ch][band] for w in windows for ch in channels) / (len(windows) * 4)
        assert summary["band_powers"][band] == pytest.approx(expected, rel=2e-3)
        assert summary_row["band_powers"][band] == pytest.approx(expected, rel=2e-3)
    assert summary["totals"]["windows_with_powers"] == len(windows)
    assert set(summary["channels_good_share"]) == set(channels)
    middle = summary["minutes"][60]  # a whole wall-clock minute (the first and last may be partial)
    assert set(middle["band_powers"]) == set(channels) and middle["windows"] == 120  # 0.5 s step
