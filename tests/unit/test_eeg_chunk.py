"""EegChunker: sample conservation, windows across chunk boundaries, gaps, events, real Muse data."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from collector.core.bandpower import BandSettings, compute_band_powers, grid_window_ends
from collector.core.chunk import EegChunker, EegChunkOut, chunk_evidence
from collector.core.records import Event, Gap, SampleChunk, StreamDescription

MUSE_XDF = Path(__file__).resolve().parents[2] / "collector" / "data" / "muse-p300-subject1.xdf"
T0_MS = 1_770_000_000_123.4  # Unix ms of the first sample in synthetic streams
BANDS = ("delta", "theta", "alpha", "beta", "gamma")


def describe(n_ch: int = 4, sfreq: float = 256.0) -> StreamDescription:
    return StreamDescription(
        name="Muse",
        type="EEG",
        source_id="Muse-00:55:DA:B0:0B:61",
        sfreq=sfreq,
        channels=tuple(f"ch{i}" for i in range(n_ch)),
        model="Muse 2",
    )


def chunker(desc: StreamDescription | None = None, **kwargs) -> EegChunker:
    desc = desc or describe()
    return EegChunker(desc, BandSettings(), capture_id="cap-1", stream_id=desc.stream_id, **kwargs)


def stream(
    seconds: float, n_ch: int = 4, sfreq: float = 256.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    data = rng.standard_normal((n, n_ch)) * 10.0 + 15.0 * np.sin(2 * np.pi * 10.0 * t)[:, None]
    data[:, 0] = np.arange(n)  # locates every sample in the source exactly (mne-lsl's trick)
    times = T0_MS + t * 1000.0 + rng.uniform(-0.2, 0.2, n)  # timestamp jitter
    return data, times


def play(ch: EegChunker, data: np.ndarray, times: np.ndarray, sizes, events=(), gaps=()) -> list[EegChunkOut]:
    """Push in pieces of the given sizes (cycled); events and gaps ride with the piece holding them."""
    out: list[EegChunkOut] = []
    i, k = 0, 0
    while i < len(times):
        j = min(len(times), i + sizes[k % len(sizes)])
        hi = times[j] if j < len(times) else math.inf
        lo = -math.inf if i == 0 else times[i]
        ev = tuple(e for e in events if lo <= e.time_ms < hi)
        gp = tuple(g for g in gaps if times[i] <= g.end_ms <= times[j - 1])
        out += ch.push(SampleChunk(data[i:j], times[i:j], gaps=gp, events=ev))
        i, k = j, k + 1
    return out + ch.flush()


def samples_of(outs: list[EegChunkOut]) -> np.ndarray:
    return np.concatenate([np.array(json.loads(o.to_bytes())["samples"], dtype=float) for o in outs])


def times_of(outs: list[EegChunkOut]) -> np.ndarray:
    return np.concatenate([o.artifact["t0_ms"] + np.array(o.artifact["times_ms"]) for o in outs])


def test_every_sample_is_in_exactly_one_chunk() -> None:
    data, times = stream(23.3)
    outs = play(chunker(sample_decimals=None, start_index=7), data, times, sizes=[1, 12, 500, 37])
    # Full precision: the concatenated chunks reproduce the input bit for bit, in order.
    assert np.array_equal(samples_of(outs), data)
    assert np.allclose(times_of(outs), times, rtol=0, atol=5e-4)
    assert [o.chunk_index for o in outs] == list(range(7, 7 + len(outs)))
    assert [o.sample_count for o in outs] == [1280] * 4 + [len(times) - 4 * 1280]
    for o in outs:
        assert o.artifact["t0_ms"] == o.t0_ms == math.floor(o.artifact["t0_ms"] + o.artifact["times_ms"][0])
        assert 0 <= o.artifact["times_ms"][0] < 1 and min(o.artifact["times_ms"]) >= 0
        assert len(o.artifact["samples"]) == len(o.artifact["times_ms"]) == o.sample_count


def test_default_precision_is_a_thousandth_of_a_microvolt() -> None:
    data, times = stream(12.0, seed=4)
    data[:, 1:] = np.round(data[:, 1:], 3) + 0.0  # already on the 0.001 grid: reproduced exactly
    data[:, 2] += 1e-4  # off the grid: rounded
    outs = play(chunker(), data, times, sizes=[64])
    got = samples_of(outs)
    assert np.array_equal(got[:, [0, 1, 3]], data[:, [0, 1, 3]])
    assert np.array_equal(got[:, 2], np.round(data[:, 2], 3))


def test_output_does_not_depend_on_how_samples_arrive() -> None:
    data, times = stream(17.0, seed=1)
    events = [Event(times[100] + 1.0, "a"), Event(times[1279], "b"), Event(times[1280], "c")]
    a = play(chunker(), data, times, sizes=[1], events=events)
    b = play(chunker(), data, times, sizes=[12, 1000, 3], events=events)
    c = play(chunker(), data, times, sizes=[len(times)], events=events)
    assert [o.to_bytes() for o in a] == [o.to_bytes() for o in b] == [o.to_bytes() for o in c]


def test_windows_run_across_chunk_boundaries() -> None:
    data, times = stream(21.0, seed=2)
    outs = play(chunker(sample_decimals=None), data, times, sizes=[100])
    ends = grid_window_ends(len(times), 256.0, BandSettings())
    whole = compute_band_powers(data, 256.0, BandSettings(), ends)
    windows = [w for o in outs for w in o.artifact["windows"]]
    assert [w["end_ms"] for w in windows] == [round(float(times[e]), 3) for e in ends]
    first = 0
    for o in outs:  # a window belongs to the chunk holding its last sample
        last = first + o.sample_count - 1
        for w in o.artifact["windows"]:
            e = int(np.argmin(np.abs(times - w["end_ms"])))
            assert first <= e <= last
        first = last + 1
    for w, absolute, relative in zip(windows, whole.absolute_uv2, whole.relative, strict=True):
        assert w["quality"]["gap"] is False
        for c, name in enumerate(describe().channels):
            got_abs = np.array([w["absolute"][name][b] for b in BANDS])
            got_rel = np.array([w["relative"][name][b] for b in BANDS])
            assert np.allclose(got_abs, absolute[c], rtol=1e-5, atol=0)  # 6 significant digits
            assert np.allclose(got_rel, relative[c], rtol=1e-5, atol=0)
    # band_powers: mean over channels and windows of the relative powers, full precision.
    for o in outs:
        idx = [
            i
            for i, e in enumerate(ends)
            if round(float(times[e]), 3) in {w["end_ms"] for w in o.artifact["windows"]}
        ]
        if not idx:
            assert o.band_powers == {}
            continue
        want = whole.relative[idx].reshape(-1, 5).mean(axis=0)
        got = np.array([o.band_powers[b] for b in BANDS])
        assert np.max(np.abs(got - want) / want) <= 1e-9


def test_detected_hole_is_listed_where_the_signal_resumes_and_flags_windows() -> None:
    data, times = stream(20.0, seed=3)
    hole_at = 1500  # sample 1500 resumes after a 1.2 s hole (inside chunk 1)
    times = times.copy()
    times[hole_at:] += 1200.0
    outs = play(chunker(sample_decimals=None), data, times, sizes=[12])
    gaps = [(o.chunk_index, g) for o in outs for g in o.artifact["gaps"]]
    assert gaps == [
        (1, {"start_ms": round(float(times[hole_at - 1]), 3), "end_ms": round(float(times[hole_at]), 3)})
    ]
    window = 512
    ends = grid_window_ends(len(times), 256.0, BandSettings())
    windows = [w for o in outs for w in o.artifact["windows"]]
    assert len(windows) == len(ends)
    spans = (ends - window + 1 < hole_at) & (ends >= hole_at)
    assert spans.sum() == 4
    reference = compute_band_powers(data, 256.0, BandSettings(), ends[~spans])
    k = 0
    for w, span in zip(windows, spans, strict=True):
        assert w["quality"]["gap"] is bool(span)
        if span:
            assert w["absolute"] is None and w["relative"] is None and w["quality"]["ok"] is False
            assert all(c["missing"] and c["flat"] is None for c in w["quality"]["channels"].values())
        else:
            assert np.isclose(w["absolute"]["ch1"]["alpha"], reference.absolute_uv2[k, 1, 2], rtol=1e-5)
            k += 1
    # Every sample is still delivered once, gap or not.
    assert np.array_equal(samples_of(outs), data)


def test_source_gap_records_are_listed_once_and_flag_windows() -> None:
    data, times = stream(15.0, seed=6)
    times = times.copy()
    times[2000:] += 3000.0  # a hole the source also reports
    reported = Gap(start_ms=float(times[1999]), end_ms=float(times[2000]))
    silent = Gap(start_ms=float(times[2999]), end_ms=float(times[3000]))  # no hole in the timestamps
    outs = play(chunker(), data, times, sizes=[7], gaps=[reported, silent])
    listed = [(o.chunk_index, g) for o in outs for g in o.artifact["gaps"]]
    assert [i for i, _ in listed] == [1, 2]
    assert listed[0][1] == {"start_ms": round(reported.start_ms, 3), "end_ms": round(reported.end_ms, 3)}
    assert listed[1][1]["end_ms"] == round(silent.end_ms, 3)
    ends = grid_window_ends(len(times), 256.0, BandSettings())
    spans = ((ends - 511 < 2000) & (ends >= 2000)) | ((ends - 511 < 3000) & (ends >= 3000))
    flagged = [w["quality"]["gap"] for o in outs for w in o.artifact["windows"]]
    assert flagged == spans.tolist()


def test_a_gap_at_a_chunk_boundary_goes_to_the_resuming_chunk() -> None:
    data, times = stream(12.0, seed=8)
    times = times.copy()
    times[1280:] += 500.0  # the first sample of chunk 1 resumes the signal
    outs = play(chunker(), data, times, sizes=[1280])
    assert [len(o.artifact["gaps"]) for o in outs] == [0, 1, 0]


@pytest.mark.parametrize("sizes", [[12], [1280], [1265, 40]])
def test_a_gap_just_before_a_chunk_boundary_flags_the_next_chunks_windows_over_it(sizes) -> None:
    """The signal resumes at sample 1270, ten samples before chunk 1 starts (1280): the windows of
    chunk 1 that still hold both sides of the hole (ending at 1407, 1535, 1663) are gap windows
    without powers, like chunk 0's last one; the first window after them has its powers."""
    data, times = stream(12.0, seed=11)
    times = times.copy()
    times[1270:] += 400.0
    outs = play(chunker(), data, times, sizes=sizes)
    assert [len(o.artifact["gaps"]) for o in outs] == [1, 0, 0]  # listed where the signal resumes
    ends = grid_window_ends(len(times), 256.0, BandSettings())
    spans = (ends - 511 < 1270) & (ends >= 1270)
    assert ends[spans].tolist() == [1279, 1407, 1535, 1663]
    per_chunk = [(o.chunk_index, w) for o in outs for w in o.artifact["windows"]]
    assert len(per_chunk) == len(ends)
    for (index, w), end, span in zip(per_chunk, ends, spans, strict=True):
        assert index == end // 1280  # a window belongs to the chunk holding its last sample
        assert w["quality"]["gap"] is bool(span), f"window ending at sample {end} (chunk {index})"
        if span:
            assert w["absolute"] is None and w["relative"] is None and w["quality"]["ok"] is False
        else:
            assert w["absolute"]["ch1"]["alpha"] is not None
    assert np.array_equal(samples_of(outs), np.round(data, 3))


def test_a_window_whose_only_missing_sample_is_its_last_is_missing_without_powers() -> None:
    data, times = stream(8.0, seed=12)
    ends = grid_window_ends(len(times), 256.0, BandSettings())
    at = int(ends[4])  # the last sample of the fifth window (1023)
    data[at, 2] = np.nan
    outs = play(chunker(), data, times, sizes=[50])
    windows = [w for o in outs for w in o.artifact["windows"]]
    assert len(windows) == len(ends)
    hit = (ends >= at) & (ends - 511 <= at)
    for w, end, missing in zip(windows, ends, hit, strict=True):
        flags = w["quality"]["channels"]["ch2"]
        assert flags["missing"] is bool(missing), f"window ending at sample {end}, NaN at {at}"
        assert (w["absolute"]["ch2"]["alpha"] is None) is bool(missing)
        assert w["absolute"]["ch1"]["alpha"] is not None and w["quality"]["gap"] is False
        if missing:
            assert w["quality"]["ok"] is False and all(v is None for v in w["relative"]["ch2"].values())
    assert windows[4]["quality"]["channels"]["ch2"]["missing"] is True


def test_events_go_to_the_chunk_whose_span_holds_them() -> None:
    data, times = stream(16.0, seed=9)
    events = [
        Event(times[0] - 50.0, "before-start"),
        Event(times[10], "in-0"),
        Event(times[1279], "last-of-0"),
        Event(times[1279] + 1.0, "between-0-1"),
        Event(times[2600], "in-2"),
        Event(times[-1] + 20.0, "after-end"),
    ]
    outs = play(chunker(), data, times, sizes=[12], events=events)
    where = {e["value"]: o.chunk_index for o in outs for e in o.artifact["events"]}
    assert where == {
        "before-start": 0,
        "in-0": 0,
        "last-of-0": 0,
        "between-0-1": 1,
        "in-2": 2,
        "after-end": 3,
    }
    first = outs[0].artifact["events"][1]
    assert first == {"time_ms": round(float(times[10]), 3), "value": "in-0"}
    # A marker arriving after its chunk was emitted goes into the next one, with its own time.
    ch = chunker()
    ch.push(SampleChunk(data[:1280], times[:1280]))
    [late] = ch.push(SampleChunk(data[1280:2560], times[1280:2560], events=(Event(times[5], "late"),)))
    assert late.artifact["events"] == [{"time_ms": round(float(times[5]), 3), "value": "late"}]


def test_flush_gives_the_rest_and_nothing_when_empty() -> None:
    data, times = stream(6.0)
    ch = chunker()
    assert ch.push(SampleChunk(data[:0], times[:0])) == []
    outs = ch.push(SampleChunk(data, times))
    assert [o.sample_count for o in outs] == [1280]
    rest = ch.flush()
    assert [o.sample_count for o in rest] == [len(times) - 1280]
    assert ch.flush() == []


def test_missing_samples_become_null_not_nan() -> None:
    data, times = stream(6.0)
    data[700, 2] = np.nan
    outs = play(chunker(), data, times, sizes=[50])
    doc = json.loads(outs[0].to_bytes())  # allow_nan=False: it would raise on NaN
    assert doc["samples"][700][2] is None
    hit = [w for w in doc["windows"] if w["quality"]["channels"]["ch2"]["missing"]]
    assert len(hit) == 4
    assert all(
        w["absolute"]["ch2"]["alpha"] is None and w["absolute"]["ch1"]["alpha"] is not None for w in hit
    )
    assert all(not w["quality"]["ok"] for w in hit)
    assert all(math.isfinite(v) for v in outs[0].band_powers.values())


@pytest.mark.parametrize(("freq_hz", "band"), [(10.0, "alpha"), (20.0, "beta")])
def test_sine_wave_dominant_band(freq_hz: float, band: str) -> None:
    sfreq = 256.0
    t = np.arange(int(sfreq * 11)) / sfreq
    rng = np.random.default_rng(0)
    data = 25.0 * np.sin(2 * np.pi * freq_hz * t)[:, None] + rng.standard_normal((t.size, 4))
    outs = play(chunker(), data, T0_MS + t * 1000.0, sizes=[32])
    # 11 s in 5 s chunks: 5 s, 5 s, 1 s; every chunk holds at least one full 2 s window.
    assert len(outs) == 3 and all(o.band_powers for o in outs)
    for o in outs:
        assert max(o.band_powers, key=o.band_powers.get) == band
        assert o.band_powers[band] > 0.8


def test_artifact_schema_and_evidence_fields() -> None:
    from collector import __version__
    from collector.api.models import EvidenceCreate

    data, times = stream(6.0)
    events = [Event(times[30], "stim 1")]
    [first, _] = play(chunker(), data, times, sizes=[256], events=events)
    doc = json.loads(first.to_bytes())
    assert doc["format"] == "openlesson-collector.eeg-chunk" and doc["version"] == 1
    assert doc["capture_id"] == "cap-1" and doc["stream_id"] == "eeg:Muse-00:55:DA:B0:0B:61"
    assert doc["chunk_index"] == 0 and doc["t0_ms"] == math.floor(T0_MS)
    assert doc["device"] == {
        "name": "Muse",
        "model": "Muse 2",
        "source_id": "Muse-00:55:DA:B0:0B:61",
        "sfreq": 256.0,
        "nominal_sfreq": 256.0,
        "measured_sfreq": None,
        "channels": ["ch0", "ch1", "ch2", "ch3"],
        "unit": "microvolts",
    }
    method = doc["method"]
    assert method["timestamps_repaired"] == 0
    assert (method["psd"], method["window"], method["nperseg"], method["noverlap"]) == (
        "welch",
        "hann",
        256,
        128,
    )
    assert (method["window_s"], method["step_s"], method["detrend"]) == (2.0, 0.5, "constant")
    assert doc["bands_hz"] == {
        "delta": [1, 4],
        "theta": [4, 8],
        "alpha": [8, 13],
        "beta": [13, 30],
        "gamma": [30, 44],
    }
    assert len(doc["windows"]) == 7  # ends at samples 511, 639, ..., 1279
    w = doc["windows"][0]
    assert set(w) == {"end_ms", "absolute", "relative", "quality"}
    assert (
        set(w["absolute"])
        == set(w["relative"])
        == set(w["quality"]["channels"])
        == {"ch0", "ch1", "ch2", "ch3"}
    )
    assert doc["events"] == [{"time_ms": round(float(times[30]), 3), "value": "stim 1"}] and doc["gaps"] == []

    fields = chunk_evidence(first, "Muse 2").request_fields()
    assert fields == {
        "type": "eeg",
        "mime_type": "application/json",
        "timestamp_ms": doc["t0_ms"],
        "chunk_index": 0,
        "sample_count": 1280,
        "device_name": "Muse 2",
        "band_powers": first.band_powers,
        "metadata": {"capture_id": "cap-1", "stream_id": doc["stream_id"], "collector_version": __version__},
    }
    # The evidence the pipeline will build passes the API's own wire model.
    EvidenceCreate(**fields, data=base64.b64encode(first.to_bytes()).decode())


@pytest.mark.slow
def test_memory_stays_flat() -> None:
    sfreq, n_ch, piece = 256.0, 4, 64
    rng = np.random.default_rng(0)
    block = rng.standard_normal((piece, n_ch)) * 10.0
    ch = chunker()

    def run(seconds: float, start: int) -> tuple[int, int]:
        n_pieces = int(seconds * sfreq) // piece
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for k in range(n_pieces):
            t = T0_MS + (start + k * piece + np.arange(piece)) * 1000.0 / sfreq
            gaps = (Gap(float(t[0]) - 100.0, float(t[0])),) if k % 23 == 0 else ()
            events = (Event(float(t[0]), "m"),) if k % 13 == 0 else ()
            for out in ch.push(SampleChunk(block, t, gaps=gaps, events=events)):
                out.to_bytes()
        return tracemalloc.get_traced_memory()[1] - base, start + n_pieces * piece

    tracemalloc.start()
    try:
        short_peak, at = run(30.0, 0)
        long_peak, _ = run(300.0, at)
    finally:
        tracemalloc.stop()
    # 10x the stream, about the same peak (one chunk's arrays and JSON, ~1-2 MB).
    assert long_peak < short_peak * 1.5 + 200_000, (short_peak, long_peak)
    print(f"peak traced memory: 30 s stream {short_peak} B, 300 s stream {long_peak} B")
    assert ch._pending_n <= ch.chunk_samples and ch._tail_data.shape[0] <= ch.window - 1
    assert len(ch._breaks) <= 2 and len(ch._events) <= 2


def test_real_muse_recording_matches_independent_welch() -> None:
    if not MUSE_XDF.exists():
        pytest.skip(f"{MUSE_XDF} is not available")
    pyxdf = pytest.importorskip("pyxdf")
    streams, _ = pyxdf.load_xdf(str(MUSE_XDF))
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    markers = next(s for s in streams if s["info"]["type"][0] == "Markers")
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    sfreq = float(eeg["info"]["nominal_srate"][0])
    data = np.asarray(eeg["time_series"], dtype=np.float64)
    times = 1_486_223_115_483.0 + (eeg["time_stamps"] - eeg["time_stamps"][0]) * 1000.0
    events = [
        Event(1_486_223_115_483.0 + (ts - eeg["time_stamps"][0]) * 1000.0, str(v[0]))
        for ts, v in zip(markers["time_stamps"], markers["time_series"], strict=True)
    ]
    desc = StreamDescription(
        name="Muse", type="EEG", source_id=eeg["info"]["source_id"][0], sfreq=sfreq, channels=tuple(labels)
    )
    ch = EegChunker(desc, BandSettings(), capture_id="cap", stream_id=desc.stream_id, sample_decimals=None)
    outs = play(ch, data, times, sizes=[12], events=events)  # muselsl pushes 12 samples per packet

    assert sum(o.sample_count for o in outs) == len(times) == 30732
    assert sum(len(o.artifact["events"]) for o in outs) == len(events) == 197
    delivered = samples_of(outs)
    delivered_t = times_of(outs)
    assert np.array_equal(delivered, data)
    window, nperseg = round(2.0 * sfreq), round(1.0 * sfreq)
    n_windows = 0
    for o in outs:
        rel = []
        for w in o.artifact["windows"]:
            e = int(np.argmin(np.abs(delivered_t - w["end_ms"])))
            f, psd = scipy.signal.welch(
                delivered[e - window + 1 : e + 1],
                sfreq,
                window="hann",
                nperseg=nperseg,
                noverlap=nperseg // 2,
                detrend="constant",
                scaling="density",
                axis=0,
            )
            absolute = np.stack(
                [psd[(f >= lo) & (f < hi)].sum(axis=0) for lo, hi in o.artifact["bands_hz"].values()]
            )
            absolute *= f[1] - f[0]  # (n_bands, n_channels)
            relative = absolute / absolute.sum(axis=0)
            for c, name in enumerate(labels):
                got = np.array([w["absolute"][name][b] for b in BANDS])
                assert np.allclose(got, absolute[:, c], rtol=1e-5, atol=0)
            rel.append(relative.T)
            n_windows += 1
        if rel:
            want = np.concatenate(rel).mean(axis=0)
            got = np.array([o.band_powers[b] for b in BANDS])
            assert np.max(np.abs(got - want) / want) <= 1e-9
    assert n_windows == len(grid_window_ends(len(times), sfreq, BandSettings())) == 237


def test_streams_too_slow_or_short_for_windows_are_still_chunked_whole():
    """A 1 Hz counter (no band powers possible) and a 9-sample stream: every sample, no crash."""
    from collector.core.bandpower import BandSettings as _Settings
    from collector.core.chunk import EegChunker as _Chunker
    from collector.core.records import SampleChunk as _Chunk
    from collector.core.records import StreamDescription as _Desc

    for sfreq, n in ((1.0, 10), (10.0, 9)):
        desc = _Desc(name="slow", type="data", source_id="slow", sfreq=sfreq, channels=("c",))
        chunker = _Chunker(desc, _Settings(), capture_id="c", stream_id="s", chunk_s=5.0)
        values = np.arange(n, dtype=float)[:, None]
        outs = chunker.push(_Chunk(data=values, times_ms=1.7e12 + np.arange(n) * 1000.0 / sfreq))
        outs += chunker.flush()
        got = [row[0] for out in outs for row in out.artifact["samples"]]
        assert got == list(values[:, 0])
        assert all(out.artifact["windows"] == [] for out in outs)
        assert ("not_computed" in outs[0].artifact["method"]) == (sfreq == 1.0)


def test_the_long_lists_json_is_json_dumps_byte_for_byte():
    """`times_ms` and `samples` are arrays written by orjson (issue 23); the artifact must stay
    exactly json.dumps' text of its lists, so values orjson writes otherwise (below 1e-4) are left
    to json, and a non-finite value is null either way."""
    import orjson

    from collector.core.chunk_artifact import _array_json, _dumps, as_lists, encode

    samples = np.array([[0.0, -0.0, 0.001, -0.005], [12.0, 999999999999.999, -123456789.125, 0.1]])
    times = np.round(np.arange(0, 5000, 3.90625), 3) + 0.0
    art = {"format": "é", "times_ms": times, "samples": samples, "windows": []}
    assert encode(art) == _dumps(as_lists(art)).encode()
    assert as_lists(art)["samples"] == samples.tolist()
    rng = np.random.default_rng(7)
    plain = rng.uniform(1, 10, 60_000) * 10.0 ** rng.integers(-4, 16, 60_000) * rng.choice([-1, 1], 60_000)
    for values in (plain, np.round(plain, 3), np.round(plain, 6), plain.astype(np.float32), plain[::3]):
        want = _dumps(values.astype(np.float64).tolist()).encode()
        assert _array_json(values) == want
        assert (
            orjson.dumps(np.ascontiguousarray(values, np.float64), option=orjson.OPT_SERIALIZE_NUMPY) == want
        )
    wide = plain * 10.0 ** rng.integers(-3, 4, 60_000)  # below 1e-4 and above 1e16 too: json writes it
    assert _array_json(wide) == _dumps(wide.tolist()).encode()
    odd = np.array([[1.5, np.nan], [-np.inf, 1e-5]])
    assert _array_json(odd) == b"[[1.5,null],[null,1e-05]]"
    assert _array_json(odd[:, :1]) == b"[[1.5],[null]]"  # orjson's path, a strided column
    assert _array_json(np.zeros((0, 4))) == b"[]"


@pytest.mark.parametrize("case", ["muse", "tiny", "flat-and-gap"])
def test_windows_written_by_orjson_are_json_dumps_byte_for_byte(case):
    """An artifact's `windows` go through orjson when all their floats are in the range where it
    writes them as json does (issue 23); otherwise json writes them. Either way the chunk's bytes are
    exactly json.dumps of its artifact, also after movement flags are added to the windows."""
    from recordings import MUSE, pyxdf_eeg

    from collector.core.chunk_artifact import _dumps, as_lists

    if case == "muse":
        x, stamps_s = pyxdf_eeg(MUSE, channels=4)
        times = 1.7e12 + (stamps_s - stamps_s[0]) * 1000.0
    else:
        rng = np.random.default_rng(3)
        times = 1.7e12 + np.arange(256 * 12) * 1000.0 / 256
        x = rng.normal(0, 1e-3 if case == "tiny" else 20.0, (times.size, 4))  # tiny: µV² far under 1e-4
        if case == "flat-and-gap":
            x[:, 1] = 0.0
            times[1500:] += 2000.0
    desc = StreamDescription(name="m", type="EEG", source_id="m", sfreq=256.0, channels=("a", "b", "c", "d"))
    chunker = EegChunker(desc, BandSettings(), capture_id="c", stream_id="s", chunk_s=5.0)
    outs = chunker.push(SampleChunk(data=np.asarray(x, dtype=float), times_ms=times)) + chunker.flush()
    assert outs
    for out in outs:
        assert out.to_bytes() == _dumps(as_lists(out.artifact)).encode()
        for w in out.artifact["windows"]:
            w["quality"]["movement"] = None if w["quality"]["gap"] else True
        assert dataclasses.replace(out, encoded=None).to_bytes() == _dumps(as_lists(out.artifact)).encode()
    via_orjson = sum(bool(out.series and "windows" in out.series) for out in outs)
    assert via_orjson == (len(outs) if case != "tiny" else 0), via_orjson


def test_band_powers_rounded_on_the_array_are_sigs_floats_exactly():
    """`_sig_all` rounds to significant digits on the array (issue 23); it must give exactly
    `sig`'s floats (format, then parse): any magnitude, signs, zeros, -0.0, NaN/inf, powers of ten
    and their neighbours, binary fractions on a rounding tie."""
    from collector.core.chunk_artifact import _sig_all, sig

    rng = np.random.default_rng(0)
    tens = np.array([10.0**i for i in range(-25, 25)])
    values = np.concatenate(
        [
            rng.uniform(-1, 1, 40_000) * 10.0 ** rng.uniform(-30, 30, 40_000),
            rng.random(20_000),
            np.round(rng.random(20_000) * 1e6) / 8,  # many exact ties at the 6th digit
            tens,
            np.nextafter(tens, 0),
            np.nextafter(tens, np.inf),
            [0.0, -0.0, 999999.5, 9999995.0, 1234565.0, 5e-324, 1.7976931348623157e308],
            [np.nan, np.inf, -np.inf],
        ]
    )
    got = _sig_all(values)
    want = [sig(v) for v in values.tolist()]
    assert [repr(g) for g in got] == [repr(w) for w in want]  # repr: -0.0 and 0.0 differ
