"""How long reading a 1-hour recording takes, per format `collector replay` accepts.

Writes a 1-hour, 4-channel + AUX, 256 Hz recording as a muselsl CSV (pandas, `%.3f`, as
`muselsl record` writes it), a Mind Monitor CSV (its documented columns, stamps per 12-sample
packet), an EDF+ and a BDF (pyedflib), then loads each in a fresh process with
`collector.devices.recordings.detect.load_recording` and prints wall time, CPU time and peak RSS.

    python scripts/bench_recordings.py [--minutes 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SFREQ = 256
CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from collector.devices.recordings.detect import load_recording
rec = load_recording(sys.argv[1])
eeg = next(s for s in rec.streams if s.type == "EEG")
# VmHWM: this process image's peak (ru_maxrss would include the parent's, kept over exec)
hwm_kb = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                  "rss_mb": hwm_kb / 1024, "samples": eeg.sample_count}))
"""


def write_files(folder: Path, minutes: float) -> dict[str, Path]:
    import pandas as pd
    import pyedflib

    n = int(minutes * 60 * SFREQ)
    rng = np.random.default_rng(0)
    eeg = rng.normal(0, 20, (n, 5))
    stamps = 1_700_000_000.0 + np.arange(n) / SFREQ
    files: dict[str, Path] = {}

    muse = folder / "muselsl.csv"
    frame = pd.DataFrame(eeg, columns=["TP9", "AF7", "AF8", "TP10", "Right AUX"])
    frame.insert(0, "timestamps", stamps)
    frame["Marker0"] = 0
    frame.loc[:: SFREQ * 10, "Marker0"] = 1
    frame.to_csv(muse, float_format="%.3f", index=False)
    files["muselsl CSV"] = muse

    mind = folder / "mindmonitor.csv"
    k = np.arange(n)
    arrival = stamps[(k // 12) * 12 + np.minimum(11, n - 1 - (k // 12) * 12)] + 0.02
    when = pd.to_datetime(arrival, unit="s").strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    columns = {"TimeStamp": when}
    for band in ("Delta", "Theta", "Alpha", "Beta", "Gamma"):
        for ch in ("TP9", "AF7", "AF8", "TP10"):
            columns[f"{band}_{ch}"] = np.round(rng.uniform(-0.5, 1.5, n), 6)
    for i, ch in enumerate(("TP9", "AF7", "AF8", "TP10")):
        columns[f"RAW_{ch}"] = np.round(800 + eeg[:, i], 3)
    columns["AUX_RIGHT"] = np.round(800 + eeg[:, 4], 3)
    for axis in "XYZ":
        columns[f"Accelerometer_{axis}"] = 0.1
    for axis in "XYZ":
        columns[f"Gyro_{axis}"] = 1.5
    columns["HeadBandOn"] = 1
    for ch in ("TP9", "AF7", "AF8", "TP10"):
        columns[f"HSI_{ch}"] = 1.0
    columns["Battery"] = 80.0
    columns["Elements"] = ""
    pd.DataFrame(columns).to_csv(mind, index=False, float_format="%.6g")
    files["Mind Monitor CSV"] = mind

    for kind, file_type, digital in (
        ("EDF+", pyedflib.FILETYPE_EDFPLUS, (-32768, 32767)),
        ("BDF", pyedflib.FILETYPE_BDFPLUS, (-8388608, 8388607)),
    ):
        path = folder / ("rec.edf" if kind == "EDF+" else "rec.bdf")
        writer = pyedflib.EdfWriter(str(path), 5, file_type=file_type)
        writer.setSignalHeaders(
            [
                dict(
                    label=f"EEG {ch}",
                    dimension="uV",
                    sample_frequency=SFREQ,
                    physical_min=-800.0,
                    physical_max=800.0,
                    digital_min=digital[0],
                    digital_max=digital[1],
                )
                for ch in ("TP9", "AF7", "AF8", "TP10", "AUX")
            ]
        )
        writer.setStartdatetime(datetime(2024, 5, 1, 10, tzinfo=timezone.utc).replace(tzinfo=None))
        writer.writeSamples([np.ascontiguousarray(eeg[:, i]) for i in range(5)])
        writer.close()
        files[kind] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        files = write_files(folder, args.minutes)
        print(
            f"wrote {args.minutes:g} min of 5-ch 256 Hz in each format "
            f"in {time.perf_counter() - started:.1f} s"
        )
        print(f"{'format':18} {'file MB':>8} {'samples':>9} {'wall s':>7} {'cpu s':>6} {'peak RSS MB':>12}")
        for name, path in files.items():
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], cwd=REPO, capture_output=True, text=True, check=True
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            size = path.stat().st_size / 1e6
            print(
                f"{name:18} {size:8.1f} {r['samples']:9d} {r['wall_s']:7.2f} {r['cpu_s']:6.2f} "
                f"{r['rss_mb']:12.0f}"
            )


if __name__ == "__main__":
    main()
