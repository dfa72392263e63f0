"""`collector export` of samples EDF cannot hold as they are, each through the real commands: a real
replay (`--local --speed max`) into a real spool, the real `export` in a subprocess, the files read
back with pandas, MNE and edfio.

- Non-finite samples (a sample the source did not deliver, null in the chunk): the Mind Monitor field
  case (2 s with the headband lifted) and a muselsl CSV with NaN on one channel only, and ±inf.
  CSV writes them `nan`; EDF writes 0 µV under BAD_ACQ_SKIP, as it writes a gap.
- Values beyond EDF's 8-character physical range (1e17 µV): one line, exit 2, `--format csv`; values
  that fit only rounded (12345678.9 µV) are written with edfio's outward rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELD = ROOT / "tests" / "data" / "field-cases"  # copies of ../shared/data/field-cases
CHANNELS = ["TP9", "AF7", "AF8", "TP10"]


def collector(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def replay_local(path: Path, spool: Path) -> None:
    proc = collector(["replay", str(path), "--local", "--speed", "max", "--spool", str(spool)])
    assert proc.returncode == 0, proc.stderr


def export(spool: Path, fmt: str, out: Path) -> subprocess.CompletedProcess:
    return collector(["export", "--last", "--format", fmt, "--out", str(out), "--spool", str(spool)])


def muselsl_csv(path: Path, values: np.ndarray, t0: float = 1_700_000_000.0) -> None:
    """A muselsl `record` file at 256 Hz: `values` (n, 4) µV, written as muselsl does (pandas to_csv,
    so a NaN is an empty cell; "inf" and "-inf" as pandas writes them)."""
    rows = ["timestamps,TP9,AF7,AF8,TP10,Right AUX"]
    for i, row in enumerate(values):
        cells = ["" if np.isnan(v) else str(v) for v in row]
        rows.append(f"{t0 + i / 256:.6f},{','.join(cells)},0.0")
    path.write_text("\n".join(rows) + "\n")


def sines() -> np.ndarray:
    """4 s of four sines, 40 µV, at 256 Hz: (1024, 4), to 0.001 µV."""
    return np.round(np.sin(np.arange(256 * 4)[:, None] / np.array([7.0, 9.0, 11.0, 13.0])) * 40.0, 3)


def replayed(tmp_path: Path, name: str, values: np.ndarray) -> Path:
    """`values` written as a muselsl CSV and replayed into a fresh spool (returned)."""
    src = tmp_path / f"{name}.csv"
    muselsl_csv(src, values)
    spool = tmp_path / "spool"
    replay_local(src, spool)
    return spool


def skips(raw) -> list[tuple[float, float]]:
    return [(a["onset"], a["duration"]) for a in raw.annotations if a["description"] == "BAD_ACQ_SKIP"]


def test_the_mind_monitor_headband_lifted_is_nan_in_csv_and_skipped_zeros_in_edf(tmp_path):
    """The field case: 512 rows (8.0 to 10.0 s) without raw values. EDF used to fail with edfio's
    "Signal data must contain only finite values."; now they are 0 µV under one BAD_ACQ_SKIP."""
    mne = pytest.importorskip("mne")
    import pandas as pd

    spool = tmp_path / "spool"
    replay_local(FIELD / "mindmonitor_muse2016.csv.gz", spool)
    csv_path, edf_path = tmp_path / "mm.csv", tmp_path / "mm.edf"
    assert export(spool, "csv", csv_path).returncode == 0
    proc = export(spool, "edf", edf_path)
    assert proc.returncode == 0, proc.stderr
    assert "512 sample(s) the source did not deliver (non-finite) in 1 stretch(es)" in proc.stdout
    table = pd.read_csv(csv_path)
    delivered = table[CHANNELS].to_numpy()
    missing = ~np.isfinite(delivered).all(axis=1)
    assert missing.sum() == 512 and np.isnan(delivered[missing]).all()  # CSV: every row, `nan`
    assert (
        "\n" + f"{table['timestamps'][np.flatnonzero(missing)[0]]:.6f},nan,nan,nan,nan,"
        in csv_path.read_text()
    )
    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose="error")
    first = np.flatnonzero(missing)[0]
    ((onset, duration),) = [s for s in skips(raw) if s[0] < len(table) / 256]  # the padding aside
    assert onset == pytest.approx(first / 256, abs=1e-6) and duration == pytest.approx(512 / 256, abs=1e-6)
    data = raw.get_data().T * 1e6
    step = (np.nanmax(delivered, 0) - np.minimum(np.nanmin(delivered, 0), 0)) / 65535
    assert np.all(np.abs(data[first : first + 512]) <= step / 2 + 1e-6)  # 0 µV: nothing invented
    good = raw.get_data(reject_by_annotation="omit").T * 1e6
    assert good.shape == delivered[~missing].shape
    assert np.all(np.abs(good - delivered[~missing]) <= step / 2 + 1e-3)


def test_a_non_finite_value_on_one_channel_skips_its_row_and_keeps_the_other_channels(tmp_path):
    """NaN on AF7 only for 0.5 s, then +inf and -inf on TP9 for 3 samples right after it: one
    BAD_ACQ_SKIP over both stretches (they touch), the other channels' values kept under it."""
    mne = pytest.importorskip("mne")
    import pandas as pd
    from edfio import read_edf

    n = 256 * 6
    values = np.round(np.sin(np.arange(n)[:, None] / np.array([7.0, 9.0, 11.0, 13.0])) * 40.0, 3)
    values[512:640, 1] = np.nan
    values[640:643, 0] = [np.inf, -np.inf, np.inf]
    values[1000, 3] = np.nan  # a lone one: a second stretch
    src = tmp_path / "muse.csv"
    muselsl_csv(src, values)
    spool = tmp_path / "spool"
    replay_local(src, spool)
    csv_path, edf_path = tmp_path / "out.csv", tmp_path / "out.edf"
    assert export(spool, "csv", csv_path).returncode == 0
    proc = export(spool, "edf", edf_path)
    assert proc.returncode == 0, proc.stderr
    assert "132 sample(s) the source did not deliver (non-finite) in 2 stretch(es)" in proc.stdout
    delivered = pd.read_csv(csv_path)[CHANNELS].to_numpy()
    assert len(delivered) == n
    bad = ~np.isfinite(values)
    assert np.isnan(delivered[bad]).all()  # ±inf were delivered as null too: `nan`
    np.testing.assert_allclose(delivered[~bad], values[~bad], atol=5e-4)
    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose="error")
    assert skips(raw)[:2] == [
        pytest.approx((512 / 256, 131 / 256), abs=1e-6),
        pytest.approx((1000 / 256, 1 / 256), abs=1e-6),
    ]
    data = raw.get_data().T[:n] * 1e6
    step = np.array([s.physical_range[1] - s.physical_range[0] for s in read_edf(edf_path).signals]) / 65535
    half = np.broadcast_to(step, values.shape) / 2 + 1e-6
    assert np.all(np.abs(data[bad]) <= half[bad])  # 0 µV (to 16 bits): nothing invented
    assert np.all(np.abs(data[~bad] - values[~bad]) <= half[~bad] + 1e-3)  # the other channels kept


def test_values_beyond_edfs_physical_range_are_refused_in_one_line_and_written_by_csv(tmp_path):
    values = sines()
    values[300:310, 1] = 1e17
    spool = replayed(tmp_path, "huge", values)
    out = tmp_path / "huge.edf"
    proc = export(spool, "edf", out)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "channel AF7 ranges from" in line and "1e+17" in line and "8-character physical" in line
    assert "use --format csv" in line and "Traceback" not in line and "exceeds maximum field" not in line
    assert not out.exists()
    csv_path = tmp_path / "huge.csv.out"
    assert export(spool, "csv", csv_path).returncode == 0
    assert ",100000000000000000.000," in csv_path.read_text()


def test_values_that_fit_edfs_physical_range_only_rounded_are_written_rounded_outward(tmp_path):
    """12345678.9 µV takes 10 characters; edfio writes the range's maximum as 12345679 (rounded up,
    so every value stays inside it) and the file reads back within half a 16-bit step."""
    from edfio import read_edf

    values = sines()
    values[300, 2] = 12345678.9
    spool = replayed(tmp_path, "big", values)
    out = tmp_path / "big.edf"
    proc = export(spool, "edf", out)
    assert proc.returncode == 0, proc.stderr
    signal = read_edf(out).signals[2]
    lo, hi = signal.physical_range
    assert hi == 12345679.0
    step = (hi - lo) / 65535
    assert f"16-bit resolution up to {step:.4f} µV" in proc.stdout  # the written range's step
    assert np.all(np.abs(signal.data[: len(values)] - values[:, 2]) <= step / 2 + 1e-6)


def test_channel_labels_beyond_ascii_are_written_plain_to_edf(tmp_path):
    """EDF labels are printable ASCII: "Fpé" is written "Fpe", and labels made equal stay distinct
    (edfio raised UnicodeEncodeError, shown as "'ascii' codec can't encode ...")."""
    from edfio import read_edf

    from collector.review.export import _edf_labels

    assert _edf_labels(["Fpé", "Fpe", "Cz\u00a0", "α", "Oz"]) == ["Fpe", "Fpe-2", "Cz ", "_", "Oz"]
    path = tmp_path / "accents.csv"
    rng = np.random.default_rng(2)
    muselsl_csv(path, rng.normal(0, 20, (256 * 6, 4)))
    path.write_text(path.read_text().replace("TP9,AF7", "Fpé,Fpe", 1))
    spool = tmp_path / "spool"
    replay_local(path, spool)
    proc = export(spool, "edf", tmp_path / "accents.edf")
    assert proc.returncode == 0, proc.stderr
    assert [s.label for s in read_edf(tmp_path / "accents.edf").signals] == ["Fpe", "Fpe-2", "AF8", "TP10"]
