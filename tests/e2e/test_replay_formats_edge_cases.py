"""Review of issue 12 (replay of muselsl/Mind Monitor CSV and EDF/BDF), as a new user met it:
CSVs in other dialects, timestamps that run backwards throughout, a one-row file, unknown channel
labels in `--stream`, a naive `--start-time`, a directory, help texts and small wording.

Through the real `python -m collector replay ... --speed max` against the sandbox where the
finding came from the command; reader-level where it is parsing alone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from test_replay_formats import (
    EEG4,
    MUSE_CSV,
    delivered,
    file_jitter_ms,
    make_mind_monitor_csv,
    need,
    one_line_exit_2,
    read_muse_csv,
    replay,
    run_collector,
    write_edf,
)

pytestmark = [pytest.mark.slow]
FIELD_CASES = (
    Path(__file__).resolve().parents[1] / "data" / "field-cases"
)  # copies of ../shared/data/field-cases
ROWS = 2560  # 10 s of the real muselsl recording


def muse_rows() -> tuple[str, list[str]]:
    lines = need(MUSE_CSV).read_text().splitlines()
    return lines[0], lines[1 : ROWS + 1]


def rewrite(header: str, rows: list[str], sep: str, decimal: str = ".") -> str:
    def cell(value: str) -> str:
        return value.replace(".", decimal)

    return "\n".join(sep.join(cell(v) for v in line.split(",")) for line in [header, *rows]) + "\n"


# -- 1. other CSV dialects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,sep,decimal", [("semi.csv", ";", "."), ("euro.csv", ";", ","), ("tab.csv", "\t", ".")]
)
def test_muselsl_csv_with_semicolons_tabs_or_decimal_commas_replays_like_the_comma_file(
    sandbox, tmp_path, name, sep, decimal
):
    header, rows = muse_rows()
    path = tmp_path / name
    path.write_text(rewrite(header, rows, sep, decimal))
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "KeyError" not in proc.stderr
    chunks, samples, times, events = delivered(sandbox)
    stamps = np.array([float(r.split(",")[0]) for r in rows])
    values = np.array([[float(v) for v in r.split(",")[1:5]] for r in rows])
    assert chunks[0]["device"]["channels"] == EEG4 and chunks[0]["device"]["sfreq"] == 256.0
    np.testing.assert_allclose(samples, values, atol=5e-4)
    # As the comma file: the fitted clock, within twice the file's jitter (1 ms rounding) of the stamps.
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, stamps * 1000.0, atol=2.2 * file_jitter_ms(stamps), rtol=0)
    assert len(events) == sum(1 for r in rows if r.split(",")[-1] not in ("0", "0.0"))


def test_mind_monitor_csv_with_semicolons_replays(sandbox, tmp_path):
    _, values, _ = read_muse_csv(need(MUSE_CSV))
    values = values[:ROWS]
    start = datetime(2025, 3, 4, 10, 20, 30, tzinfo=ZoneInfo("Europe/Paris"))
    comma = tmp_path / "mm.csv"
    make_mind_monitor_csv(comma, values, start, nan_row=100)
    path = tmp_path / "mm_semi.csv"
    path.write_text(comma.read_text().replace(",", ";"))
    proc = replay(path, sandbox, tmp_path, env_extra={"TZ": "Europe/Paris"})
    assert proc.returncode == 0, proc.stderr
    chunks, samples, _, events = delivered(sandbox)
    assert chunks[0]["device"]["channels"] == EEG4 and samples.shape == values.shape
    keep = np.arange(len(values)) != 100
    np.testing.assert_allclose(samples[keep], values[keep], atol=5e-4)
    assert [e["value"] for e in events][:2] == ["/muse/event/connected Muse-5257", "/Marker/1"]


# -- 2. timestamps that run backwards throughout ------------------------------------------------


def test_csv_in_reverse_row_order_is_refused_in_one_line(sandbox, tmp_path):
    header, rows = muse_rows()
    path = tmp_path / "allback.csv"
    path.write_text("\n".join([header, *reversed(rows)]) + "\n")
    line = one_line_exit_2(replay(path, sandbox, tmp_path))
    assert "run backwards at 2559 of 2559 steps" in line and "reverse order" in line, line
    assert "Sort the rows by time" in line and "nominal_srate" not in line
    assert sandbox.evidence(sandbox.workspace_id) == []


def test_csv_whose_rows_are_shuffled_is_refused_by_the_reader(tmp_path):
    from collector.devices.recordings.detect import load_recording
    from collector.errors import UsageError

    header, rows = muse_rows()
    order = np.random.default_rng(3).permutation(len(rows))
    path = tmp_path / "shuffled.csv"
    path.write_text("\n".join([header, *(rows[i] for i in order)]) + "\n")
    with pytest.raises(UsageError) as info:
        load_recording(path)
    assert "run backwards" in str(info.value) and "out of time order" in str(info.value)


# -- 3. too few rows to measure a rate ----------------------------------------------------------


def test_one_row_csv_says_so_in_one_line_before_capture(sandbox, tmp_path):
    header, rows = muse_rows()
    path = tmp_path / "onerow.csv"
    path.write_text(f"{header}\n{rows[0]}\n")
    line = one_line_exit_2(replay(path, sandbox, tmp_path))
    assert "has 1 sample row:" in line and "at least 2 are needed" in line, line
    assert "--stream-name" not in line


def test_csv_whose_stamps_never_advance_is_refused(tmp_path):
    from collector.devices.recordings.detect import load_recording
    from collector.errors import UsageError

    header, rows = muse_rows()
    same = [rows[0].split(",")[0] + "," + ",".join(r.split(",")[1:]) for r in rows[:50]]
    path = tmp_path / "still.csv"
    path.write_text("\n".join([header, *same]) + "\n")
    with pytest.raises(UsageError, match="do not advance"):
        load_recording(path)


# -- 4. --stream with an unknown channel label --------------------------------------------------


def test_stream_with_an_unknown_label_names_it_and_lists_the_channels(sandbox, tmp_path):
    path = tmp_path / "a.edf"
    write_edf(path, bdf=False, eeg=np.zeros((256 * 4, 4)), start=datetime(2024, 5, 1, tzinfo=timezone.utc))
    proc = replay(path, sandbox, tmp_path, "--stream", "Fpz-Cz,nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "no channel labelled 'nope'" in last and "Fpz-Cz, Pz-Oz, C3, C4" in last, last
    assert "numeric stream" not in proc.stderr
    _, values, _ = read_muse_csv(need(MUSE_CSV))
    mm = tmp_path / "mm.csv"
    make_mind_monitor_csv(mm, values[:ROWS], datetime(2025, 3, 4, 10, tzinfo=timezone.utc), nan_row=5)
    proc = replay(mm, sandbox, tmp_path, "--stream", "TP9,XX", env_extra={"TZ": "UTC"})
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "no channel labelled 'XX'" in last and "TP9, AF7, AF8, TP10" in last, last
    assert "numeric stream" not in proc.stderr


# -- 5. a --start-time without an offset --------------------------------------------------------


def test_naive_start_time_is_local_time_and_the_log_says_the_utc_instant(sandbox, tmp_path):
    header, rows = muse_rows()
    path = tmp_path / "short.csv"
    path.write_text("\n".join([header, *rows[:1024]]) + "\n")
    proc = replay(
        path, sandbox, tmp_path, "--start-time", "2026-02-03T04:05:06", env_extra={"TZ": "Europe/Berlin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "anchored at 2026-02-03T03:05:06.000 UTC (no offset given: read as this machine's local time" in (
        proc.stderr
    )
    chunks, _, times, _ = delivered(sandbox)
    anchor_ms = datetime(2026, 2, 3, 3, 5, 6, tzinfo=timezone.utc).timestamp() * 1000
    assert times[0] == pytest.approx(anchor_ms, abs=1.0)
    helped = run_collector(["replay", "--help"], env_extra={"COLUMNS": "200"})
    assert "without an offset (Z, +01:00) is this machine's local time" in " ".join(helped.stdout.split())


# -- 6. the Mind Monitor rate in the log is the one used ----------------------------------------


def test_mind_monitor_log_gives_the_rate_the_chunks_carry(sandbox, tmp_path):
    import re

    _, values, _ = read_muse_csv(need(MUSE_CSV))
    path = tmp_path / "mm.csv"
    make_mind_monitor_csv(path, values[: ROWS * 2], datetime(2025, 3, 4, 10, tzinfo=timezone.utc), nan_row=7)
    proc = replay(path, sandbox, tmp_path, env_extra={"TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    logged = float(re.search(r"measured ([0-9.]+) Hz over the dejittered sample times", proc.stderr).group(1))
    chunks, _, _, _ = delivered(sandbox)
    assert logged == pytest.approx(chunks[0]["device"]["measured_sfreq"], abs=1e-3)
    assert "from the raw packet stamps" in proc.stderr


# -- 7. a directory -----------------------------------------------------------------------------


def test_a_directory_is_said_to_be_a_directory(sandbox, tmp_path):
    folder = tmp_path / "adir.csv"
    folder.mkdir()
    line = one_line_exit_2(replay(folder, sandbox, tmp_path))
    assert "is a directory, not a recording file" in line and "not found" not in line, line


# -- 8. help texts ------------------------------------------------------------------------------


def test_help_texts_say_devices_lists_the_replay_formats():
    top = " ".join(run_collector(["--help"], env_extra={"COLUMNS": "200"}).stdout.split())
    assert "list Muse headsets, visible LSL streams and the recording formats `replay` reads" in top
    devices = " ".join(run_collector(["devices", "--help"], env_extra={"COLUMNS": "200"}).stdout.split())
    assert "the recording formats `collector replay` reads" in devices


# -- 9. small things ----------------------------------------------------------------------------


def test_exported_edf_channels_in_a_csv_replay_as_eeg_not_muse(sandbox, tmp_path):
    header, rows = muse_rows()
    path = tmp_path / "export.csv"
    path.write_text(
        "timestamps,Fpz-Cz\n" + "\n".join(f"{r.split(',')[0]},{r.split(',')[1]}" for r in rows[:1024]) + "\n"
    )
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks, _, _, _ = delivered(sandbox)
    assert chunks[0]["device"]["name"] == "EEG" and chunks[0]["device"]["channels"] == ["Fpz-Cz"]
    assert "1 channel (Fpz-Cz)" in proc.stderr and "1 channels" not in proc.stderr


def test_inf_is_missing_and_absurd_values_are_kept_warned_and_flagged(sandbox, tmp_path):
    header, rows = muse_rows()
    cells = [r.split(",") for r in rows]
    cells[300][1] = "inf"
    cells[600][2] = "1e300"
    path = tmp_path / "odd.csv"
    path.write_text("\n".join([header, *(",".join(c) for c in cells)]) + "\n")
    proc = replay(path, sandbox, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 missing channel value(s) (empty, NaN or ±inf)" in proc.stderr
    assert "1 channel value(s) beyond ±1e+06 µV" in proc.stderr
    chunks, samples, _, _ = delivered(sandbox)
    assert np.isnan(samples[300, 0]) and samples[600, 1] == 1e300
    flagged = [
        w["end_ms"]
        for c in chunks
        for w in c["windows"]
        if w["quality"]["channels"]["AF7"]["excessive_amplitude"]
    ]
    assert flagged


def test_edf_header_errors_name_the_field_in_plain_words(sandbox, tmp_path):
    path = tmp_path / "badhdr.edf"
    write_edf(path, bdf=False, eeg=np.zeros((256 * 4, 4)), start=datetime(2024, 5, 1, tzinfo=timezone.utc))
    raw = bytearray(path.read_bytes())
    raw[236:244] = b"abcd    "
    path.write_bytes(bytes(raw))
    line = one_line_exit_2(replay(path, sandbox, tmp_path))
    assert "the header's number of data records is 'abcd', not a whole number" in line, line
    assert "ValueError" not in line and "int()" not in line


def test_stream_with_one_unknown_name_in_a_csv_says_stream_or_channel(tmp_path):
    from collector.devices.recordings.detect import load_recording
    from collector.errors import UsageError

    header, rows = muse_rows()
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows[:512]]) + "\n")
    with pytest.raises(UsageError) as info:
        load_recording(path, stream="bogus")
    assert "has no stream or channel named 'bogus'" in str(info.value)
    assert "Its channels: TP9, AF7, AF8, TP10, Right AUX; its streams: 'Muse'" in str(info.value)


# -- gzip-compressed CSV --------------------------------------------------------------------------


def _spooled_artifacts(spool) -> list[dict]:
    """The spooled EEG chunks' artifacts, in order, without the fields that name the capture."""
    import json
    import sqlite3

    with sqlite3.connect(spool / "spool.db") as con:
        rows = con.execute(
            "SELECT b.data FROM items i JOIN blobs b ON b.item_id = i.id WHERE i.type = 'eeg' ORDER BY i.id"
        ).fetchall()
    out = []
    for (data,) in rows:
        art = json.loads(data)
        if art.get("format") == "openlesson-collector.eeg-chunk":
            art["device"].pop("source_id")  # names the file: muse.csv or muse.csv.gz
            out.append({k: v for k, v in art.items() if k not in ("capture_id", "stream_id")})
    return out


def _offline_replay(path, spool, *extra: str):
    return run_collector(
        ["replay", str(path), "--workspace", "c82a0691-efc8-4d81-8ddd-f4e4c5050b30", "--speed", "max",
         "--offline", "--spool", str(spool), *extra],
        env_extra={"TZ": "Europe/Berlin"},
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["mind-monitor", "muselsl"])
def test_a_gzipped_csv_replays_exactly_like_the_csv(tmp_path, kind):
    """A CSV saved as .csv.gz (the Mind Monitor field case comes so) is read through gzip: the same
    chunks as the plain file, to the byte; it used to be taken for a compressed XDF and refused."""
    import gzip
    import shutil

    if kind == "mind-monitor":
        gz = FIELD_CASES / "mindmonitor_muse2016.csv.gz"
        plain = tmp_path / "mm.csv"
        with gzip.open(gz, "rb") as fin, open(plain, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        header, rows = muse_rows()
        plain = tmp_path / "muse.csv"
        plain.write_text("\n".join([header, *rows]) + "\n")
        gz = tmp_path / "muse.csv.gz"
        with open(plain, "rb") as fin, gzip.open(gz, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    results = []
    for path, name in ((plain, "plain"), (gz, "gz")):
        proc = _offline_replay(path, tmp_path / name, "--start-time", "2026-01-01T10:00:00Z")
        assert proc.returncode in (0, 6), proc.stderr  # 6: items left in the spool (--offline)
        results.append(_spooled_artifacts(tmp_path / name))
    assert results[0] and results[0] == results[1]


def test_a_truncated_gzipped_csv_is_one_line_and_exit_2(tmp_path):
    data = (FIELD_CASES / "mindmonitor_muse2016.csv.gz").read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    line = one_line_exit_2(_offline_replay(cut, tmp_path / "spool"))
    assert "gzip" in line and "cut.csv.gz" in line, line
