"""Live LSL capture meets the field cases' faults: real pylsl outlets on loopback pushing samples
with explicit timestamps (an outlier stamp, a rate that is not the declared one, an irregular
stream), read by the real LslSource and cut by the real chunker. Live and replay must agree.
Every test uses its own uuid-suffixed stream name."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from collector.core.bandpower import BandSettings
from collector.core.chunk import EegChunker
from collector.devices.lsl.source import LslSource
from collector.devices.player import make_eeg_info
from collector.devices.recordings.source import RecordingSource
from collector.devices.recordings.xdf import load_xdf
from collector.errors import UsageError

FIELD = Path(__file__).resolve().parents[1] / "data" / "field-cases"  # copies of ../shared/data/field-cases

pytestmark = pytest.mark.lsl


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def field_stream(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The EEG stream of a field-case file exactly as recorded: (data (n, ch), stamps (n,))."""
    path = FIELD / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    eeg = next(s for s in load_xdf(path, dejitter=False).streams if s.type == "EEG")
    return np.asarray(eeg.data, dtype=np.float64), eeg.times_s


class Pusher(threading.Thread):
    """Pushes (data, stamps) in pieces of `piece` samples once an inlet is connected; the stamps
    are `lsl_now + (stamps - stamps[0])`, bad ones included."""

    def __init__(self, outlet, data: np.ndarray, stamps: np.ndarray, piece: int = 32) -> None:
        super().__init__(daemon=True)
        self.outlet, self.data, self.stamps, self.piece = outlet, data, stamps, piece
        self.done = threading.Event()

    def run(self) -> None:
        import pylsl

        self.outlet.wait_for_consumers(20.0)
        time.sleep(0.3)  # the inlet's stream opens after it is connected
        base = pylsl.local_clock() - float(np.min(self.stamps[:8]))
        for i in range(0, self.data.shape[0], self.piece):
            rows = self.data[i : i + self.piece].astype(np.float32)
            self.outlet.push_chunk(rows, (self.stamps[i : i + self.piece] + base).tolist())
            time.sleep(0.002)
        self.done.set()


def capture(source: LslSource, pusher: Pusher, n: int, deadline_s: float = 60.0) -> list:
    """Read until n samples came (held-back samples are released when the stream goes quiet)."""
    chunks, got = [], 0
    deadline = time.monotonic() + deadline_s
    while got < n and time.monotonic() < deadline:
        chunk = source.read(0.3)
        if chunk is not None:
            chunks.append(chunk)
            got += len(chunk)
    return chunks


def run_live(name: str, data: np.ndarray, stamps: np.ndarray, sfreq: float, labels, piece: int = 32):
    import pylsl

    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, labels, sfreq))
    pusher = Pusher(outlet, data, stamps, piece)
    try:
        pusher.start()
        with LslSource(source_id=name, resolve_timeout_s=10.0, markers="off") as source:
            description = source.description
            chunks = capture(source, pusher, data.shape[0])
    finally:
        del outlet
    return description, chunks


def chunked(description, chunks) -> list[dict]:
    """The chunk artifacts the real chunker makes of these SampleChunks."""
    chunker = EegChunker(description, BandSettings(), capture_id="live", stream_id="eeg:live", chunk_s=5.0)
    out = [o for c in chunks for o in chunker.push(c)] + chunker.flush()
    return [json.loads(o.to_bytes()) for o in out]


def check_times(chunks, n: int) -> np.ndarray:
    times = np.concatenate([c.times_ms for c in chunks])
    assert times.shape == (n,)
    assert np.all(np.diff(times) > 0)
    for g in (g for c in chunks for g in c.gaps):
        assert g.start_ms < g.end_ms
    return times


# -- kind 1 ------------------------------------------------------------------------------------


def test_live_outlier_stamp_like_the_field_case_is_repaired():
    data, stamps = field_stream("jump_outlier.xdf")  # sample 2000 is 200,000 s in the future
    description, chunks = run_live(uid("live-jump"), data, stamps, 256.0, ["TP9", "AF7", "AF8", "TP10"])
    times = check_times(chunks, 5120)
    np.testing.assert_allclose(np.concatenate([c.data for c in chunks]), data, atol=1e-3)
    assert sum(len(c.repaired) for c in chunks) == 1
    assert [g for c in chunks for g in c.gaps] == []
    np.testing.assert_allclose(np.diff(times), 1000 / 256, atol=0.01)
    artifacts = chunked(description, chunks)
    assert sum(a["method"]["timestamps_repaired"] for a in artifacts) == 1
    t0s = [a["t0_ms"] for a in artifacts]
    assert max(t0s) - min(t0s) < 20_000  # no chunk moved two days


def test_live_outliers_at_piece_edges_repeats_and_swaps_are_repaired():
    """8 channels at 500 Hz in pieces of 50: the outliers sit on the last and the first sample of
    a piece (held back until the next piece shows they were isolated)."""
    n = 3000
    stamps = 100.0 + np.arange(n) / 500.0
    stamps[49] += 200_000.0  # last of the first piece
    stamps[150] -= 200_000.0  # first of the fourth piece
    stamps[1001] = stamps[1000]
    stamps[2000], stamps[2001] = stamps[2001], stamps[2000]
    data = np.arange(n * 8, dtype=np.float64).reshape(n, 8) % 1000
    _, chunks = run_live(uid("live-edges"), data, stamps, 500.0, [f"E{i}" for i in range(8)], piece=50)
    times = check_times(chunks, n)
    np.testing.assert_allclose(np.concatenate([c.data for c in chunks]), data)
    np.testing.assert_allclose(np.diff(times), 2.0, atol=0.01)
    assert sum(len(c.repaired) for c in chunks) == 5


@pytest.mark.parametrize("offset", [-200_000.0, 200_000.0])
def test_live_long_run_of_bad_stamps_across_pieces_is_repaired_not_a_jump(offset):
    """12 bad stamps in a row pushed over three pieces of 5 (review 9, finding 3, live): the
    samples after the jump wait until the stamps come back, then the run is repaired; nothing
    after it moves and there is no gap."""
    n = 256 * 12
    stamps = 50.0 + np.arange(n) / 256.0
    stamps[1503:1515] += offset
    data = synth(n, 256.0, 10.0, 3)
    _, chunks = run_live(uid("live-run12"), data, stamps, 256.0, ["Fz", "Cz", "Pz"], piece=5)
    times = check_times(chunks, n)
    np.testing.assert_allclose(np.concatenate([c.data for c in chunks]), data, atol=1e-3)
    # within 0.05 ms: liblsl's time correction is re-read every second and moves by a few µs
    np.testing.assert_allclose(np.diff(times), 1000 / 256, atol=0.05)
    assert sum(len(c.repaired) for c in chunks) == 12
    assert [g for c in chunks for g in c.gaps] == []


def test_live_lasting_forward_jump_of_the_stamps_is_a_gap_with_a_warning(caplog):
    """The stamps jump 200,000 s ahead and stay there: held while they might come back, then
    a gap, and the log says the jump is more likely a clock fault (review 9, finding 3)."""
    caplog.set_level(logging.INFO)
    n = 256 * 16
    stamps = 50.0 + np.arange(n) / 256.0
    stamps[1500:] += 200_000.0
    _, chunks = run_live(uid("live-lasting"), synth(n, 256.0, 10.0, 2), stamps, 256.0, ["C3", "C4"], piece=16)
    check_times(chunks, n)
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1 and (gaps[0].end_ms - gaps[0].start_ms) / 1000 == pytest.approx(200_000, abs=1)
    said = [r.getMessage() for r in caplog.records if "more likely a clock fault" in r.getMessage()]
    assert len(said) == 1 and r"200000 s forward" in said[0]


# -- kind 2 ------------------------------------------------------------------------------------


def synth(n: int, sfreq: float, freq_hz: float, channels: int) -> np.ndarray:
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(7)
    return 20 * np.sin(2 * np.pi * freq_hz * t)[:, None] + rng.normal(0, 2, (n, channels))


@pytest.mark.parametrize(
    ("declared", "real", "freq_hz", "band", "channels"),
    [(256.0, 200.0, 12.0, "alpha", 4), (512.0, 256.0, 6.0, "theta", 6)],
)
def test_live_rate_mismatch_is_measured_warned_once_and_used(caplog, declared, real, freq_hz, band, channels):
    caplog.set_level(logging.WARNING)
    n = int(real * 12)
    stamps = np.arange(n) / real
    labels = [f"C{i}" for i in range(channels)]
    description, chunks = run_live(
        uid("live-rate"), synth(n, real, freq_hz, channels), stamps, declared, labels
    )
    check_times(chunks, n)
    warnings = [r.getMessage() for r in caplog.records if "declares" in r.getMessage()]
    assert len(warnings) == 1 and f"{declared:g} Hz" in warnings[0] and f"{real:g} Hz" in warnings[0]
    artifacts = chunked(description, chunks)
    for a in artifacts:
        assert a["device"]["sfreq"] == pytest.approx(real, rel=0.002)
        assert a["device"]["nominal_sfreq"] == declared
        assert a["device"]["measured_sfreq"] == pytest.approx(real, rel=0.002)
    powers = [a["band_powers"][band] for a in artifacts if a["band_powers"]]
    assert powers and np.mean(powers) > 0.5


def test_live_gap_threshold_follows_the_streams_real_rate_not_the_declared_one():
    """Declared 64 Hz (gaps over 62.5 ms), really 256 Hz (gaps over 20 ms): 10 samples missing
    (43 ms) are a gap, seen only when the source's period follows the stream's stamps."""
    n = 256 * 6
    idx = np.r_[np.arange(0, 768), np.arange(778, n + 10)]
    stamps = idx / 256.0
    data = synth(n, 256.0, 10.0, 2)
    _, chunks = run_live(uid("live-follow"), data, stamps, 64.0, ["C3", "C4"])
    times = check_times(chunks, n)
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1, f"{len(gaps)} gaps reported for one 43 ms hole in a 256 Hz stream declared 64 Hz"
    assert gaps[0].start_ms == times[767] and gaps[0].end_ms == times[768]
    assert gaps[0].end_ms - gaps[0].start_ms == pytest.approx(11 * 1000 / 256, abs=0.1)
    rates = [c.sfreq for c in chunks if c.sfreq]
    assert rates and rates[-1] == pytest.approx(256.0, rel=1e-3)


# -- kind 3 ------------------------------------------------------------------------------------


def test_live_irregular_stream_matches_its_replay():
    import pylsl

    path = FIELD / "irregular_eeg.xdf"
    data, stamps = field_stream("irregular_eeg.xdf")  # nominal 0, ~250 Hz, a 0.5 s hole, 2 swaps
    with RecordingSource(path, start_time="now") as replayed:
        replay_rate = replayed.description.sfreq
    name = uid("live-irregular")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["Fz", "C3", "Cz", "C4"], pylsl.IRREGULAR_RATE))
    pusher = Pusher(outlet, data, stamps)
    try:
        pusher.start()
        with LslSource(source_id=name, resolve_timeout_s=10.0, markers="off") as source:
            description = source.description
            chunks = capture(source, pusher, data.shape[0])
    finally:
        del outlet
    assert description.nominal_sfreq == 0.0
    assert description.sfreq == pytest.approx(replay_rate, rel=0.01) == pytest.approx(250.0, rel=0.01)
    check_times(chunks, 5000)
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1 and gaps[0].end_ms - gaps[0].start_ms == pytest.approx(505, abs=10)
    artifacts = chunked(description, chunks)
    assert sum(len(a["samples"]) for a in artifacts) == 5000


class ChunkStamper(threading.Thread):
    """Pushes `data` in real time at `sfreq`, `piece` samples per push_chunk with one stamp for the
    whole chunk (the push time), as an app that declares its stream irregular does."""

    def __init__(self, outlet, data: np.ndarray, sfreq: float, piece: int) -> None:
        super().__init__(daemon=True)
        self.outlet, self.data, self.sfreq, self.piece = outlet, data, sfreq, piece

    def run(self) -> None:
        import pylsl

        self.outlet.wait_for_consumers(20.0)
        t0 = pylsl.local_clock()
        for i in range(0, self.data.shape[0], self.piece):
            due = t0 + (i + self.piece) / self.sfreq  # the chunk's last sample is acquired then
            time.sleep(max(0.0, due - pylsl.local_clock()))
            self.outlet.push_chunk(self.data[i : i + self.piece].astype(np.float32), due)


def test_live_irregular_stream_pushed_in_chunks_with_one_stamp_each_is_captured_at_its_rate():
    """32 samples per push, one stamp per push, declared 0 Hz: the probe used to see "too few"
    intervals (most are 0) and refuse the stream; its rate is a chunk's step over its samples."""
    import pylsl

    sfreq, n = 250.0, 250 * 12
    name = uid("live-chunk-stamped")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["Fz", "C3", "Cz", "C4"], pylsl.IRREGULAR_RATE))
    pusher = ChunkStamper(outlet, synth(n, sfreq, 10.0, 4), sfreq, 32)
    try:
        pusher.start()
        with LslSource(source_id=name, resolve_timeout_s=10.0, markers="off") as source:
            description = source.description
            chunks = capture(source, pusher, n - 32 * 3)  # the last pushes may still be held back
    finally:
        del outlet
    assert description.nominal_sfreq == 0.0
    assert description.sfreq == pytest.approx(sfreq, rel=0.01)
    times = np.concatenate([c.times_ms for c in chunks])
    assert times.shape[0] >= n - 32 * 3 and np.all(np.diff(times) > 0)
    assert [g for c in chunks for g in c.gaps] == []


def test_live_stream_too_irregular_to_window_is_refused_in_one_line():
    import pylsl

    rng = np.random.default_rng(5)
    stamps = np.cumsum(rng.exponential(1 / 128, 2000))
    name = uid("live-messy")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["Fz"], pylsl.IRREGULAR_RATE))
    pusher = Pusher(outlet, np.zeros((2000, 1)), stamps)
    try:
        pusher.start()
        source = LslSource(source_id=name, resolve_timeout_s=10.0, markers="off")
        with pytest.raises(UsageError) as err:
            source.open()
        source.close()
    finally:
        del outlet
    assert err.value.exit_code == 2
    assert "too much to be windowed" in str(err.value) and "\n" not in str(err.value)


# -- through `collector run` -----------------------------------------------------------------------


class PacedPusher(threading.Thread):
    """Pushes `real` Hz samples in real time on an outlet that declares another rate; the stamps
    of the samples in `outliers` are off by the seconds given there."""

    def __init__(self, outlet, real: float, seconds: float, outliers: dict[int, float], channels: int):
        super().__init__(daemon=True)
        self.outlet, self.real, self.seconds, self.outliers = outlet, real, seconds, outliers
        self.data = synth(int(real * seconds), real, 12.0, channels)
        self.stop = threading.Event()

    def run(self) -> None:
        import pylsl

        self.outlet.wait_for_consumers(30.0)
        t0 = pylsl.local_clock()
        n, i = self.data.shape[0], 0
        while i < n and not self.stop.is_set():
            due = min(n, int((pylsl.local_clock() - t0) * self.real) + 1)
            if due > i:
                stamps = t0 + np.arange(i, due) / self.real
                for k, offset in self.outliers.items():
                    if i <= k < due:
                        stamps[k - i] += offset
                self.outlet.push_chunk(self.data[i:due].astype(np.float32), stamps.tolist())
                i = due
            time.sleep(0.02)


@pytest.mark.slow
def test_collector_run_repairs_an_outlier_and_uses_the_measured_rate(sandbox, tmp_path):
    import os
    import subprocess
    import sys

    import pylsl

    name = uid("run-fieldcase")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["Fp1", "Fp2", "C3", "C4"], 256.0))
    # One stamp 200,000 s ahead, one 200,000 s behind (review 9, finding 2: both logged).
    pusher = PacedPusher(outlet, real=200.0, seconds=30.0, outliers={900: 2e5, 1300: -2e5}, channels=4)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    try:
        pusher.start()
        proc = subprocess.run(
            [
                sys.executable, "-m", "collector", "run", "--workspace", sandbox.workspace_id,
                "--block", sandbox.block_ids[0], "--stream-name", name, "--markers", "off",
                "--screen", "off", "--duration", "9", "--chunk-seconds", "2",
                "--spool", str(tmp_path / "spool"), "--flush-timeout", "60", "--log-format", "json",
            ],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        pusher.stop.set()
        pusher.join(5)
        del outlet
    assert proc.returncode == 0, proc.stderr
    assert sum("declares 256 Hz" in line and "200 Hz" in line for line in proc.stderr.splitlines()) == 1
    artifacts = []
    for row in sandbox.evidence(sandbox.workspace_id):
        if row["type"] == "eeg" and (row.get("metadata") or {}).get("kind") != "session-summary":
            artifacts.append(json.loads(sandbox.read_artifact(row["id"])))
    artifacts.sort(key=lambda a: a["chunk_index"])
    assert len(artifacts) >= 3
    times = np.concatenate([a["t0_ms"] + np.asarray(a["times_ms"]) for a in artifacts])
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(np.diff(times), 5.0, atol=0.05)  # 200 Hz, the outliers repaired
    assert sum(a["method"]["timestamps_repaired"] for a in artifacts) == 2
    # The repairs are in the log, as a replay logs them: the first at once, the rest counted.
    logged = [json.loads(line) for line in proc.stderr.splitlines() if "were repaired" in line]
    assert logged and logged[0]["message"].count("(1 in this capture so far)") == 1, proc.stderr
    assert "(2 in this capture so far)" in logged[-1]["message"]
    # t0_ms is rounded down: at 200 Hz declared 256 Hz, no chunk starts before its t0_ms (finding 1).
    for a in artifacts:
        assert 0 <= a["times_ms"][0] <= 1 and min(a["times_ms"]) >= 0
    assert all(a["gaps"] == [] for a in artifacts)
    for a in artifacts:
        assert a["device"]["nominal_sfreq"] == 256.0
        assert a["device"]["sfreq"] == pytest.approx(200.0, rel=0.005)
    powers = [a["band_powers"]["alpha"] for a in artifacts if a["band_powers"]]
    assert powers and np.mean(powers) > 0.5  # the 12 Hz rhythm is alpha at the real rate


@pytest.mark.slow
def test_collector_run_refuses_a_live_stream_too_irregular_to_window(sandbox, tmp_path):
    import os
    import subprocess
    import sys

    import pylsl

    rng = np.random.default_rng(9)
    stamps = np.cumsum(rng.exponential(1 / 128, 3000))
    name = uid("run-messy")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["Fz", "Cz"], pylsl.IRREGULAR_RATE))
    pusher = Pusher(outlet, np.zeros((3000, 2)), stamps)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    try:
        pusher.start()
        proc = subprocess.run(
            [
                sys.executable, "-m", "collector", "run", "--workspace", sandbox.workspace_id,
                "--block", sandbox.block_ids[0], "--stream-name", name, "--markers", "off",
                "--screen", "off", "--duration", "5", "--spool", str(tmp_path / "spool"),
            ],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        del outlet
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if "too much to be windowed" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert [r for r in sandbox.evidence(sandbox.workspace_id) if r["type"] == "eeg"] == []
