"""RecordingSource over real recordings (the packaged Muse copy, and pyxdf's examples in tests/data): chunks,
labels, markers, clock resets, empty streams, time anchors, pacing, and one-line errors for bad files.

Expected values are read straight with pyxdf, not with the project's own reader."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from collector.core.records import EegSource, SourceEnded
from collector.devices.recordings.model import parse_iso_datetime
from collector.devices.recordings.source import RecordingSource
from collector.errors import UsageError

DATA = Path(__file__).parents[1] / "data"  # copies of ../shared/data (tests/data/NOTICE.md)
MUSE = Path(__file__).parents[2] / "collector" / "data" / "muse-p300-subject1.xdf"  # packaged copy
MINIMAL = DATA / "xdf-example-minimal.xdf"
RESETS = DATA / "xdf-example-clock_resets.xdf"
EMPTY = DATA / "xdf-example-empty_streams.xdf"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def read_all(source, timeout: float = 1.0):
    chunks = []
    while True:
        try:
            chunk = source.read(timeout)
        except SourceEnded:
            return chunks
        if chunk is not None:
            chunks.append(chunk)


def test_muse_recording_yields_every_eeg_sample_with_labels_and_markers():
    path = need(MUSE)
    with RecordingSource(path) as source:
        assert isinstance(source, EegSource)
        d = source.description
        assert d.name == "Muse" and d.type == "EEG" and d.source_id == "Muse-00:55:DA:B0:0B:61"
        assert d.sfreq == 256.0 and d.unit == "microvolts"
        assert d.channels == ("TP9", "AF7", "AF8", "TP10") and d.aux_channels == ("Right AUX",)
        chunks = read_all(source)
        with pytest.raises(SourceEnded):
            source.read(0.1)
    data = np.concatenate([c.data for c in chunks])
    times = np.concatenate([c.times_ms for c in chunks])
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    raw = next(s for s in streams if s["info"]["name"][0] == "Muse")
    assert data.shape == (30_732, 4) and data.dtype == np.float64
    np.testing.assert_array_equal(data, np.asarray(raw["time_series"], dtype=np.float64)[:, :4])
    # 0.25 s chunks of a 256 Hz stream: 64 samples each, the last one shorter.
    assert {len(c) for c in chunks[:-1]} == {64}
    steps = np.diff(times)
    assert np.all(steps > 0) and np.median(steps) == pytest.approx(1000.0 / 256, rel=1e-3)
    # The file header's datetime anchors the first sample.
    header_start = datetime(2026, 11, 23, 11, 39, 8, tzinfo=timezone.utc)
    assert times[0] == pytest.approx(header_start.timestamp() * 1000)
    events = [e for c in chunks for e in c.events]
    assert len(events) == 197 and {e.value for e in events} == {"1", "2"}
    assert all(not c.gaps for c in chunks)
    # Each event sits in the chunk whose span holds it.
    for c in chunks[1:-1]:
        for e in c.events:
            assert c.times_ms[0] <= e.time_ms < c.times_ms[-1] + 1000.0 / 256


def test_minimal_file_string_stream_becomes_events():
    with RecordingSource(need(MINIMAL), start_time="2024-05-01T12:00:00+00:00", chunk_s=0.35) as source:
        assert source.description.channels == ("ch1", "ch2", "ch3")
        chunks = read_all(source)
    data = np.concatenate([c.data for c in chunks])
    assert data.shape == (9, 3)
    np.testing.assert_array_equal(data[:2], [[192, 255, 238], [12, 22, 32]])
    times = np.concatenate([c.times_ms for c in chunks])
    anchor_ms = datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp() * 1000
    np.testing.assert_allclose(times - anchor_ms, np.arange(9) * 100.0, atol=1e-6)
    values = [e.value for c in chunks for e in c.events]
    assert len(values) == 9 and "Hello" in values and "World" in values


def test_clock_reset_file_keeps_every_sample_in_order_and_reports_the_break_as_a_gap():
    with RecordingSource(need(RESETS), start_time="now") as source:
        # Declared 100 Hz, its stamps show 92.93 Hz: the measured rate is used, both are stated.
        d = source.description
        assert d.nominal_sfreq == 100.0 and d.sfreq == d.measured_sfreq == pytest.approx(92.9, abs=0.1)
        assert len(source.description.channels) == 8
        chunks = read_all(source)
    times = np.concatenate([c.times_ms for c in chunks])
    assert times.shape == (27_815,)
    assert np.all(np.diff(times) > 0)
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1
    assert gaps[0].end_ms - gaps[0].start_ms > 100_000  # the reset left ~274 s without samples
    assert sum(len(c.events) for c in chunks) == 175
    assert abs(times[0] / 1000 - time.time()) < 60  # "now" rebases the recording


def test_empty_streams_file_without_eeg_is_a_usage_error_and_a_chosen_stream_works():
    path = need(EMPTY)
    with pytest.raises(UsageError, match="no EEG stream") as info:
        RecordingSource(path).open()
    assert "--stream" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="has no samples"):
        RecordingSource(path, stream="Empty data stream: test stream 0 counter").open()
    with RecordingSource(path, stream="Data stream: test stream 0 counter") as source:
        chunks = read_all(source)
    values = np.concatenate([c.data for c in chunks])[:, 0]
    np.testing.assert_array_equal(values, np.arange(10))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_speed_paces_reads_against_the_wall_clock(speed):
    """After t seconds of wall clock, exactly the samples recorded in the first t x speed seconds."""
    clock = FakeClock()
    with RecordingSource(need(MUSE), speed=speed, clock=clock) as source:
        rel_s = source._rel_s  # the recording's own sample times, from 0
        got = 0
        for elapsed in (0.0, 0.3, 0.3, 1.25, 2.0):
            clock.now = 1000.0 + elapsed
            chunk = source.read(0.0)
            got += len(chunk) if chunk is not None else 0
            assert got == int(np.searchsorted(rel_s, elapsed * speed, side="right")), elapsed
    assert got == pytest.approx(2.0 * speed * 256, abs=2)  # 256 Hz recording


def test_paced_read_returns_none_when_nothing_is_due_within_the_timeout():
    with RecordingSource(need(MINIMAL), speed=0.01) as source:  # 10 s of file per 0.1 s sample
        assert source.read(0.0) is not None  # the first sample is due at once
        started = time.monotonic()
        assert source.read(0.05) is None
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "content",
    [b"", b"XDF:", b"XDF:" + bytes(range(256)) * 4, b"not an xdf file at all" * 10],
    ids=["empty", "magic-only", "garbage", "not-xdf"],
)
def test_corrupt_files_are_one_line_usage_errors(tmp_path, content):
    path = tmp_path / "bad.xdf"
    path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        RecordingSource(path).open()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97])
def test_truncated_recordings_replay_their_complete_chunks_with_one_warning(tmp_path, fraction, caplog):
    """issue 20 #3: a recorder that crashed leaves whole chunks then a cut one; they are read, as
    pyxdf reads them, instead of the whole file being refused."""
    import pyxdf

    src = need(MUSE).read_bytes()
    path = tmp_path / "truncated.xdf"
    path.write_bytes(src[: int(len(src) * fraction)])
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    expected = next(len(s["time_stamps"]) for s in streams if s["info"]["name"][0] == "Muse")
    with caplog.at_level(logging.WARNING, logger="collector"), RecordingSource(path) as source:
        n = sum(len(c) for c in read_all(source))
    assert n == expected
    # Only our own warnings: pyxdf logs "Importing XDF file …truncated.xdf" at INFO, which shows up
    # here when an earlier test in the same worker lowered the root level.
    ours = [r for r in caplog.records if r.name.startswith("collector") and r.levelno >= logging.WARNING]
    truncated = [r.getMessage() for r in ours if "truncated" in r.getMessage()]
    assert len(truncated) == 1 and "\n" not in truncated[0]


def test_a_cut_file_without_a_complete_sample_is_a_one_line_usage_error(tmp_path):
    path = tmp_path / "truncated.xdf"
    path.write_bytes(need(MUSE).read_bytes()[:1500])
    with pytest.raises(UsageError, match="truncated at byte 1,500 .* nothing to replay") as info:
        RecordingSource(path).open()
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        RecordingSource(tmp_path / "nope.xdf").open()
    with pytest.raises(UsageError, match="is a directory, not a recording file"):
        RecordingSource(tmp_path).open()
    with pytest.raises(UsageError, match="ISO-8601"):
        RecordingSource(need(MINIMAL), start_time="yesterday-ish").open()
    with pytest.raises(UsageError, match="speed"):
        RecordingSource(MINIMAL, speed=0)


def test_iso_datetimes_with_compact_offsets_parse():
    assert (
        parse_iso_datetime("2026-11-23T11:39:08+0000").timestamp()
        == datetime(2026, 11, 23, 11, 39, 8, tzinfo=timezone.utc).timestamp()
    )
    assert parse_iso_datetime("2024-05-01T14:30:00Z").utcoffset().total_seconds() == 0
