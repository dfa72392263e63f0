"""`collector replay` of the recordings people already have: muselsl CSV (Unix and LSL-clock
stamps), Mind Monitor CSV, EDF+ and BDF, through the real CLI into the real sandbox.

Each test compares what the sandbox stored with the source file: every sample once, values
within the format's resolution, sample times and markers at the right Unix times. Bad files
(truncated, header only, time going backwards, unknown content) get one line and exit 2.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"  # copies of ../shared/data (tests/data/NOTICE.md)
MUSE_CSV = DATA / "muse-p300-subject1.csv"
EEG4 = ["TP9", "AF7", "AF8", "TP10"]

pytestmark = [pytest.mark.slow]


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def run_collector(args: list[str], sandbox=None, *, env_extra: dict | None = None, timeout: float = 180.0):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if sandbox is not None:
        env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def replay(path: Path, sandbox, tmp_path: Path, *extra: str, env_extra: dict | None = None):
    return run_collector(
        [
            "replay",
            str(path),
            "--workspace",
            sandbox.workspace_id,
            "--block",
            sandbox.block_ids[0],
            "--speed",
            "max",
            "--chunk-seconds",
            "30",
            "--spool",
            str(tmp_path / "spool"),
            *extra,
        ],
        sandbox,
        env_extra=env_extra,
    )


def delivered(sandbox) -> tuple[list[dict], np.ndarray, np.ndarray, list[dict]]:
    """(chunks, samples (n, ch) with NaN for null, Unix ms per sample, events) as the sandbox stored them."""
    chunks = {}
    for row in sandbox.evidence(sandbox.workspace_id):
        if row["type"] == "eeg" and row["metadata"].get("kind") != "session-summary":
            chunk = json.loads(sandbox.read_artifact(row["id"]))
            assert chunk["t0_ms"] == row["timestamp_ms"]
            chunks[chunk["chunk_index"]] = chunk
    ordered = [chunks[i] for i in sorted(chunks)]
    assert [c["chunk_index"] for c in ordered] == list(range(len(ordered)))
    samples = np.array(
        [[np.nan if v is None else v for v in row] for c in ordered for row in c["samples"]], dtype=float
    )
    times = np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"], dtype=float) for c in ordered])
    events = [e for c in ordered for e in c["events"]]
    return ordered, samples, times, events


def one_line_exit_2(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def read_muse_csv(path: Path):
    import pandas as pd

    frame = pd.read_csv(path)
    return frame["timestamps"].to_numpy(), frame[EEG4].to_numpy(dtype=float), frame["Marker"].to_numpy()


def file_jitter_ms(stamps: np.ndarray) -> float:
    """The file's own jitter, ms: the largest distance of a stamp from the least-squares line of
    stamp against sample index over its 10 s stretch (the window the replay's clock fit uses).
    muselsl writes stamps with %.3f, so a clean 256 Hz file has 0.5 ms of rounding jitter (its
    steps are 3 or 4 ms). The replay's times are that fitted clock: each within this jitter of
    its stamp (10 % margin for the fit's own window sliding against these fixed stretches)."""
    worst = 0.0
    for a in range(0, stamps.size, 2560):
        t = stamps[a : a + 2560]
        x = np.arange(t.size, dtype=np.float64)
        slope, icpt = np.polyfit(x, t - t[0], 1)
        worst = max(worst, float(np.abs(t - t[0] - (icpt + slope * x)).max()))
    return 1000.0 * worst


# -- muselsl CSV ---------------------------------------------------------------------------------


def test_real_muselsl_csv_delivers_every_sample_and_marker_at_the_files_unix_times(sandbox, tmp_path):
    path = need(MUSE_CSV)
    stamps, values, markers = read_muse_csv(path)
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks, samples, times, events = delivered(sandbox)
    assert samples.shape == (30_732, 4) == values.shape
    np.testing.assert_allclose(samples, values, atol=5e-4)  # both at 0.001 µV
    # The file's own Unix times on its fitted clock: strictly increasing, each within twice the
    # file's own jitter (0.50 ms: muselsl's 1 ms rounding) of its stamp: the recording is anchored
    # at its first stamp, which the first fitted time is up to one jitter away from.
    jitter = file_jitter_ms(stamps)
    assert 0.4 < jitter < 0.6
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, stamps * 1000.0, atol=2.2 * jitter, rtol=0)
    assert chunks[0]["t0_ms"] == math.floor(times[0] + 1e-6)
    assert chunks[0]["device"]["channels"] == EEG4 and chunks[0]["device"]["sfreq"] == 256.0
    rows = np.flatnonzero(markers != 0)
    assert len(events) == len(rows) == 197
    np.testing.assert_allclose(
        [e["time_ms"] for e in events], stamps[rows] * 1000.0, atol=2.2 * jitter, rtol=0
    )
    assert [e["value"] for e in events] == [str(int(v)) for v in markers[rows]]
    assert any(w["relative"] for c in chunks for w in c["windows"])  # band powers computed


def test_lsl_clock_muselsl_csv_is_anchored_at_start_time(sandbox, tmp_path):
    src = need(MUSE_CSV)
    stamps, values, markers = read_muse_csv(src)
    # `muselsl record --lsltime`: the same recording stamped with an LSL clock (seconds since boot).
    lsl = stamps - stamps[0] + 52_345.678
    path = tmp_path / "lsltime.csv"
    with open(path, "w") as out:
        out.write("timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker0\n")
        for t, row, m in zip(lsl, values, markers, strict=True):
            out.write(f"{t:.3f},{row[0]:.3f},{row[1]:.3f},{row[2]:.3f},{row[3]:.3f},0.000,{int(m)}\n")
    start = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    proc = replay(path, sandbox, tmp_path, "--start-time", "2024-05-01T10:00:00Z")
    assert proc.returncode == 0, proc.stderr
    _, samples, times, events = delivered(sandbox)
    np.testing.assert_allclose(samples, values, atol=5e-4)
    # The first sample's fitted time is anchored at --start-time; every time, and every marker,
    # is within twice the file's jitter (the first sample's own offset plus this one's; 0.5 ms
    # each) of where its raw stamp puts it, and times strictly increase.
    jitter = file_jitter_ms(lsl)
    expected_ms = start.timestamp() * 1000.0 + (lsl - lsl[0]) * 1000.0
    assert times[0] == pytest.approx(start.timestamp() * 1000.0, abs=1e-3)
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, expected_ms, atol=2.2 * jitter, rtol=0)
    rows = np.flatnonzero(markers != 0)
    np.testing.assert_allclose([e["time_ms"] for e in events], expected_ms[rows], atol=2.2 * jitter, rtol=0)


def test_lsl_clock_csv_without_start_time_takes_the_modification_time_with_a_warning(tmp_path, caplog):
    from collector.core.records import SourceEnded
    from collector.devices.recordings.source import RecordingSource

    path = tmp_path / "lsl.csv"
    rows = [f"{100.0 + i / 256:.3f},{i}.000,1.000,2.000,3.000,0.000" for i in range(512)]
    path.write_text("timestamps,TP9,AF7,AF8,TP10,Right AUX\n" + "\n".join(rows) + "\n")
    mtime = datetime(2024, 6, 1, 8, 30, tzinfo=timezone.utc).timestamp()
    os.utime(path, (mtime, mtime))
    with RecordingSource(path, chunk_s=10.0) as source:
        chunk = source.read(0.1)
        with pytest.raises(SourceEnded):
            source.read(0.1)
    assert "LSL-clock timestamps" in caplog.text and "--start-time" in caplog.text
    # The last sample sits at the file's modification time, to within twice the stamps' jitter
    # (1 ms rounding of %.3f: 0.5 ms for the first sample, which anchors, and 0.5 ms for the last).
    assert chunk.times_ms[-1] == pytest.approx(mtime * 1000.0, abs=1.0)
    assert np.all(np.diff(chunk.times_ms) > 0)
    assert len(chunk) == 512


# -- Mind Monitor CSV ----------------------------------------------------------------------------

MIND_MONITOR_COLUMNS = (
    ["TimeStamp"]
    + [f"{band}_{ch}" for band in ("Delta", "Theta", "Alpha", "Beta", "Gamma") for ch in EEG4]
    + [f"RAW_{ch}" for ch in EEG4]
    + ["AUX_RIGHT", "AUX_LEFT"]
    + [f"Accelerometer_{a}" for a in "XYZ"]
    + [f"Gyro_{a}" for a in "XYZ"]
    + ["HeadBandOn"]
    + [f"HSI_{ch}" for ch in EEG4]
    + ["Battery", "Elements"]
)


def make_mind_monitor_csv(path: Path, values: np.ndarray, start_local: datetime, nan_row: int):
    """A Mind Monitor recording (Recording Interval: Constant) as its columns are documented.

    Samples arrive in BLE packets of 12 and Mind Monitor stamps each row on arrival (1 ms
    resolution, local time), so stamps come in bursts ~47 ms apart. Element-only rows (connection,
    a marker, a blink) have every other field empty. Returns the sample rows' and events' truth.
    """
    rng = np.random.default_rng(7)
    n = values.shape[0]
    true_s = np.arange(n) / 256.0
    arrival = np.empty(n)
    for p in range(0, n, 12):
        last = min(n, p + 12) - 1
        arrival[p : last + 1] = true_s[last] + 0.020 + rng.uniform(0, 0.015) + np.arange(last + 1 - p) * 1e-4
    arrival = np.maximum.accumulate(arrival)
    elements = {0: "/muse/event/connected Muse-5257", n // 3: "/Marker/1", n // 2: "/muse/elements/blink"}

    def stamp(t: float) -> str:
        moment = start_local.timestamp() + t
        local = datetime.fromtimestamp(moment, tz=start_local.tzinfo)
        return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"

    event_truth = []
    with open(path, "w") as out:
        out.write(",".join(MIND_MONITOR_COLUMNS) + "\n")
        for i in range(n):
            if i in elements:
                t = arrival[i]
                out.write(stamp(t) + "," * (len(MIND_MONITOR_COLUMNS) - 2) + "," + elements[i] + "\n")
                # The stamp's Unix time: the moment, to the microsecond, cut to the millisecond.
                written_ms = round((start_local.timestamp() + t) * 1e6) // 1000
                event_truth.append((float(written_ms), elements[i]))
            bands = ",".join(f"{v:.6f}" for v in rng.uniform(-0.5, 1.5, 20))
            raw = "NaN,NaN,NaN,NaN" if i == nan_row else ",".join(f"{v:.3f}" for v in values[i])
            rest = "820.0,830.0,-0.64,0.07,0.75,-2.9,2.3,0.44,1,1.0,1.0,2.0,1.0,14.31"
            out.write(f"{stamp(arrival[i])},{bands},{raw},{rest},\n")
    return event_truth


def test_mind_monitor_csv_with_a_nan_row_and_a_marker(sandbox, tmp_path):
    _, values, _ = read_muse_csv(need(MUSE_CSV))
    values = values[: 256 * 40]
    tz = ZoneInfo("Europe/Paris")
    start_local = datetime(2024, 3, 9, 21, 15, 2, 250_000, tzinfo=tz)
    path = tmp_path / "mindMonitor_2024-03-09--21-15-02.csv"
    nan_row = 3000
    event_truth = make_mind_monitor_csv(path, values, start_local, nan_row)
    proc = replay(path, sandbox, tmp_path, "--log-format", "json", env_extra={"TZ": "Europe/Paris"})
    assert proc.returncode == 0, proc.stderr
    chunks, samples, times, events = delivered(sandbox)
    assert chunks[0]["device"]["channels"] == EEG4 and chunks[0]["device"]["sfreq"] == 256.0
    assert samples.shape == values.shape  # every row, the NaN row included
    assert np.isnan(samples[nan_row]).all()  # delivered as null, not dropped
    keep = np.arange(len(values)) != nan_row
    np.testing.assert_allclose(samples[keep], values[keep], atol=5e-4)
    # Dejittered sample times: even 256 Hz spacing, near the true sample times (arrival lag < 50 ms).
    steps = np.diff(times)
    assert np.all(steps > 0) and np.median(steps) == pytest.approx(1000 / 256, rel=1e-3)
    truth_ms = (start_local.timestamp() + np.arange(len(values)) / 256.0) * 1000.0
    assert np.all(np.abs(times - truth_ms) < 60.0)
    assert [e["value"] for e in events] == [v for _, v in event_truth]
    np.testing.assert_allclose([e["time_ms"] for e in events], [t for t, _ in event_truth], atol=2e-3, rtol=0)
    assert not any(c["gaps"] for c in chunks)
    # Its own band columns are in the log summary only.
    assert "band powers (mean log10" in proc.stderr and "Delta" not in json.dumps(chunks[0]["device"])


# -- EDF+ and BDF --------------------------------------------------------------------------------


def write_edf(path: Path, *, bdf: bool, eeg: np.ndarray, start: datetime):
    """An EDF+ or BDF+ file written by pyedflib (EDFlib): 4 EEG + EOG at 256 Hz, respiration at 32 Hz."""
    import pyedflib

    digital = (-8_388_608, 8_388_607) if bdf else (-32_768, 32_767)
    labels = ["EEG Fpz-Cz", "EEG Pz-Oz", "EEG C3", "EEG C4", "EOG horizontal"]
    writer = pyedflib.EdfWriter(
        str(path), 7 if bdf else 6, file_type=pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    )
    headers = [
        dict(
            label=lab,
            dimension="uV",
            sample_frequency=256,
            physical_min=-800.0,
            physical_max=800.0,
            digital_min=digital[0],
            digital_max=digital[1],
        )
        for lab in labels
    ]
    headers.append(
        dict(
            label="Resp oro-nasal",
            dimension="",
            sample_frequency=32,
            physical_min=-1.0,
            physical_max=1.0,
            digital_min=digital[0],
            digital_max=digital[1],
        )
    )
    n = eeg.shape[0]
    signals = [np.ascontiguousarray(eeg[:, i]) for i in range(4)]
    signals += [eeg[:, 0] * 0.5, np.sin(np.arange(n // 8) / 5.0)]
    if bdf:
        headers.append(
            dict(
                label="Status",
                dimension="Boolean",
                sample_frequency=256,
                physical_min=-8_388_608,
                physical_max=8_388_607,
                digital_min=digital[0],
                digital_max=digital[1],
            )
        )
        status = np.zeros(n)
        status[2560:2570] = 7  # trigger code 7 at 10 s
        signals.append(status)
    writer.setSignalHeaders(headers)
    writer.setStartdatetime(start.replace(tzinfo=None))
    writer.writeSamples(signals)
    writer.writeAnnotation(1.5, -1, "stim A")
    writer.writeAnnotation(7.25, 0.5, "stim B")
    writer.close()
    return 1600.0 / (digital[1] - digital[0])  # one digital step in µV


@pytest.mark.parametrize("bdf", [False, True], ids=["edf+", "bdf"])
def test_edf_and_bdf_replay_samples_annotations_and_meas_date(sandbox, tmp_path, bdf):
    rng = np.random.default_rng(3)
    seconds = 40
    eeg = (
        rng.normal(0, 25, (256 * seconds, 4))
        + 10 * np.sin(2 * np.pi * 10 * np.arange(256 * seconds) / 256)[:, None]
    )
    start = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
    path = tmp_path / ("rec.bdf" if bdf else "rec.edf")
    lsb = write_edf(path, bdf=bdf, eeg=eeg, start=start)
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks, samples, times, events = delivered(sandbox)
    assert chunks[0]["device"]["channels"] == ["Fpz-Cz", "Pz-Oz", "C3", "C4"]
    assert samples.shape == eeg.shape
    np.testing.assert_allclose(samples, eeg, atol=lsb + 1e-3)  # within one digital step
    expected_ms = start.timestamp() * 1000.0 + np.arange(len(eeg)) * 1000.0 / 256
    np.testing.assert_allclose(times, expected_ms, atol=2e-3, rtol=0)
    got = [(e["time_ms"] - start.timestamp() * 1000.0, e["value"]) for e in events]
    want = [(1500.0, "stim A"), (7250.0, "stim B")] + ([(10_000.0, "7")] if bdf else [])
    assert [v for _, v in sorted(got)] == [v for _, v in sorted(want)]
    np.testing.assert_allclose([t for t, _ in sorted(got)], [t for t, _ in sorted(want)], atol=2e-3)


@pytest.mark.parametrize("bdf", [False, True], ids=["edf", "bdf"])
@pytest.mark.parametrize(
    ("unit", "per_uv", "limit"),
    [("mV", 1e-3, 0.2), ("V", 1e-6, 0.0002), ("nV", 1e3, 200_000), ("uV", 1.0, 200)],
    ids=["mV", "V", "nV", "uV"],
)
def test_edf_and_bdf_physical_units_become_microvolts(tmp_path, bdf, unit, per_uv, limit):
    """A file written in each voltage unit (pyedflib: physical dimension `unit`, values and range in
    it) reads as the same µV: mV x 1000, V x 10^6, nV x 10^-3."""
    import pyedflib

    from collector.core.records import SourceEnded
    from collector.devices.recordings.source import RecordingSource

    rng = np.random.default_rng(9)
    n = 256 * 8
    truth_uv = rng.normal(0, 10, (n, 2)) + 20 * np.sin(2 * np.pi * 10 * np.arange(n) / 256)[:, None]
    digital = (-8_388_608, 8_388_607) if bdf else (-32_768, 32_767)
    path = tmp_path / f"{unit}.{'bdf' if bdf else 'edf'}"
    writer = pyedflib.EdfWriter(
        str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    )
    # ±200 µV in the file's unit (`limit` written as EDF's 8-character header field holds it)
    writer.setSignalHeaders(
        [
            dict(label=f"EEG {lab}", dimension=unit, sample_frequency=256, physical_min=-limit,
                 physical_max=limit, digital_min=digital[0], digital_max=digital[1])
            for lab in ("C3", "C4")
        ]
    )  # fmt: skip
    writer.writeSamples([np.ascontiguousarray(truth_uv[:, i] * per_uv) for i in range(2)])
    writer.close()
    with RecordingSource(path, chunk_s=60.0) as source:
        description = source.description
        chunks = []
        while True:
            try:
                chunk = source.read(0.1)
            except SourceEnded:
                break
            if chunk is not None:
                chunks.append(chunk)
    assert description.unit == "microvolts"
    got = np.concatenate([c.data for c in chunks])
    step_uv = 400.0 / (digital[1] - digital[0])  # one digital step, µV
    assert got.shape == truth_uv.shape
    np.testing.assert_allclose(got, truth_uv, atol=step_uv, rtol=0, err_msg=f"{unit} not read as µV")


def test_edf_stream_picks_named_channels(sandbox, tmp_path):
    rng = np.random.default_rng(4)
    eeg = rng.normal(0, 25, (256 * 20, 4))
    path = tmp_path / "pick.edf"
    lsb = write_edf(path, bdf=False, eeg=eeg, start=datetime(2024, 5, 1, 10, tzinfo=timezone.utc))
    proc = replay(path, sandbox, tmp_path, "--stream", "Pz-Oz,C4")
    assert proc.returncode == 0, proc.stderr
    chunks, samples, _, _ = delivered(sandbox)
    assert chunks[0]["device"]["channels"] == ["Pz-Oz", "C4"]
    np.testing.assert_allclose(samples, eeg[:, [1, 3]], atol=lsb + 1e-3)


# -- bad files -----------------------------------------------------------------------------------


def test_truncated_and_empty_csv_files_get_one_line_and_exit_2(sandbox, tmp_path):
    text = need(MUSE_CSV).read_text()
    lines = text.splitlines()
    cases = {
        "truncated.csv": (text[: len(text) // 2 + 7], "truncated"),  # cut in the middle of a row
        "header-only.csv": (lines[0] + "\n", "no rows"),
    }
    for name, (content, expect) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        line = one_line_exit_2(replay(path, sandbox, tmp_path))
        assert expect in line, line
    assert sandbox.evidence(sandbox.workspace_id) == []


def test_csv_whose_timestamps_go_backwards_is_replayed_in_order_and_says_so(sandbox, tmp_path):
    """Two rows with their stamps swapped (time goes back 4 ms at one row): the reader names the
    row; on a stream whose stamps jitter by 1 ms rounding, one period back is within what the
    clock fit tells from a bad stamp (max(0.75 period, 3 J)), so it is jitter: every row delivered
    once, in file order, at strictly increasing times, each within the file's jitter of its stamp
    (the swapped two within a period of theirs), and no gap."""
    lines = need(MUSE_CSV).read_text().splitlines()
    rows = lines[1:2001]
    first, second = rows[100].split(","), rows[101].split(",")
    first[0], second[0] = second[0], first[0]
    rows[100], rows[101] = ",".join(first), ",".join(second)
    path = tmp_path / "backwards.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "go backwards at data row 102" in proc.stderr
    chunks, samples, times, _ = delivered(sandbox)
    expected = np.array([[float(v) for v in row.split(",")[1:5]] for row in rows])
    np.testing.assert_allclose(samples, expected, atol=5e-4)  # every row, in file order
    assert np.all(np.diff(times) > 0)
    assert [g for c in chunks for g in c["gaps"]] == []
    stamps = np.array([float(row.split(",")[0]) for row in rows])
    others = ~np.isin(np.arange(len(rows)), [100, 101])
    jitter = file_jitter_ms(stamps[others])
    np.testing.assert_allclose(times[others], stamps[others] * 1000.0, atol=2.2 * jitter, rtol=0)
    assert stamps[99] * 1000 < times[100] < times[101] < stamps[102] * 1000  # between their neighbours


@pytest.mark.parametrize(
    "name,content",
    [
        ("notes.txt", b"just some notes\nnothing to replay\n"),
        ("other.csv", b"time,value\n1,2\n"),
        ("blob.edf", b"\x00\x01binary" * 40),
        ("fake.xdf", b"not an xdf file at all\n" * 10),
        ("empty.csv", b""),
        ("cut.edf", None),
    ],
)
def test_files_that_are_none_of_the_formats_name_the_formats_accepted(tmp_path, name, content):
    from collector.devices.recordings.source import RecordingSource
    from collector.errors import UsageError

    path = tmp_path / name
    if content is None:  # a real EDF header, cut short
        write_edf(tmp_path / "full.edf", bdf=False, eeg=np.zeros((2560, 4)), start=datetime(2024, 5, 1))
        content = (tmp_path / "full.edf").read_bytes()[:1000]
    path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        RecordingSource(path).open()
    message = str(info.value)
    assert "\n" not in message
    if content.startswith(b"0       "):
        assert "corrupt or truncated" in message
    else:
        assert "muselsl CSV, Mind Monitor CSV, EDF, EDF+ or BDF" in message


def test_unknown_file_via_cli_is_one_line_exit_2(sandbox, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a recording\n")
    line = one_line_exit_2(replay(path, sandbox, tmp_path))
    assert "XDF" in line and "muselsl CSV" in line and "EDF" in line


# -- --to-lsl ------------------------------------------------------------------------------------


@pytest.mark.lsl
@pytest.mark.parametrize("fmt", ["muselsl", "mindmonitor", "edf"])
def test_to_lsl_plays_csv_and_edf_files(tmp_path, fmt):
    from collector.devices.lsl.source import LslSource

    if fmt == "muselsl":
        path = need(MUSE_CSV)
        channels, sfreq = ("TP9", "AF7", "AF8", "TP10"), 256.0
    elif fmt == "mindmonitor":
        path = tmp_path / "play-mind-monitor.csv"
        _, values, _ = read_muse_csv(need(MUSE_CSV))
        make_mind_monitor_csv(path, values[: 256 * 20], datetime(2024, 3, 9, 21, tzinfo=timezone.utc), 100)
        channels, sfreq = ("TP9", "AF7", "AF8", "TP10"), 256.0
    else:
        path = tmp_path / "play.edf"
        write_edf(
            path,
            bdf=False,
            eeg=np.random.default_rng(1).normal(0, 20, (256 * 20, 4)),
            start=datetime(2024, 5, 1),
        )
        channels, sfreq = ("Fpz-Cz", "Pz-Oz", "C3", "C4"), 256.0
    name = f"fmt-tolsl-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "replay",
            str(path),
            "--to-lsl",
            "--stream-name",
            name,
            "--speed",
            "2",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with LslSource(stream_name=name, resolve_timeout_s=15.0) as source:
            description = source.description
            got = 0
            deadline = time.monotonic() + 20
            while got < 512 and time.monotonic() < deadline:
                chunk = source.read(timeout=0.5)
                got += len(chunk) if chunk is not None else 0
        assert description.channels == channels and description.sfreq == sfreq
        assert got >= 512
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_devices_command_lists_the_replay_formats(capsys):
    from collector.cli import main

    # Exit 0 or 5 (no headset nor stream here): the formats are listed either way.
    assert main(["devices", "--no-bluetooth", "--timeout", "0.2"]) in (0, 5)
    text = capsys.readouterr().out
    assert "Recordings `collector replay FILE` reads" in text
    for name in ("XDF", "muselsl CSV", "Mind Monitor CSV", "EDF / EDF+", "BDF"):
        assert name in text
    assert main(["devices", "--no-bluetooth", "--json", "--timeout", "0.2"]) in (0, 5)
    formats = [f["format"] for f in json.loads(capsys.readouterr().out)["replay_formats"]]
    assert formats == ["xdf", "muselsl-csv", "mindmonitor-csv", "edf", "bdf"]


# -- readers, detection and rate (pure logic on real files written here) -------------------------


@pytest.mark.parametrize("bdf", [False, True], ids=["edf", "bdf"])
def test_edf_and_bdf_cut_short_are_refused_unless_not_strict(tmp_path, bdf, caplog):
    from collector.devices.recordings.detect import load_recording
    from collector.errors import UsageError

    full = tmp_path / ("full.bdf" if bdf else "full.edf")
    write_edf(full, bdf=bdf, eeg=np.zeros((256 * 20, 4)), start=datetime(2024, 5, 1))
    cut = tmp_path / ("cut.bdf" if bdf else "cut.edf")
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with pytest.raises(UsageError, match="corrupt or truncated") as info:
        load_recording(cut)
    assert "\n" not in str(info.value)
    partial = load_recording(cut, strict=False)
    eeg = next(s for s in partial.streams if s.name == "EEG")
    assert 0 < eeg.sample_count < 256 * 20 and eeg.sample_count % 256 == 0  # whole 1 s data records
    assert "damaged" in caplog.text


def test_format_is_recognised_from_content_not_the_name(tmp_path):
    from collector.devices.recordings.detect import detect_format

    edf = tmp_path / "recording.dat"
    write_edf(edf, bdf=False, eeg=np.zeros((2560, 4)), start=datetime(2024, 5, 1))
    bdf = tmp_path / "recording.edf"  # a BDF misnamed .edf
    write_edf(bdf, bdf=True, eeg=np.zeros((2560, 4)), start=datetime(2024, 5, 1))
    muse = tmp_path / "session.txt"
    muse.write_text("timestamps,TP9,AF7,AF8,TP10,Right AUX\n1700000000.000,1,2,3,4,5\n")
    mind = tmp_path / "export"
    mind.write_text("TimeStamp,RAW_TP9,RAW_AF7,Elements\n2024-01-01 10:00:00.000,800,810,\n")
    assert [detect_format(p) for p in (edf, bdf, muse, mind)] == [
        "edf",
        "bdf",
        "muselsl-csv",
        "mindmonitor-csv",
    ]
    packaged_xdf = Path(__file__).resolve().parents[2] / "collector" / "data" / "muse-p300-subject1.xdf"
    assert detect_format(packaged_xdf) == "xdf"


def test_muselsl_string_markers_in_several_columns(tmp_path):
    from collector.devices.recordings.detect import load_recording
    from collector.devices.recordings.model import pick_eeg_stream, recording_markers

    path = tmp_path / "markers.csv"
    rows = ["timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker0,Marker1"]
    for i in range(600):
        m0, m1 = ("stim", "left") if i == 100 else ("0", "0")
        m0 = "7.000" if i == 300 else m0
        rows.append(f"{1_700_000_000 + i / 256:.3f},1.000,2.000,3.000,4.000,0.000,{m0},{m1}")
    path.write_text("\n".join(rows) + "\n")
    recording = load_recording(path)
    eeg = pick_eeg_stream(recording)
    times, values = recording_markers(recording, eeg)
    assert values == ["stim,left", "7,0"]
    np.testing.assert_array_equal(times, [eeg.times_s[100], eeg.times_s[300]])
    assert eeg.sfreq == 256.0 and eeg.labels[-1] == "Right AUX"


def test_muselsl_motion_csv_has_no_eeg_and_says_how_to_pick_it(tmp_path):
    from collector.devices.recordings.source import RecordingSource
    from collector.errors import UsageError

    path = tmp_path / "ACC_recording.csv"
    path.write_text(
        "timestamps,X,Y,Z\n"
        + "\n".join(f"{1_700_000_000 + i / 52:.3f},0.1,0.2,0.9" for i in range(200))
        + "\n"
    )
    with pytest.raises(UsageError, match="no EEG stream") as info:
        RecordingSource(path).open()
    assert "--stream" in str(info.value)
    with RecordingSource(path, stream="Muse", chunk_s=10.0) as source:
        assert source.description.channels == ("X", "Y", "Z")


def test_mind_monitor_without_raw_eeg_is_refused(tmp_path):
    from collector.devices.recordings.detect import load_recording
    from collector.errors import UsageError

    path = tmp_path / "bands_only.csv"
    header = ",".join(MIND_MONITOR_COLUMNS)
    empty = "," * (len(MIND_MONITOR_COLUMNS) - 1)
    path.write_text(header + "\n" + f"2024-01-01 10:00:00.000{empty[:-1]},/muse/event/connected Muse-1\n")
    with pytest.raises(UsageError, match="no raw EEG samples"):
        load_recording(path)


def test_rate_from_timestamps_ignores_holes_and_packet_bursts():
    from collector.devices.recordings.csv_table import rate_from_timestamps

    regular = np.round(1_700_000_000 + np.arange(256 * 60) / 256, 3)
    with_hole = np.concatenate([regular[:5000], regular[5000:] + 2.0])  # a 2 s outage
    rate, measured, segments = rate_from_timestamps(with_hole)
    assert rate == 256.0 and measured == pytest.approx(256.0, rel=1e-4) and len(segments) == 2
    # Stamps per 12-sample BLE packet on arrival: bursts 47 ms apart are not holes.
    k = np.arange(256 * 60)
    bursts = 1_700_000_000 + ((k // 12) * 12 + 11) / 256 + (k % 12) * 1e-4
    rate, measured, segments = rate_from_timestamps(bursts, 0.5)
    assert rate == 256.0 and len(segments) == 1
    odd = 1_700_000_000 + np.arange(1000) / 173.0  # not a standard rate: kept as measured
    assert rate_from_timestamps(odd)[0] == pytest.approx(173.0, rel=1e-6)


def test_collector_export_files_replay_to_the_same_samples(sandbox_factory, tmp_path):
    """replay muselsl CSV -> `collector export` as CSV and EDF+ -> replay each: the same samples."""
    src = need(MUSE_CSV)
    stamps, values, markers = read_muse_csv(src)
    first = sandbox_factory()
    spool = tmp_path / "spool"
    assert replay(src, first, tmp_path).returncode == 0
    _, _, first_times, _ = delivered(first)
    jitter = file_jitter_ms(stamps)  # 0.50 ms: muselsl's 1 ms rounding
    exported = {}
    for fmt in ("csv", "edf"):
        out = tmp_path / f"export.{fmt}"
        done = run_collector(["export", "--last", "--format", fmt, "--out", str(out), "--spool", str(spool)])
        assert done.returncode == 0, done.stderr
        exported[fmt] = out
    rows = np.flatnonzero(markers != 0)
    for fmt, path in exported.items():
        again = sandbox_factory()
        proc = replay(path, again, tmp_path / fmt)
        assert proc.returncode == 0, proc.stderr
        _, samples, times, events = delivered(again)
        assert samples.shape == values.shape
        assert np.all(np.diff(times) > 0)
        if fmt == "csv":  # µs stamps (the first replay's fitted times), 0.001 µV values
            np.testing.assert_allclose(samples, values, atol=5e-4)  # the original exactly
            # Fitted again: the times the first replay delivered, to well within the jitter.
            np.testing.assert_allclose(times, first_times, atol=0.1 * jitter, rtol=0)
            np.testing.assert_allclose(times, stamps * 1000.0, atol=2.2 * jitter, rtol=0)
        else:  # 16-bit values on each channel's own range; samples on the 256 Hz grid from the start
            lsb = (values.max(axis=0) - np.minimum(values.min(axis=0), 0)) / 65535
            assert np.all(np.abs(samples - values) <= lsb + 1e-3)
            np.testing.assert_allclose(
                times, first_times[0] + np.arange(len(stamps)) * 1000 / 256, atol=2.2 * jitter
            )
        assert [e["value"] for e in events] == [str(int(v)) for v in markers[rows]]
        np.testing.assert_allclose(
            [e["time_ms"] for e in events], stamps[rows] * 1000.0, atol=2.2 * jitter, rtol=0
        )


def test_edf_stretches_marked_not_acquired_are_gaps_not_samples(tmp_path):
    from edfio import Edf, EdfAnnotation, EdfSignal

    from collector.core.records import SourceEnded
    from collector.devices.recordings.source import RecordingSource

    data = np.random.default_rng(2).normal(0, 20, 256 * 10)
    data[256 * 4 : 256 * 6] = 0.0  # 2 s not acquired, written as zeros
    edf = Edf(
        [EdfSignal(data, 256, label="EEG Cz", physical_dimension="uV", physical_range=(-200, 200))],
        starttime=datetime(2024, 5, 1, 10).time(),
        annotations=[EdfAnnotation(4.0, 2.0, "BAD_ACQ_SKIP"), EdfAnnotation(7.0, None, "go")],
    )
    path = tmp_path / "skip.edf"
    edf.write(path)
    with RecordingSource(path, chunk_s=20.0) as source:
        chunks = []
        while True:
            try:
                chunk = source.read(0.1)
            except SourceEnded:
                break
            if chunk is not None:
                chunks.append(chunk)
    got = np.concatenate([c.data[:, 0] for c in chunks])
    assert got.shape == (256 * 8,)  # the 512 zeros are not samples
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1 and gaps[0].end_ms - gaps[0].start_ms == pytest.approx(2000 + 1000 / 256, abs=1e-3)
    assert [e.value for c in chunks for e in c.events] == ["go"]


def test_mind_monitor_local_times_across_a_daylight_saving_change(tmp_path, monkeypatch):
    """Paris clocks go back at 03:00 CEST on 2024-10-27: the rows' local times repeat 02:00-03:00,
    and the reader still puts every sample and event at its Unix time."""
    from collector.devices.recordings.detect import load_recording
    from collector.devices.recordings.model import pick_eeg_stream, recording_markers

    monkeypatch.setenv("TZ", "Europe/Paris")
    values = np.random.default_rng(5).normal(0, 20, (256 * 40, 4))
    start_local = datetime(2024, 10, 27, 2, 59, 40, tzinfo=ZoneInfo("Europe/Paris"), fold=0)  # CEST
    path = tmp_path / "dst.csv"
    event_truth = make_mind_monitor_csv(path, values, start_local, nan_row=5)
    recording = load_recording(path)
    eeg = pick_eeg_stream(recording)
    truth_s = start_local.timestamp() + np.arange(len(values)) / 256.0
    assert np.all(np.abs(eeg.times_s - truth_s) < 0.06)  # one line through 40 s: no hour jump
    times, values_seen = recording_markers(recording, eeg)
    assert values_seen == [v for _, v in event_truth]
    np.testing.assert_allclose(times * 1000.0, [t for t, _ in event_truth], atol=2e-3)


def test_stream_by_channel_labels_needs_one_rate_and_known_labels(tmp_path):
    from collector.devices.recordings.source import RecordingSource
    from collector.errors import UsageError

    path = tmp_path / "mixed.edf"
    write_edf(path, bdf=False, eeg=np.zeros((256 * 10, 4)), start=datetime(2024, 5, 1))
    with pytest.raises(UsageError, match="different rates") as info:
        RecordingSource(path, stream="Fpz-Cz,Resp oro-nasal").open()
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="Resp oro-nasal") as info:  # the listing names the streams
        RecordingSource(path, stream="Fpz-Cz,Oz").open()
    with RecordingSource(path, stream="EOG horizontal", chunk_s=20.0) as source:  # a signal's own stream
        assert source.description.channels == ("EOG horizontal",)


def test_mind_monitor_one_row_per_second_as_its_public_exports_are(tmp_path, caplog, monkeypatch):
    """Recording Interval 1 s: one row a second, data rows without the trailing `Elements` field
    (Mind Monitor writes it only on element rows), the last line without a newline."""
    from collector.core.records import SourceEnded
    from collector.devices.recordings.source import RecordingSource

    monkeypatch.setenv("TZ", "UTC")
    columns = [c for c in MIND_MONITOR_COLUMNS if c != "AUX_LEFT"]
    start = datetime(2023, 1, 11, 22, 3, 37, 564_000, tzinfo=timezone.utc)
    lines = [
        ",".join(columns),
        "2023-01-11 22:03:37.564" + "," * (len(columns) - 1) + "/muse/event/connected Muse-5257",
    ]
    raw = np.random.default_rng(9).uniform(700, 1000, (120, 4))
    for i in range(120):
        when = start.timestamp() + 0.066 + i * 1.015 + (i % 3) * 0.004
        stamp = datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        bands = ",".join("0.5" for _ in range(20))
        values = ",".join(f"{v:.4f}" for v in raw[i])
        lines.append(f"{stamp},{bands},{values},777.1,-0.64,0.07,0.75,-2.9,2.3,0.44,1,1.0,1.0,1.0,1.0,14.31")
        if i in (30, 90):
            lines.append(f"{stamp}" + "," * (len(columns) - 1) + "/muse/elements/blink")
    path = tmp_path / "mindMonitor_2023-01-11--22-03-37.csv"
    path.write_text("\n".join(lines))  # no newline after the last row, as an editor may leave it
    with RecordingSource(path, chunk_s=60.0) as source:
        assert source.description.sfreq == pytest.approx(1 / 1.015, rel=1e-3)
        chunks = []
        while True:
            try:
                chunk = source.read(0.1)
            except SourceEnded:
                break
            if chunk is not None:
                chunks.append(chunk)
    np.testing.assert_allclose(np.concatenate([c.data for c in chunks]), raw, atol=1e-9)
    events = [e.value for c in chunks for e in c.events]
    assert events == ["/muse/event/connected Muse-5257", "/muse/elements/blink", "/muse/elements/blink"]
    assert "Recording Interval: Constant" in caplog.text  # says why there are no band powers


def test_edf_written_by_edflib_reads_as_pyedflib_reads_it():
    """pyedflib's own test file (EDFlib's generator: 11 signals at 200 Hz, 600 s, two annotations),
    read by our reader (edfio) and by pyedflib (EDFlib, C): the same values, times and events."""
    import pyedflib
    import pyedflib.data

    from collector.core.records import SourceEnded
    from collector.devices.recordings.source import RecordingSource

    path = Path(pyedflib.data.__file__).parent / "test_generator.edf"
    need(path)
    with pyedflib.EdfReader(str(path)) as reader:
        labels = reader.getSignalLabels()
        truth = {label: reader.readSignal(i) for i, label in enumerate(labels)}
        onsets, _, texts = reader.readAnnotations()
        start = reader.getStartdatetime().replace(tzinfo=timezone.utc)
    with RecordingSource(path, chunk_s=60.0) as source:
        channels = source.description.channels
        chunks = []
        while True:
            try:
                chunk = source.read(0.1)
            except SourceEnded:
                break
            if chunk is not None:
                chunks.append(chunk)
    assert channels == tuple(label for label in labels if label != "pulse")  # "pulse": its own stream
    data = np.concatenate([c.data for c in chunks])
    np.testing.assert_allclose(data, np.column_stack([truth[c] for c in channels]), atol=1e-9)
    times = np.concatenate([c.times_ms for c in chunks])
    np.testing.assert_allclose(times, start.timestamp() * 1000 + np.arange(len(data)) * 5.0, atol=1e-3)
    events = [(e.time_ms, e.value) for c in chunks for e in c.events]
    assert [v for _, v in events] == list(texts)
    np.testing.assert_allclose([t for t, _ in events], start.timestamp() * 1000 + onsets * 1000, atol=1e-3)
