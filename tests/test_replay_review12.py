"""Review of issue 12 (replay of muselsl/Mind Monitor CSV and EDF/BDF), as a new user met it:
CSVs in other dialects, timestamps that run backwards throughout, a one-row file, unknown channel
labels in `--stream`, a naive `--start-time`, a directory, help texts and small wording.

Through the real `python -m collector replay ... --speed max` against the sandbox where the
finding came from the command; reader-level where it is parsing alone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests.test_replay_formats import (
    EEG4,
    MUSE_CSV,
    delivered,
    make_mind_monitor_csv,
    need,
    one_line_exit_2,
    read_muse_csv,
    replay,
    write_edf,
)

pytestmark = [pytest.mark.slow]
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
    np.testing.assert_allclose(times, stamps * 1000.0, atol=2e-3, rtol=0)
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
    from collector.errors import UsageError
    from devices.recordings import load_any_recording

    header, rows = muse_rows()
    order = np.random.default_rng(3).permutation(len(rows))
    path = tmp_path / "shuffled.csv"
    path.write_text("\n".join([header, *(rows[i] for i in order)]) + "\n")
    with pytest.raises(UsageError) as info:
        load_any_recording(path)
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
    from collector.errors import UsageError
    from devices.recordings import load_any_recording

    header, rows = muse_rows()
    same = [rows[0].split(",")[0] + "," + ",".join(r.split(",")[1:]) for r in rows[:50]]
    path = tmp_path / "still.csv"
    path.write_text("\n".join([header, *same]) + "\n")
    with pytest.raises(UsageError, match="do not advance"):
        load_any_recording(path)


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
