"""Recordings the tests use, and the expected values read straight with pyxdf (not our reader).

The Muse recording is the copy packaged with the collector; the other files are copies of the
project's shared test data in tests/data/ (sources and licences in tests/data/NOTICE.md), so a
fresh clone needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = DATA  # the copies of ../shared/data kept with the tests
MUSE = REPO / "collector" / "data" / "muse-p300-subject1.xdf"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def pyxdf_stream(path: Path, *, name: str | None = None, type_: str = "EEG") -> dict:
    """One stream of a file as pyxdf loads it (default options: clock sync, dejitter)."""
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    for s in streams:
        info = s["info"]
        if (name is not None and info["name"][0] == name) or (name is None and info["type"][0] == type_):
            return s
    raise AssertionError(f"no stream {name or type_} in {path}")


def pyxdf_eeg(path: Path, *, name: str | None = None, channels: int | None = None):
    """(samples as float64 [n, channels], time stamps in s [n]) of the file's EEG stream."""
    s = pyxdf_stream(path, name=name)
    data = np.asarray(s["time_series"], dtype=np.float64)
    return (data[:, :channels] if channels else data), np.asarray(s["time_stamps"], dtype=np.float64)
