"""The Mind Monitor CSV reader: a Mind Monitor app recording as a `Recording`.

Layout (documented in Mind Monitor's manual and seen in its exports): `TimeStamp` (the phone's
local date-time, 1 ms resolution), its band powers `Delta_TP9` ... `Gamma_TP10` (log10 of µV², per
channel), raw EEG `RAW_TP9, RAW_AF7, RAW_AF8, RAW_TP10` (µV), `AUX_RIGHT` (and `AUX_LEFT` on some
headsets), `Accelerometer_X/Y/Z`, `Gyro_X/Y/Z`, `HeadBandOn`, `HSI_TP9` ... `HSI_TP10` (fit: 1
good, 2 medium, 4 bad), `Battery` and `Elements` (events: `/Marker/1`, `/muse/elements/blink`,
`/muse/elements/jaw_clench`, connection notes).
Rows that hold only an `Elements` entry are events; every other row is one sample (empty or NaN
raw values are kept as missing values, never dropped). Mind Monitor stamps each BLE packet of
12 samples when it arrives, so stamps come in bursts; the sample times are a least-squares line
through them in each stretch without a hole (the dejitter pyxdf applies to XDF), at the measured
rate. Its band columns, HSI, HeadBandOn and battery go to the log summary only: the collector
computes its own band powers from the raw EEG.
"""

from __future__ import annotations

import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.time_repair import dejitter
from collector.devices.recordings.csv_table import (
    check_rows,
    check_times,
    rate_from_timestamps,
    read_table,
    warn_values,
)
from collector.devices.recordings.model import RecordedStream, Recording, marker_stream
from collector.errors import UsageError

log = logging.getLogger("collector.devices.recordings.csv")

MIND_MONITOR_BREAK_S = 0.5  # Mind Monitor's packet bursts are < 0.1 s apart; longer is a hole
MIND_MONITOR_BANDS = ("Delta", "Theta", "Alpha", "Beta", "Gamma")


def local_zone_name() -> str | None:
    """This machine's IANA time zone: `TZ` when it names one, else /etc/localtime's link target."""
    from zoneinfo import ZoneInfo

    key = os.environ.get("TZ", "").lstrip(":")
    if not key:
        target = os.path.realpath("/etc/localtime")
        key = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""
    try:
        ZoneInfo(key)
    except (ValueError, OSError, KeyError):  # not an IANA key (e.g. "CET-1CEST") or no tzdata
        return None
    return key


def _local_to_unix_s(stamps: Any, path: Path) -> np.ndarray:
    """Mind Monitor's local date-times as Unix seconds, in this machine's time zone (TZ).

    With an IANA zone, each row gets the offset in force at its time; in the hour repeated when
    clocks go back, rows before the local time jumps back are summer time. Without one, the
    offset in force at the first row is used for all rows.
    """
    import pandas as pd

    parsed = pd.to_datetime(stamps, format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise UsageError(
            f"Mind Monitor CSV {path}: TimeStamp {stamps.iloc[row]!r} at row {row + 1} is not a "
            "date-time like 2023-01-11 22:03:37.564. Use the file as Mind Monitor wrote it."
        )
    naive_s = (parsed.to_numpy().astype("datetime64[us]").astype(np.int64)) / 1e6
    zone = local_zone_name()
    if zone is not None:
        # In the hour repeated when clocks go back, rows before the local time jumps back are
        # still summer time (DST), rows after it are not.
        summer = np.ones(len(parsed), dtype=bool)
        back = np.flatnonzero(np.diff(naive_s) < -1800.0)
        if back.size:
            summer[int(back[0]) + 1 :] = False
        try:
            utc = parsed.dt.tz_localize(zone, ambiguous=summer, nonexistent="shift_forward")
            utc = utc.dt.tz_convert("UTC").dt.tz_localize(None)
            return utc.to_numpy().astype("datetime64[us]").astype(np.int64) / 1e6
        except (ValueError, TypeError) as exc:  # pytz/pandas AmbiguousTimeError is a ValueError
            log.warning(
                "%s: local times not placed by zone %s (%s); using the first row's offset",
                path.name,
                zone,
                exc,
            )
    naive_s = (parsed.to_numpy().astype("datetime64[us]").astype(np.int64)) / 1e6
    first = parsed.iloc[0].to_pydatetime()
    offset_s = first.timestamp() - (first.replace(tzinfo=timezone.utc).timestamp())
    return naive_s + offset_s


def _column_mean(frame: Any, column: str) -> float | None:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _summary(frame: Any) -> str:
    """Mind Monitor's own figures, for the log only: mean band powers, fit, headband, battery.

    Column by column (element-only rows hold NaN there), so no copy of the whole table is made.
    """
    import pandas as pd

    parts = []
    bands = []
    for band in MIND_MONITOR_BANDS:
        means = [
            m for c in frame.columns if c.startswith(f"{band}_") and (m := _column_mean(frame, c)) is not None
        ]
        if means:
            bands.append(f"{band.lower()} {np.mean(means):.3f}")
    if bands:
        parts.append("its band powers (mean log10 µV²): " + ", ".join(bands))
    if "HeadBandOn" in frame.columns:
        on = pd.to_numeric(frame["HeadBandOn"], errors="coerce").dropna().to_numpy(dtype=float)
        if on.size:
            parts.append(f"headband on {100.0 * np.mean(on == 1):.0f} % of rows")
    fits = [
        (c[4:], m)
        for c in frame.columns
        if c.startswith("HSI_") and (m := _column_mean(frame, c)) is not None
    ]
    if fits:
        parts.append("HSI (1 good, 4 bad) " + ", ".join(f"{name} {m:.1f}" for name, m in fits))
    if "Battery" in frame.columns:
        battery = pd.to_numeric(frame["Battery"], errors="coerce").dropna()
        if len(battery):
            parts.append(f"battery {battery.iloc[0]:g} % to {battery.iloc[-1]:g} %")
    return "; ".join(parts)


def load_mindmonitor_csv(path: str | Path) -> Recording:
    """Read a Mind Monitor CSV: streams `Mind Monitor EEG` (RAW_* and AUX_* in µV), `Accelerometer`,
    `Gyro` (when present) and `Mind Monitor Elements` (its events). times_s are Unix seconds.

    Raises UsageError for an empty or truncated file, a row without a time, no raw EEG.
    """
    import pandas as pd

    path = Path(path)
    frame = read_table(path, ("TimeStamp", "Elements"), optional_last=True)
    if "TimeStamp" not in frame.columns:
        raise UsageError(
            f"Mind Monitor CSV {path} has no 'TimeStamp' column. Use the file as Mind Monitor wrote it."
        )
    raw_cols = [c for c in frame.columns if c.startswith("RAW_")]
    aux_cols = [c for c in frame.columns if c.startswith("AUX_")]
    if len(frame) == 0:
        raise UsageError(
            f"Mind Monitor CSV {path} has a header but no rows. Use a recording that captured samples."
        )
    times_all = _local_to_unix_s(frame["TimeStamp"], path)
    check_times(times_all, path, "TimeStamp")
    elements = frame["Elements"].fillna("").astype(str).str.strip() if "Elements" in frame else None
    values = frame[raw_cols + aux_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    has_raw = np.isfinite(values[:, : len(raw_cols)]).any(axis=1)
    if elements is not None:
        element_only = (elements != "").to_numpy() & ~has_raw
    else:
        element_only = np.zeros(len(frame), dtype=bool)
    rows = np.flatnonzero(~element_only)
    if rows.size == 0 or not has_raw.any():
        raise UsageError(
            f"Mind Monitor CSV {path} holds no raw EEG samples (RAW_TP9 ... are empty). "
            "Record with Mind Monitor's raw EEG on (Recording Interval: Constant)."
        )
    times = times_all[rows]
    check_rows(times.size, path)
    data = values[rows]
    warn_values(data, path, missing_rows_logged=True)
    missing_rows = int(np.count_nonzero(~np.isfinite(data[:, : len(raw_cols)]).all(axis=1)))
    # A hole is a pause longer than packet bursts (0.5 s), or than 4 rows when Mind Monitor wrote
    # one row per recording interval (e.g. 1 s).
    steps = np.diff(times)
    positive = steps[steps > 0]
    typical = float(np.median(positive)) if positive.size else 0.0
    sfreq, measured, segments = rate_from_timestamps(times, max(MIND_MONITOR_BREAK_S, 4.0 * typical))
    if not math.isfinite(sfreq) or sfreq <= 0:
        raise UsageError(
            f"Mind Monitor CSV {path}: the TimeStamps of its {len(times)} raw EEG rows do not advance, so "
            "no sampling rate can be measured from them. Use the file as Mind Monitor wrote it."
        )
    # The least-squares line per stretch is the core one (`collector.core.time_repair.dejitter`):
    # one model for every format; the replay then fits the stream's clock on these times.
    times = dejitter(times, np.asarray([a for a, _ in segments[1:]], dtype=np.int64))
    # The rate the replay works with is the one of the dejittered times, not of the packet stamps.
    packets = measured
    measured = rate_from_timestamps(times, max(MIND_MONITOR_BREAK_S, 4.0 * typical))[1]
    if sfreq < 100:
        log.warning(
            "%s: raw EEG rows come at %.3g Hz, not 256 Hz: Mind Monitor recorded one row per interval. "
            "Record with Recording Interval: Constant for band powers.",
            path.name,
            measured,
        )
    # The recording began with its earliest row: often an Elements note (`/muse/event/connected`)
    # just before the first sample.
    start = datetime.fromtimestamp(min(float(times[0]), float(times_all[0])), tz=timezone.utc)
    source_id = f"mindmonitor-csv:{path.name}"
    labels = tuple([c[len("RAW_") :] for c in raw_cols] + aux_cols)  # RAW_TP9 -> TP9, as a live Muse
    streams: list[RecordedStream] = [
        RecordedStream(
            stream_id=1,
            name="Mind Monitor EEG",
            type="EEG",
            source_id=source_id,
            hostname="",
            channel_format="double64",
            sfreq=sfreq,
            labels=labels,
            units=("microvolts",) * len(labels),
            data=data,
            times_s=times,
            segments=segments,
            has_footer=True,
            footer_sample_count=None,
        )
    ]
    for i, (sensor, kind) in enumerate((("Accelerometer", "Accelerometer"), ("Gyro", "Gyroscope"))):
        cols = [c for c in frame.columns if c.startswith(f"{sensor}_")]
        if not cols:
            continue
        sensor_data = frame.loc[rows, cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        streams.append(
            RecordedStream(
                stream_id=2 + i,
                name=sensor,
                type=kind,
                source_id=f"{source_id}:{sensor.lower()}",
                hostname="",
                channel_format="double64",
                sfreq=sfreq,
                labels=tuple(cols),
                units=("g",) * len(cols) if sensor == "Accelerometer" else ("deg/s",) * len(cols),
                data=sensor_data,
                times_s=times,
                segments=segments,
                has_footer=True,
                footer_sample_count=None,
            )
        )
    event_t: list[float] = []
    event_v: list[str] = []
    if elements is not None:
        for row in np.flatnonzero((elements != "").to_numpy()):
            event_t.append(float(times_all[row]))
            event_v.append(str(elements.iloc[row]))
        streams.append(
            marker_stream("Mind Monitor Elements", f"{source_id}:elements", event_t, event_v, stream_id=9)
        )
    summary = _summary(frame)
    log.info(
        "%s: Mind Monitor CSV, %d samples, channels %s, rate %.6g Hz (measured %.4f Hz over the dejittered "
        "sample times; %.4f Hz from the raw packet stamps), %d segment(s), %d event(s)%s%s",
        path.name,
        len(times),
        ", ".join(labels),
        sfreq,
        measured,
        packets,
        len(segments),
        len(event_t),
        f", {missing_rows} row(s) without raw values kept as missing samples" if missing_rows else "",
        f"; Mind Monitor's own figures (log only): {summary}" if summary else "",
    )
    return Recording(path=path, streams=tuple(streams), start=start)
