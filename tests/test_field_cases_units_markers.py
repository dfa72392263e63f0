"""Issue 19 parts 2-5 through the real `collector replay --speed max` against the sandbox: declared
units converted to µV, markers as people sent them (sampled strings, MNE-LSL annotations, BioSemi
Status), clocks that cannot be related, and EDF/BDF files as people write them."""

from __future__ import annotations

import numpy as np
import pytest
from test_field_cases import FIELD, chunks_of, events_of, field, replay

pytestmark = pytest.mark.slow


def samples_of(chunks: list[dict]) -> np.ndarray:
    return np.concatenate([np.asarray(c["samples"], dtype=float) for c in chunks])


def test_field_case_mne_lsl_player_volts_become_microvolts_and_annotations_events(sandbox, tmp_path):
    proc, summary = replay(sandbox, field("mne_lsl_player.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    data = samples_of(chunks)
    assert data.shape == (10_000, 4)
    assert 15 < np.percentile(np.abs(data), 99.5) < 40  # about ±20 µV, not 0.000
    assert {c["device"]["unit"] for c in chunks} == {"microvolts"}
    powers = [c["band_powers"] for c in chunks if c["band_powers"]]
    assert np.mean([p["alpha"] for p in powers]) > 0.5
    absolute = [
        np.mean([bands["alpha"] for bands in w["absolute"].values()])
        for c in chunks
        for w in c["windows"]
        if w["absolute"]
    ]
    assert absolute and 100 < np.median(absolute) < 400, absolute[:3]
    events = events_of(chunks)
    assert [e["value"] for e in events] == ["eyes_closed", "eyes_open"] * 3
    assert "flat" not in proc.stderr


def test_field_case_sampled_string_markers_only_non_empty_samples(sandbox, tmp_path):
    proc, summary = replay(sandbox, field("sampled_string_markers.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(chunks_of(sandbox))
    assert len(events) == 10 == summary["markers"]
    assert all(e["value"].strip(", ") for e in events)
