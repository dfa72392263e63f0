"""The chunker follows a rate the source measured (live re-check) and states both rates; pure logic
with in-process SampleChunks (the real LSL path is in tests/e2e/test_lsl_field_cases.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collector.core.bandpower import BandSettings
from collector.core.chunk import EegChunker
from collector.core.records import Event, SampleChunk, StreamDescription


def chunks_for(real: float, declared: float, measured_from: int) -> list[dict]:
    d = StreamDescription(name="Live", type="EEG", source_id="live", sfreq=declared, channels=("A", "B"))
    chunker = EegChunker(d, BandSettings(), capture_id="c", stream_id="eeg:live", chunk_s=2.0)
    n = int(real * 12)
    t = np.arange(n) / real
    data = 20 * np.sin(2 * np.pi * 12.0 * t)[:, None] * np.ones((1, 2))
    out = []
    for i in range(0, n, 50):
        sfreq = real if i >= measured_from else None  # the source's first measurement comes later
        events = (Event(1e6 + t[i] * 1000 + 10_000, "after the end"),) if i == 0 else ()
        piece = SampleChunk(data[i : i + 50], 1e6 + t[i : i + 50] * 1000, events=events, sfreq=sfreq)
        out += chunker.push(piece)
    out += chunker.flush()
    return [json.loads(o.to_bytes()) for o in out]


@pytest.mark.parametrize(("real", "declared"), [(200.0, 256.0), (512.0, 500.0)])
def test_measured_rate_drives_windows_and_is_stated(real, declared):
    artifacts = chunks_for(real, declared, measured_from=250)
    assert sum(len(a["samples"]) for a in artifacts) == int(real * 12)
    for a in artifacts:
        assert a["device"]["sfreq"] == real and a["device"]["nominal_sfreq"] == declared
        assert a["device"]["measured_sfreq"] == real and a["method"]["nperseg"] == int(real)
    ends = [w["end_ms"] for a in artifacts for w in a["windows"]]
    assert np.allclose(np.diff(ends), 500.0, atol=0.01)  # a step of 0.5 s at the real rate
    alpha = [a["band_powers"]["alpha"] for a in artifacts if a["band_powers"]]
    assert np.mean(alpha) > 0.7  # 200 Hz read as 256: 12 Hz would be 15.4 Hz (beta)
    # The marker 10 s after the last sample rides in the final chunk.
    assert [e["value"] for e in artifacts[-1]["events"]] == ["after the end"]


def test_a_rate_within_one_percent_keeps_the_declared_one():
    artifacts = chunks_for(256.5, 256.0, measured_from=0)
    assert {a["device"]["sfreq"] for a in artifacts} == {256.0}
    assert {a["device"]["measured_sfreq"] for a in artifacts} == {256.5}
