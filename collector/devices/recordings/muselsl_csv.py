"""The muselsl CSV reader: a `muselsl record` file as a `Recording` (its stream plus markers).

Columns `timestamps`, the stream's channel labels (`TP9, AF7, AF8, TP10, Right AUX` for EEG) and,
when a marker stream was recorded, `Marker0`, `Marker1`, ... (older versions: `Marker`); 0 means
no marker. muselsl writes every value with `%.3f`, so stamps have 1 ms resolution. Stamps are Unix
seconds by default, or the LSL clock (seconds since boot) with `--lsltime`: any stamp of 1e9 s or
more (September 2001) is Unix time, the LSL clock never gets there. Unix stamps are the samples'
times as they are; LSL-clock stamps need an anchor (`--start-time`), else the file's modification
time is taken as the last sample's time (muselsl writes the file as it records), with a warning.
The rate is measured from the stamps.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from collector.devices.recordings.csv_table import (
    check_rows,
    check_times,
    numeric_column,
    rate_from_timestamps,
    read_table,
    warn_values,
)
from collector.devices.recordings.model import RecordedStream, Recording, marker_stream
from collector.errors import UsageError

log = logging.getLogger("collector.devices.recordings.csv")

UNIX_MIN_S = 1e9  # 2001-09-09: Unix stamps of any real recording are above, LSL-clock stamps below
_MARKER_COLUMN = re.compile(r"^Marker\d*$")
_NO_MARKER = {"", "0", "0.0", "0.000", "nan", "none"}
MUSE_COLUMNS = {"TP9", "AF7", "AF8", "TP10", "Right AUX", "X", "Y", "Z", "PPG1", "PPG2", "PPG3"}


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


def load_muselsl_csv(path: str | Path, *, start_time: Any = None) -> Recording:
    """Read a `muselsl record` CSV: stream `Muse` (all channel columns, µV) plus its markers.

    times_s of the stream are the file's stamps as they are (Unix or LSL seconds); the recording's
    start is the first stamp for Unix files, the file's modification time minus the recording's
    length for LSL-clock files. Stamps that go backwards are kept (and named in a warning): the
    replay repairs them. Raises UsageError for an empty or truncated file, or a row without a time.
    """
    path = Path(path)
    frame = read_table(path, lambda c: bool(_MARKER_COLUMN.match(c)))
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
    times = numeric_column(frame, "timestamps", path)
    check_times(times, path, "timestamp")
    check_rows(times.size, path)
    data = np.column_stack([numeric_column(frame, c, path) for c in channels])
    warn_values(data, path)

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
    eeg = RecordedStream(
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
    return Recording(path=path, streams=tuple(streams), start=start)
