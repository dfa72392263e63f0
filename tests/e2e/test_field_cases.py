"""Real-world recordings through the real `collector replay --speed max` against the sandbox.

Each file of ../shared/data/field-cases/ is checked against the value its README gives; each kind of
fault also has another instance made here with scripts/make_xdf.py (other channel counts, rates,
labels, clock domains). What is checked is what the sandbox stored: the decoded artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from make_xdf import XdfStream, write_xdf  # noqa: E402

FIELD = Path(__file__).resolve().parents[1] / "data" / "field-cases"  # copies of ../shared/data/field-cases
HEADER = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
HEADER_MS = HEADER.timestamp() * 1000.0

pytestmark = pytest.mark.slow


def field(name: str) -> Path:
    path = FIELD / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    return path


def replay(sandbox, path: Path, tmp_path: Path, *extra: str, timeout: float = 180.0):
    """`collector replay FILE --speed max` into the sandbox; the process and its summary line."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "replay",
            str(path),
            "--workspace",
            sandbox.workspace_id,
            "--block",
            sandbox.block_ids[0],
            "--speed",
            "max",
            "--spool",
            str(tmp_path / f"spool-{path.stem}"),
            "--flush-timeout",
            "120",
            "--log-format",
            "json",
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = None
    for line in proc.stderr.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "summary":
            summary = doc
    return proc, summary


def chunks_of(sandbox) -> list[dict]:
    """The delivered EEG artifacts in chunk order, each checked against its evidence row."""
    out = {}
    for row in sandbox.evidence(sandbox.workspace_id):
        if row["type"] != "eeg" or (row.get("metadata") or {}).get("kind") == "session-summary":
            continue
        chunk = json.loads(sandbox.read_artifact(row["id"]))
        assert chunk["t0_ms"] == row["timestamp_ms"] and len(chunk["samples"]) == row["sample_count"]
        out[(chunk["stream_id"], chunk["chunk_index"])] = chunk
    chunks = [out[k] for k in sorted(out, key=lambda k: k[1])]
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    return chunks


def times_of(chunks: list[dict]) -> np.ndarray:
    return np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"], dtype=float) for c in chunks])


def check_sound(chunks: list[dict]) -> np.ndarray:
    """What every replay must give: increasing times, chunks where their samples are, sane gaps."""
    times = times_of(chunks)
    assert np.all(np.diff(times) > 0), "sample times must strictly increase"
    for c in chunks:
        rel = np.asarray(c["times_ms"])
        assert 0 <= rel[0] <= 1 and np.all(rel >= 0), "times_ms are offsets from t0_ms, never negative"
        for g in c["gaps"]:
            assert g["start_ms"] < g["end_ms"], g
        keys = c["device"]["channels"]
        assert len(set(keys)) == len(keys) == len(c["samples"][0])
    return times


def events_of(chunks: list[dict]) -> list[dict]:
    return [e for c in chunks for e in c["events"]]


def gaps_of(chunks: list[dict]) -> list[dict]:
    return [g for c in chunks for g in c["gaps"]]


def repaired_of(chunks: list[dict]) -> int:
    return sum(c["method"]["timestamps_repaired"] for c in chunks)


def eeg(
    n: int,
    sfreq: float,
    channels: list[str],
    *,
    t0: float = 5000.0,
    freq_hz: float = 10.0,
    name: str = "FieldEEG",
    source_id: str = "field-eeg",
    hostname: str = "labpc",
    nominal: float | None = None,
    times: np.ndarray | None = None,
    seed: int = 1,
) -> XdfStream:
    """n samples of a `freq_hz` rhythm plus noise, stamped every 1/sfreq s (or `times`)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    values = 20 * np.sin(2 * np.pi * freq_hz * t)[:, None] + rng.normal(0, 2, (n, len(channels)))
    stamps = t0 + t if times is None else times
    return XdfStream(
        name,
        "EEG",
        sfreq if nominal is None else nominal,
        channels,
        np.asarray(stamps, dtype=np.float64),
        values.astype(np.float32),
        source_id=source_id,
        hostname=hostname,
    )


def markers(times: list[float], name: str = "FieldMarkers", source_id: str = "field-mk") -> XdfStream:
    return XdfStream(
        name,
        "Markers",
        0.0,
        ["m"],
        np.asarray(times, dtype=np.float64),
        [f"stim{i}" for i in range(len(times))],
        source_id=source_id,
        unit="",
        hostname="labpc",
    )


def mean_band(chunks: list[dict], band: str) -> float:
    values = [c["band_powers"][band] for c in chunks if c["band_powers"]]
    return float(np.mean(values))


# -- kind 1: bad timestamps on a few samples -----------------------------------------------------


@pytest.mark.parametrize("file", ["jump_outlier.xdf", "jump_outlier_first_of_chunk.xdf"])
def test_field_case_outlier_stamp_is_repaired_not_moving_any_chunk(sandbox, tmp_path, file):
    proc, summary = replay(sandbox, field(file), tmp_path, "--chunk-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (5120,)
    # No chunk moved: every chunk lies inside the 20 s recording that starts at the header time.
    for c in chunks:
        assert HEADER_MS - 1 <= c["t0_ms"] <= HEADER_MS + 20_000
    assert times[-1] - times[0] == pytest.approx(5119 * 1000 / 256, abs=0.01)
    assert repaired_of(chunks) == 1 and "repaired" in proc.stderr
    assert gaps_of(chunks) == []  # one bad stamp is no gap
    assert len(events_of(chunks)) == 9 == summary["markers"]


def test_other_bad_stamps_repaired_and_lasting_jumps_are_gaps(sandbox, tmp_path):
    """8 channels at 500 Hz: backward and forward outliers, a repeated and two swapped stamps, a
    first sample 200,000 s early; then a lasting forward jump (2 s) and a clock reset (-1 s)."""
    n, sfreq = 10_000, 500.0
    t = 5000.0 + np.arange(n) / sfreq
    t[7000:] += 2.0  # the clock really jumps forward: a gap
    t[8500:] -= 1.0  # ...and later back (a clock reset): a gap too, never start >= end
    bad = t.copy()
    bad[0] -= 200_000.0
    bad[3000] -= 200_000.0
    bad[4000] = bad[3999]
    bad[4500], bad[4501] = bad[4501], bad[4500]
    bad[6000] += 3.0
    path = tmp_path / "bad_stamps.xdf"
    labels = [f"E{i}" for i in range(8)]
    write_xdf(path, [eeg(n, sfreq, labels, times=bad)], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path, "--chunk-seconds", "4")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (n,) and summary["samples"] == n
    assert repaired_of(chunks) == 6  # samples 0, 3000, 4000, 4500, 4501, 6000
    gaps = gaps_of(chunks)
    assert len(gaps) == 2
    assert gaps[0]["end_ms"] - gaps[0]["start_ms"] == pytest.approx(2002.0, abs=0.01)
    assert 0 < gaps[1]["end_ms"] - gaps[1]["start_ms"] <= 2 * 1000 / sfreq + 0.01
    for c in chunks:
        assert HEADER_MS - 1 <= c["t0_ms"] <= HEADER_MS + 25_000


@pytest.mark.parametrize("case", ["irregular_eeg.xdf", "declared250_real252"])
def test_no_chunk_starts_after_its_first_sample(sandbox, tmp_path, case):
    """Chunks that start between two whole ms (a measured rate, an irregular stream): t0_ms is the
    first sample's time rounded down, so no times_ms is negative (review 9, finding 1)."""
    if case.endswith(".xdf"):
        path = field(case)
    else:
        path = tmp_path / f"{case}.xdf"
        write_xdf(path, [eeg(252 * 21, 252.0, ["Fz", "Cz", "Pz"], nominal=250.0)], start=HEADER)
    proc, _ = replay(sandbox, path, tmp_path, "--chunk-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    assert len(chunks) >= 4
    check_sound(chunks)  # 0 <= times_ms[0] <= 1 and no negative offset in any chunk
    # Some chunk starts past the half ms: rounding t0_ms to nearest would have made it negative.
    assert any(c["times_ms"][0] > 0.5 for c in chunks)


@pytest.mark.parametrize(("length", "offset"), [(12, -200_000.0), (30, 200_000.0)])
def test_a_long_run_of_bad_stamps_that_comes_back_is_repaired_not_a_jump(sandbox, tmp_path, length, offset):
    """More bad stamps in a row than an isolated outlier (12 at -200,000 s, as the reviewer's
    A4_run12.xdf; 30 at +200,000 s), the clock back on its grid after them: repaired and counted,
    no gap, nothing moved days later (review 9, finding 3)."""
    n, sfreq = 256 * 20, 256.0
    t = 5000.0 + np.arange(n) / sfreq
    t[2000 : 2000 + length] += offset
    path = tmp_path / f"run{length}.xdf"
    write_xdf(
        path, [eeg(n, sfreq, ["C1", "C2", "C3", "C4"], times=t), markers([5001.0, 5015.0])], start=HEADER
    )
    proc, summary = replay(sandbox, path, tmp_path, "--chunk-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (n,) and gaps_of(chunks) == []
    assert times[-1] - times[0] == pytest.approx((n - 1) * 1000 / sfreq, abs=0.01)
    for c in chunks:
        assert HEADER_MS - 1 <= c["t0_ms"] <= HEADER_MS + 20_000
    assert repaired_of(chunks) == length
    assert f"{length} sample timestamp(s)" in proc.stderr and summary["recording_s"] < 21


@pytest.mark.parametrize(("packet", "sfreq"), [(32, 250.0), (64, 500.0)])
def test_a_sender_that_gives_each_packet_one_stamp_replays_at_its_rate_without_gaps(
    sandbox, tmp_path, packet, sfreq
):
    """Packets of 32 or 64 samples under one stamp each (the stamp of the packet's last sample):
    the period is a packet step over its samples, not the step itself, and a fit over one
    packet's equal stamps gives no rate (it crashed with a division by zero, issue 23 review).
    Every sample arrives at the declared rate, spaced one period apart, with no gap."""
    n = int(sfreq * 30)
    i = np.arange(n)
    t = 5000.0 + ((i // packet) * packet + packet - 1) / sfreq
    path = tmp_path / f"packets{packet}.xdf"
    write_xdf(path, [eeg(n, sfreq, ["C1", "C2", "C3", "C4"], times=t, freq_hz=10.0)], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path, "--chunk-seconds", "10")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (n,) and summary["samples"] == n and gaps_of(chunks) == []
    assert np.diff(times) == pytest.approx(1000.0 / sfreq, rel=1e-3)
    assert chunks[0]["device"]["sfreq"] == sfreq
    assert mean_band(chunks, "alpha") > 0.5  # the 10 Hz rhythm stays alpha at the right rate


# -- kind 2: declared rate != real rate ----------------------------------------------------------


def test_field_case_declared_256_real_200_uses_the_measured_rate(sandbox, tmp_path):
    proc, _ = replay(sandbox, field("declared256_real200.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "declares 256 Hz" in line]
    assert len(warnings) == 1 and "200 Hz" in warnings[0], proc.stderr
    chunks = chunks_of(sandbox)
    check_sound(chunks)
    device = chunks[0]["device"]
    assert device["sfreq"] == pytest.approx(200.0) and device["nominal_sfreq"] == 256.0
    assert device["measured_sfreq"] == pytest.approx(200.0)
    assert chunks[0]["method"]["nperseg"] == 200
    assert mean_band(chunks, "alpha") > 0.5  # the 12 Hz rhythm is alpha at the real rate


def test_declared_512_real_256_theta_stays_theta(sandbox, tmp_path):
    """6 channels declared 512 Hz, really 256 Hz: a 6 Hz rhythm would read as 12 Hz (alpha)."""
    path = tmp_path / "declared512_real256.xdf"
    write_xdf(path, [eeg(256 * 20, 256.0, list("ABCDEF"), nominal=512.0, freq_hz=6.0)], start=HEADER)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sum("declares 512 Hz" in line and "256 Hz" in line for line in proc.stderr.splitlines()) == 1
    chunks = chunks_of(sandbox)
    assert chunks[0]["device"]["sfreq"] == pytest.approx(256.0)
    assert chunks[0]["device"]["nominal_sfreq"] == 512.0
    assert mean_band(chunks, "theta") > 0.5


# -- kind 3: irregular-declared EEG ----------------------------------------------------------------


def test_field_case_irregular_eeg_rate_from_typical_spacing(sandbox, tmp_path):
    proc, summary = replay(sandbox, field("irregular_eeg.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)  # the swapped stamps are back in order, no gap with start > end
    assert times.shape == (5000,)
    device = chunks[0]["device"]
    assert device["nominal_sfreq"] == 0.0
    # About 250 Hz from the spacing; 5000 samples over the 20.5 s span (hole included) would be 244.
    assert device["sfreq"] == pytest.approx(250.0, rel=0.01)
    gaps = gaps_of(chunks)
    assert len(gaps) == 1 and gaps[0]["end_ms"] - gaps[0]["start_ms"] == pytest.approx(505, abs=10)


def test_irregular_stream_with_long_pauses_and_one_too_irregular_to_window(sandbox, tmp_path):
    rng = np.random.default_rng(3)
    steps = np.full(128 * 30, 1 / 128) + rng.uniform(-0.002, 0.002, 128 * 30)
    steps[1000] += 3.0
    steps[2500] += 4.0  # two pauses: the span-based rate would be 3840 / 37 s = 104 Hz
    t = 5000.0 + np.cumsum(steps)
    path = tmp_path / "irregular_pauses.xdf"
    write_xdf(path, [eeg(t.size, 128.0, ["Fz", "Cz", "Pz"], nominal=0.0, times=t)], start=HEADER)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    check_sound(chunks)
    assert chunks[0]["device"]["sfreq"] == pytest.approx(128.0, rel=0.01)
    assert len(gaps_of(chunks)) == 2

    messy = 5000.0 + np.cumsum(rng.exponential(1 / 128, 4000))  # spacing of a marker stream
    bad = tmp_path / "too_irregular.xdf"
    write_xdf(bad, [eeg(messy.size, 128.0, ["Fz"], nominal=0.0, times=messy)], start=HEADER)
    proc, _ = replay(sandbox, bad, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "too much to be windowed" in proc.stderr


# -- kind 4: one stream in several parts -----------------------------------------------------------


def test_field_case_stream_in_two_parts_is_stitched(sandbox, tmp_path):
    path = field("eeg_twice.xdf")
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "came in 2 parts" in proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (4608,)
    gaps = gaps_of(chunks)
    assert len(gaps) == 1 and gaps[0]["end_ms"] - gaps[0]["start_ms"] == pytest.approx(2003.9, abs=0.1)
    assert len(events_of(chunks)) == 10 == summary["markers"]


def test_field_case_one_part_by_stream_id_or_both_by_source_id(sandbox_factory, tmp_path):
    path = field("eeg_twice.xdf")
    one = sandbox_factory()
    proc, _ = replay(one, path, tmp_path, "--stream", "3")  # the file's id of the second part
    assert proc.returncode == 0, proc.stderr
    assert times_of(chunks_of(one)).shape == (2048,)
    both = sandbox_factory()
    proc, _ = replay(both, path, tmp_path, "--stream", "eeg-1")  # the source_id: both parts
    assert proc.returncode == 0, proc.stderr
    assert times_of(chunks_of(both)).shape == (4608,)


@pytest.mark.parametrize("pick", ["2", "mk-1", "TestMarkers"])
def test_picking_the_marker_stream_says_it_is_markers_not_eeg(sandbox, tmp_path, pick):
    """`--stream 2` names the file's marker stream (review 9, finding 5): one line that says so."""
    proc, _ = replay(sandbox, field("eeg_twice.xdf"), tmp_path, "--stream", pick)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'TestMarkers' (id 2" in lines[0] and "a marker stream" in lines[0], lines
    assert "not EEG" in lines[0] and "no numeric stream" not in lines[0]
    assert [r for r in sandbox.evidence(sandbox.workspace_id) if r["type"] == "eeg"] == []


def test_three_parts_without_source_id_joined_by_host_not_a_second_device(sandbox, tmp_path):
    parts = [
        eeg(500 * 4, 500.0, ["C3", "C4"], t0=5000.0, source_id="", seed=1),
        eeg(500 * 3, 500.0, ["C3", "C4"], t0=5006.0, source_id="", seed=2),
        eeg(500 * 2, 500.0, ["C3", "C4"], t0=5010.5, source_id="", seed=3),
    ]
    other_host = eeg(500 * 12, 500.0, ["C3", "C4"], t0=5000.0, source_id="", hostname="otherpc")
    marks = markers([5001.0, 5005.0, 5009.0, 5012.0, 5013.0])  # two of them fall in outages
    path = tmp_path / "three_parts.xdf"
    write_xdf(path, [parts[2], other_host, parts[0], marks, parts[1]], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path, "--stream", "FieldEEG")
    assert proc.returncode == 0, proc.stderr
    assert "came in 3 parts" in proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times.shape == (500 * 9,)
    gaps = gaps_of(chunks)
    assert [round(g["end_ms"] - g["start_ms"]) for g in gaps] == [2002, 1502]
    assert len(events_of(chunks)) == 5 == summary["markers"]


def test_same_named_devices_are_named_told_apart_and_each_can_be_picked(sandbox_factory, tmp_path):
    """Two 3-channel 500 Hz devices named alike without source_id, recording at once, and a
    same-named 6-channel stream after them (review 9, finding 4): the replay says which id it
    replayed and how to pick the others, and each choice has its own stream_id."""
    a = eeg(500 * 8, 500.0, ["C3", "Cz", "C4"], t0=5000.0, source_id="", name="Amp", seed=1)
    b = eeg(500 * 8, 500.0, ["C3", "Cz", "C4"], t0=5003.0, source_id="", name="Amp", seed=2)
    c = eeg(500 * 4, 500.0, [f"E{i}" for i in range(6)], t0=5020.0, source_id="", name="Amp", seed=3)
    path = tmp_path / "two_amps.xdf"
    write_xdf(path, [a, b, c], start=HEADER)  # the file's stream ids: 1, 2, 3
    ids = {}
    for pick in (None, "2", "3"):
        box = sandbox_factory()
        proc, summary = replay(box, path, tmp_path, *(("--stream", pick) if pick else ()))
        assert proc.returncode == 0, proc.stderr
        said = [json.loads(line)["message"] for line in proc.stderr.splitlines() if "not replayed" in line]
        assert len(said) == 1, proc.stderr
        replayed = pick or "1"
        others = sorted({"1", "2", "3"} - {replayed})
        assert f"Replaying id {replayed} " in said[0] and "--stream ID" in said[0]
        for other in others:
            assert f"id {other} (" in said[0]
        chunks = chunks_of(box)
        check_sound(chunks)
        ids[replayed] = chunks[0]["stream_id"]
        assert ids[replayed].endswith(f":{replayed}")
        assert summary["samples"] == {"1": 4000, "2": 4000, "3": 2000}[replayed]
        if pick is None:  # why each other one is not replayed
            assert "id 2 (overlaps it in time: another device)" in said[0]
            assert "id 3 (6 channels, not 3)" in said[0]
    assert len(set(ids.values())) == 3  # one stream_id per device


# -- kind 5: streams on different clocks -----------------------------------------------------------


def test_unix_time_eeg_and_lsl_clock_markers_are_aligned(sandbox, tmp_path):
    """muselsl without --lsltime: EEG in Unix time; stimulus markers and an accelerometer in the
    LSL clock. Markers must fall where they belong in the EEG, not 54 years away."""
    unix0 = HEADER.timestamp() + 0.5
    n = 256 * 20
    eeg_unix = eeg(n, 256.0, ["TP9", "AF7", "AF8", "TP10"], t0=unix0, name="Muse", source_id="muse")
    acc = XdfStream(
        "MuseAcc",
        "ACC",
        52.0,
        ["X", "Y", "Z"],
        3000.0 + np.arange(52 * 20) / 52.0,
        np.zeros((52 * 20, 3), dtype=np.float32),
        source_id="muse-acc",
    )
    marks = markers([3002.0, 3010.0, 3019.0])
    path = tmp_path / "mixed_clocks.xdf"
    write_xdf(path, [eeg_unix, acc, marks], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path, "--stream", "Muse")
    assert proc.returncode == 0, proc.stderr
    assert "mixes clocks" in proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    events = events_of(chunks)
    assert len(events) == 3 == summary["markers"]
    offsets = [e["time_ms"] - times[0] for e in events]
    assert offsets == pytest.approx([2000.0, 10_000.0, 19_000.0], abs=1.0)


def test_markers_only_on_another_clock_are_named_and_kept_near_the_eeg(sandbox, tmp_path):
    unix0 = HEADER.timestamp()
    eeg_unix = eeg(256 * 10, 256.0, ["TP9", "AF7"], t0=unix0, name="Muse", source_id="muse")
    marks = markers([700.0, 704.0, 709.5], name="Stimuli")
    path = tmp_path / "mixed_markers_only.xdf"
    write_xdf(path, [eeg_unix, marks], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    named = [line for line in proc.stderr.splitlines() if "cannot be aligned exactly" in line]
    assert len(named) == 1 and "Stimuli" in named[0]
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    events = events_of(chunks)
    assert len(events) == 3 == summary["markers"]
    for e in events:
        assert times[0] - 1 <= e["time_ms"] <= times[-1] + 1


def test_a_stream_on_an_unknown_clock_is_named_and_never_placed_days_away(sandbox, tmp_path):
    """Markers counted from 0 while the EEG carries LSL-clock stamps a week later: not alignable."""
    stream = eeg(500 * 8, 500.0, ["C3", "Cz", "C4"], t0=604_800.0)
    path = tmp_path / "unknown_clock.xdf"
    write_xdf(path, [stream, markers([1.0, 2.0, 7.5], name="Counter")], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    named = [line for line in proc.stderr.splitlines() if "cannot be aligned with the EEG" in line]
    assert len(named) == 1 and "Counter" in named[0]
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times[0] == pytest.approx(HEADER_MS, abs=0.01)  # the far stream does not set the start
    events = events_of(chunks)
    assert len(events) == 3 == summary["markers"]
    for e in events:
        assert times[0] - 1 <= e["time_ms"] <= times[-1] + 1


# -- kind 6: where a replay starts -------------------------------------------------------------------


def test_eeg_starting_30_s_in_starts_30_s_after_the_header_time(sandbox, tmp_path):
    marks = markers([4970.0, 5001.0, 5004.0])  # the first marker is when the recording began
    path = tmp_path / "late_eeg.xdf"
    write_xdf(path, [marks, eeg(256 * 8, 256.0, ["O1", "O2"], t0=5000.0)], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    times = check_sound(chunks)
    assert times[0] == pytest.approx(HEADER_MS + 30_000, abs=0.01)
    events = events_of(chunks)
    assert [e["time_ms"] for e in events] == pytest.approx(
        [HEADER_MS, HEADER_MS + 31_000, HEADER_MS + 34_000], abs=0.01
    )
    assert summary["markers"] == 3


# -- kind 7: markers are never dropped ---------------------------------------------------------------


def test_markers_after_the_last_sample_and_on_a_chunk_boundary_all_arrive(sandbox, tmp_path):
    sfreq = 250.0
    stream = eeg(int(sfreq * 10), sfreq, ["Fp1", "Fp2", "O1"], t0=5000.0)
    # 10 s in chunks of 5 s: the second chunk's first sample is at 5005.0; the EEG ends at 5009.996.
    times = [4999.0, 5005.0, 5004.996, 5009.996, 5010.5, 5030.0]
    path = tmp_path / "late_markers.xdf"
    write_xdf(path, [stream, markers(times)], start=HEADER)
    proc, summary = replay(sandbox, path, tmp_path, "--chunk-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    check_sound(chunks)
    events = events_of(chunks)
    assert len(events) == 6 == summary["markers"]
    assert sorted(e["value"] for e in events) == sorted(f"stim{i}" for i in range(6))


def test_non_finite_samples_print_only_log_lines_and_lost_data_is_an_error(tmp_path):
    """NaN and inf samples (handled: null in `samples`, windows flagged missing) print no raw numpy
    warning; items the server rejects for good end in one ERROR line with one period (review 9,
    finding 6)."""
    from hostile import HostileServer  # tests/hostile.py: a real HTTP server on loopback

    stream = eeg(250 * 12, 250.0, [f"E{i}" for i in range(5)])
    values = np.array(stream.values, dtype=np.float32)
    values[300:340, 1] = np.nan
    values[1200, :] = np.inf
    values[2000:2010, 3] = -np.inf
    path = tmp_path / "naninf.xdf"
    write_xdf(path, [dataclasses.replace(stream, values=values)], start=HEADER)
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "COLLECTOR_SPOOL_DIR")
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    with HostileServer("validation") as server:
        env.update(OPENLESSON_API_KEY="sk_test_" + "f9" * 16, OPENLESSON_BASE_URL=server.base_url)
        proc = subprocess.run(
            [sys.executable, "-m", "collector", "replay", str(path), "--workspace", server.workspace_id,
             "--block", server.block_id, "--speed", "max", "--chunk-seconds", "5", "--log-format", "json",
             "--spool", str(tmp_path / "spool")],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # every line in the log format
    assert not any("RuntimeWarning" in line["message"] for line in lines)
    lost = [line for line in lines if line.get("event") == "data_lost"]
    assert len(lost) == 1 and lost[0]["level"] == "error", proc.stderr
    assert lost[0]["message"].startswith("DATA LOST: 3 chunk(s) of eeg:") and ".." not in lost[0]["message"]


# -- kind 9: channels stay distinct -------------------------------------------------------------------


def check_distinct_channels(chunks: list[dict], keys: list[str]) -> None:
    assert chunks[0]["device"]["channels"] == keys
    windows = [w for c in chunks for w in c["windows"]]
    assert windows and any(w["absolute"] is not None for w in windows)  # band powers to check
    for w in windows:
        assert list(w["quality"]["channels"]) == keys
        if w["absolute"] is not None:
            assert list(w["absolute"]) == list(w["relative"]) == keys


def test_field_case_duplicate_labels_keep_four_channels(sandbox, tmp_path):
    proc, _ = replay(sandbox, field("duplicate_labels.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    check_distinct_channels(chunks, ["EEG", "EEG#2", "EEG#3", "EEG#4"])
    assert len(chunks[0]["samples"][0]) == 4


def test_repeated_and_empty_labels_keep_every_column(sandbox, tmp_path):
    path = tmp_path / "labels.xdf"
    write_xdf(path, [eeg(512 * 6, 512.0, ["Cz", "", "Cz", "Pz", "Cz", "ch2"])], start=HEADER)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    check_distinct_channels(chunks, ["Cz", "ch2#2", "Cz#2", "Pz", "Cz#3", "ch2"])
