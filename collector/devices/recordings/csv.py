"""muselsl and Mind Monitor CSV files as recordings (an EEG stream, other sensors, markers).

Parsed with pandas' C reader (exact float parsing, so every stamp is the exact double its text
names): pandas is already installed with muselsl, which writes these files with pandas,
and it reads an hour of 256 Hz rows in about a second where the csv module takes tens.

**muselsl CSV** (`muselsl record`): columns `timestamps`, the stream's channel labels (`TP9, AF7,
AF8, TP10, Right AUX` for EEG) and, when a marker stream was recorded, `Marker0`, `Marker1`, ...
(older versions: `Marker`); 0 means no marker. muselsl writes every value with `%.3f`, so stamps
have 1 ms resolution. Stamps are Unix seconds by default, or the LSL clock (seconds since boot)
with `--lsltime`: any stamp of 1e9 s or more (September 2001) is Unix time, the LSL clock never
gets there. Unix stamps are the samples' times as they are; LSL-clock stamps need an anchor
(`--start-time`), else the file's modification time is taken as the last sample's time (muselsl
writes the file as it records), with a warning. The rate is measured from the stamps.

**Mind Monitor CSV** (the Mind Monitor app, documented in its manual and seen in its exports):
`TimeStamp` (the phone's local date-time, 1 ms resolution), its band powers `Delta_TP9` ...
`Gamma_TP10` (log10 of µV², per channel), raw EEG `RAW_TP9, RAW_AF7, RAW_AF8, RAW_TP10`
(µV), `AUX_RIGHT` (and `AUX_LEFT` on some headsets), `Accelerometer_X/Y/Z`, `Gyro_X/Y/Z`,
`HeadBandOn`, `HSI_TP9` ... `HSI_TP10` (fit: 1 good, 2 medium, 4 bad), `Battery` and `Elements`
(events: `/Marker/1`, `/muse/elements/blink`, `/muse/elements/jaw_clench`, connection notes).
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
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from collector.devices.recordings.detect import marker_stream, rate_from_timestamps
from collector.devices.recordings.xdf import XdfRecording, XdfStream
from collector.errors import UsageError

log = logging.getLogger(__name__)

UNIX_MIN_S = 1e9  # 2001-09-09: Unix stamps of any real recording are above, LSL-clock stamps below
_MARKER_COLUMN = re.compile(r"^Marker\d*$")
_NO_MARKER = {"", "0", "0.0", "0.000", "nan", "none"}
MIND_MONITOR_BREAK_S = 0.5  # Mind Monitor's packet bursts are < 0.1 s apart; longer is a hole
MIND_MONITOR_BANDS = ("Delta", "Theta", "Alpha", "Beta", "Gamma")
MUSE_COLUMNS = {"TP9", "AF7", "AF8", "TP10", "Right AUX", "X", "Y", "Z", "PPG1", "PPG2", "PPG3"}
ABSURD_UV = 1e6  # 1 V: beyond any EEG amplitude; such a value is a broken sample or a unit mix-up
MIN_ROWS_FOR_RATE = 2  # two stamps a step apart are the least a rate can be measured from


def _read_table(path: Path, string_columns: Any = (), optional_last: bool = False) -> Any:
    """The whole file as a DataFrame; UsageError for a file pandas cannot parse or that is cut short.

    string_columns: names, or a predicate on a name, of columns read as text (markers, dates).
    optional_last: rows may leave out the last column (Mind Monitor writes `Elements` only on
      rows that have one).
    """
    import pandas as pd

    sep, decimal = csv_dialect(path)
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = [c.strip() for c in handle.readline().rstrip("\r\n").split(sep)]
    keep_text = string_columns if callable(string_columns) else (lambda c: c in string_columns)
    # Exact parsing is pandas 3's default; pandas 2 needs "round_trip" (deprecated in 3).
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    try:
        frame = pd.read_csv(
            path,
            **exact,
            dtype={c: str for c in header if keep_text(c)},
            sep=sep,
            decimal=decimal,
            skip_blank_lines=True,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise UsageError(f"CSV file {path} is empty. Use a recording that holds samples.") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise UsageError(
            f"CSV file {path} cannot be read ({detail}). Use the file as the recorder wrote it."
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_last_line(path, len(frame.columns) - (1 if optional_last else 0), sep)
    return frame


_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


def csv_dialect(path: Path) -> tuple[str, str]:
    """(field separator, decimal mark) of a CSV: `,`, `;` or tab, and `,` as the decimal mark when
    `;`/tab-separated numbers are written with a decimal comma (spreadsheets in many locales).

    The separator is csv.Sniffer's guess from the header line (the separator that splits it
    consistently); the decimal comma is seen in the first data line.
    """
    import csv

    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline().rstrip("\r\n")
        data = handle.readline().rstrip("\r\n")
    try:
        sep = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter
    except csv.Error:
        sep = ","
    decimal = "."
    if sep != "," and any(_DECIMAL_COMMA.match(field.strip()) for field in data.split(sep)):
        decimal = ","
    return sep, decimal


def _check_last_line(path: Path, n_columns: int, sep: str = ",") -> None:
    """A last line with fewer fields than the header: the writer stopped mid-row (a truncated file)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines or tail.endswith(b"\n"):
        return
    fields = lines[-1].count(sep.encode()) + 1
    if fields < n_columns:
        raise UsageError(
            f"CSV file {path} is truncated: its last line has {fields} of {n_columns} fields "
            "(the recorder stopped mid-row). Use the complete file, or delete the partial last line."
        )


def _numeric(frame: Any, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(frame[column].notna().to_numpy() & np.isnan(values))
    if bad.size:
        row = int(bad[0])
        raise UsageError(
            f"CSV file {path}: column {column!r} holds {frame[column].iloc[row]!r} at row {row + 1}, "
            "not a number. Use the file as the recorder wrote it."
        )
    return values


def _check_times(times: np.ndarray, path: Path, what: str) -> None:
    missing = np.flatnonzero(~np.isfinite(times))
    if missing.size:
        raise UsageError(
            f"CSV file {path}: data row {int(missing[0]) + 1} has no {what}. "
            "Use the file as the recorder wrote it (a cut or edited file loses rows' times)."
        )
    steps = np.diff(times)
    back = np.flatnonzero(steps < 0)
    moving = int(np.count_nonzero(steps))
    # A few backward steps (swapped or stray stamps, a clock set back) are repaired by the replay;
    # a quarter or more is a file whose rows are not in time order at all.
    if back.size and back.size * 4 >= moving:
        reverse = back.size == moving and _regular(-steps[steps != 0])
        raise UsageError(
            f"CSV file {path}: the {what}s run backwards at {back.size} of {steps.size} steps "
            + (
                "(every row is one step earlier: the rows are in reverse order, "
                if reverse
                else "(the rows are out of time order: sorted or shuffled, or the clock was broken, "
            )
            + "so nothing can be replayed reliably). Sort the rows by time, oldest first, and replay again."
        )
    if back.size:
        i = int(back[0]) + 1
        log.warning(
            "%s: %ss go backwards at data row %d (%.3f then %.3f; %d place(s) in all): rows kept in "
            "file order; replay repairs the stamps from the stream's regular grid and says how many",
            path.name,
            what,
            i + 1,
            times[i - 1],
            times[i],
            back.size,
        )


def _warn_values(data: np.ndarray, path: Path, *, missing_rows_logged: bool = False) -> None:
    """Say how many values are missing (empty, NaN, ±inf: delivered as null) and how many are
    finite but beyond ±ABSURD_UV (kept as they are; the quality flags mark their windows
    `excessive_amplitude`). data: (n_samples, n_channels), µV."""
    missing = int(np.count_nonzero(~np.isfinite(data)))
    if missing and not missing_rows_logged:
        log.warning(
            "%s: %d missing channel value(s) (empty, NaN or ±inf) kept as missing samples (null)",
            path.name,
            missing,
        )
    with np.errstate(invalid="ignore"):
        absurd = int(np.count_nonzero(np.isfinite(data) & (np.abs(data) > ABSURD_UV)))
    if absurd:
        log.warning(
            "%s: %d channel value(s) beyond ±%g µV (1 V; no EEG is that large) kept as they are; "
            "the windows holding them are flagged excessive_amplitude",
            path.name,
            absurd,
            ABSURD_UV,
        )


def _check_rows(n: int, path: Path) -> None:
    if n < MIN_ROWS_FOR_RATE:
        raise UsageError(
            f"CSV file {path} has {_count(n, 'sample row')}: at least {MIN_ROWS_FOR_RATE} are "
            "needed to measure the sampling rate from the timestamps. Use a longer recording."
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _regular(steps: np.ndarray) -> bool:
    """True when the steps are one period apart (within half a period; packet bursts included)."""
    if steps.size == 0:
        return False
    median = float(np.median(steps))
    return median > 0 and float(np.percentile(np.abs(steps - median), 90)) <= 0.5 * median


def _marker_text(value: Any) -> str | None:
    text = str(value).strip()
    if text.lower() in _NO_MARKER:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if number == 0:
        return None
    return str(int(number)) if number.is_integer() else text


def _stream_type(labels: list[str]) -> str:
    upper = {label.upper() for label in labels}
    if upper <= {"X", "Y", "Z"}:
        return "Motion"  # muselsl record -s ACC / GYRO
    if all(label.upper().startswith("PPG") for label in labels):
        return "PPG"
    return "EEG"


# -- muselsl ---------------------------------------------------------------------------------------


def load_muselsl_csv(path: str | Path, *, start_time: Any = None) -> XdfRecording:
    """Read a `muselsl record` CSV: stream `Muse` (all channel columns, µV) plus its markers.

    times_s of the stream are the file's stamps as they are (Unix or LSL seconds); the recording's
    start is the first stamp for Unix files, the file's modification time minus the recording's
    length for LSL-clock files. Stamps that go backwards are kept (and named in a warning): the
    replay repairs them. Raises UsageError for an empty or truncated file, or a row without a time.
    """
    path = Path(path)
    frame = _read_table(path, lambda c: bool(_MARKER_COLUMN.match(c)))
    if "timestamps" not in frame.columns:
        raise UsageError(f"muselsl CSV {path} has no 'timestamps' column. Use the file as muselsl wrote it.")
    marker_columns = [c for c in frame.columns if _MARKER_COLUMN.match(c)]
    channels = [c for c in frame.columns if c != "timestamps" and c not in marker_columns]
    if not channels:
        raise UsageError(f"muselsl CSV {path} has no channel columns besides 'timestamps'. Check the file.")
    if len(frame) == 0:
        raise UsageError(
            f"muselsl CSV {path} has a header but no rows. Use a recording that captured samples."
        )
    times = _numeric(frame, "timestamps", path)
    _check_times(times, path, "timestamp")
    _check_rows(times.size, path)
    data = np.column_stack([_numeric(frame, c, path) for c in channels])
    _warn_values(data, path)

    sfreq, measured, segments = rate_from_timestamps(times)
    if not math.isfinite(sfreq) or sfreq <= 0:
        raise UsageError(
            f"muselsl CSV {path}: its {len(times)} timestamps do not advance, so no sampling rate can be "
            "measured from them. Use the file as muselsl wrote it."
        )
    unix = bool(np.median(times) >= UNIX_MIN_S)  # the median: one stray stamp does not decide
    span = float(times[-1] - times[0])
    if unix:
        start = datetime.fromtimestamp(float(times[0]), tz=timezone.utc)
    else:
        mtime = path.stat().st_mtime
        start = datetime.fromtimestamp(mtime - span, tz=timezone.utc)
        if start_time == "file":
            log.warning(
                "%s has LSL-clock timestamps (muselsl record --lsltime), not Unix time: the last sample "
                "is placed at the file's modification time, %s UTC. Pass --start-time ISO-8601 with "
                "the real start to be exact.",
                path.name,
                datetime.fromtimestamp(mtime, tz=timezone.utc).isoformat(timespec="seconds"),
            )
    events_t: list[float] = []
    events_v: list[str] = []
    if marker_columns:
        raw = frame[marker_columns].fillna("0").astype(str).to_numpy()
        maybe = np.flatnonzero(
            ~np.isin(np.char.strip(raw.astype("U")), ["0", "0.0", "0.000", ""]).all(axis=1)
        )
        for row in (r for r in maybe if any(_marker_text(v) for v in raw[r])):
            texts = [_marker_text(v) or "0" for v in raw[row]]
            events_t.append(float(times[row]))
            events_v.append(texts[0] if len(texts) == 1 else ",".join(texts))
    source_id = f"muselsl-csv:{path.name}"
    # The stream is a Muse's only when its columns are (`muselsl record` of EEG, ACC, GYRO or
    # PPG); a file of other channels in this layout (`collector export` of an EDF) is named by kind.
    name = "Muse" if set(channels) <= MUSE_COLUMNS else _stream_type(channels)
    eeg = XdfStream(
        stream_id=1,
        name=name,
        type=_stream_type(channels),
        source_id=source_id,
        hostname="",
        channel_format="double64",
        sfreq=sfreq,
        labels=tuple(channels),
        units=("microvolts",) * len(channels) if _stream_type(channels) == "EEG" else ("",) * len(channels),
        data=data,
        times_s=times,
        segments=segments,
        has_footer=True,
        footer_sample_count=None,
    )
    log.info(
        "%s: muselsl CSV, %s timestamps, %d samples, %d channel%s (%s), rate %.6g Hz (measured %.4f Hz), "
        "%d marker(s)",
        path.name,
        "Unix" if unix else "LSL-clock",
        len(times),
        len(channels),
        "" if len(channels) == 1 else "s",
        ", ".join(channels),
        sfreq,
        measured,
        len(events_t),
    )
    streams = [eeg]
    if marker_columns:
        streams.append(marker_stream("Markers", f"{source_id}:markers", events_t, events_v, stream_id=2))
    return XdfRecording(path=path, streams=tuple(streams), start=start)


# -- Mind Monitor ----------------------------------------------------------------------------------


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


def _dejitter(times: np.ndarray, segments: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Least-squares line through the stamps of each segment (sample index -> time)."""
    out = times.copy()
    for a, b in segments:
        if b - a < 2:
            continue
        k = np.arange(b - a + 1, dtype=np.float64)
        slope, intercept = np.polyfit(k, times[a : b + 1] - times[a], 1)
        out[a : b + 1] = times[a] + intercept + slope * k
    return out


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


def load_mindmonitor_csv(path: str | Path) -> XdfRecording:
    """Read a Mind Monitor CSV: streams `Mind Monitor EEG` (RAW_* and AUX_* in µV), `Accelerometer`,
    `Gyro` (when present) and `Mind Monitor Elements` (its events). times_s are Unix seconds.

    Raises UsageError for an empty or truncated file, a row without a time, no raw EEG.
    """
    import pandas as pd

    path = Path(path)
    frame = _read_table(path, ("TimeStamp", "Elements"), optional_last=True)
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
    _check_times(times_all, path, "TimeStamp")
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
    _check_rows(times.size, path)
    data = values[rows]
    _warn_values(data, path, missing_rows_logged=True)
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
    times = _dejitter(times, segments)
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
    streams: list[XdfStream] = [
        XdfStream(
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
            XdfStream(
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
    return XdfRecording(path=path, streams=tuple(streams), start=start)
