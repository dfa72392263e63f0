"""The session summary averages what exists: windows without band powers are left out (issue 19.6).

Through the real `collector replay` of the field case `mindmonitor_muse2016.csv.gz` (2 s of NaN
raw values: headband lifted) against the sandbox: the summary's shares are the mean over the
windows that have powers, as each chunk's are, and `windows_with_powers` counts only those.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import pytest
from test_field_cases import chunks_of, field, replay

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
