"""The XDF reader: an XDF (or gzipped XDFZ) file as a `Recording` of `RecordedStream`s.

Loading goes through `pyxdf.load_xdf` with clock synchronisation and clock-reset handling on.
`load_xdf(dejitter=True)` also dejitters regular streams with pyxdf's per-segment linear fit
(the LSL player uses that); the replay source loads the stamps as recorded instead
(dejitter=False) and hands the EEG to `collector.devices.recordings.fixes`, which repairs
isolated bad stamps first (counting them), then fits a line per gap-free stretch: LabRecorder
stores the sender's timestamps, which for chunked amplifiers and BLE headsets carry several ms of
transmission jitter, while the band-power core assumes even spacing.
Real holes are kept as `Gap`s, not smoothed over.

The recording's start is the file header's `datetime` (written by LabRecorder when recording
started). pyxdf's own repairs (corrupt chunks, missing footers, sample counts that differ from a
footer) make a file corrupt: refused with one line, or read with a warning when strict=False.
"""

from __future__ import annotations

import gzip
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.channels import fill_labels
from collector.devices.recordings.model import RecordedStream, Recording, parse_iso_datetime
from collector.errors import UsageError

log = logging.getLogger(__name__)

# Breaks in a regular stream longer than this split pyxdf's dejitter fit and become Gaps.
BREAK_THRESHOLD_S = 0.1
BREAK_THRESHOLD_SAMPLES = 10

_PYXDF_LOGGER = "pyxdf.pyxdf"


def _first(info: dict, key: str, default: str = "") -> str:
    value = info.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else str(value)


def _channel_field(info: dict, field: str) -> list[str | None]:
    try:
        desc = info["desc"][0]
        channels = desc["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        return []
    out: list[str | None] = []
    for ch in channels:
        try:
            value = ch.get(field, [None])[0]
        except (AttributeError, IndexError):
            value = None
        out.append(value or None)
    return out


class _PyxdfLogCapture(logging.Handler):
    """Collects pyxdf's log records during one load: its ERRORs mean a corrupt file."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0] if record.getMessage() else record.levelname
        message = message.split(", scanning forward")[0]
        if record.levelno >= logging.ERROR:
            self.errors.append(message)
        elif record.levelno >= logging.WARNING:
            log.debug("pyxdf: %s", message)


def _corrupt(path: Path, detail: str) -> UsageError:
    detail = " ".join(detail.split())[:160]
    return UsageError(
        f"XDF file {path} is corrupt or truncated ({detail}). "
        "Use a complete recording (LabRecorder writes the end of the file when recording stops)."
    )


def load_xdf(path: str | Path, *, dejitter: bool = True, strict: bool = True) -> Recording:
    """Load every stream of an XDF file; UsageError (one line) for a missing or corrupt file.

    strict: a file pyxdf had to repair (corrupt chunks, missing stream footers, sample counts
    that differ from the footer) is refused; strict=False loads what is readable, with a warning.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"XDF file not found: {path}. Check the path.")
    import pyxdf  # imported here: pyxdf is only needed when a file is replayed

    capture = _PyxdfLogCapture()
    pyxdf_log = logging.getLogger(_PYXDF_LOGGER)
    saved = (pyxdf_log.propagate, pyxdf_log.level)
    pyxdf_log.addHandler(capture)
    pyxdf_log.propagate = False
    pyxdf_log.setLevel(logging.INFO)
    try:
        opener = gzip.open if path.suffix == ".xdfz" or path.suffixes[-2:] == [".xdf", ".gz"] else open
        # Our own handle: pyxdf leaves its file open when the magic bytes are wrong.
        with opener(path, "rb") as handle, warnings.catch_warnings():
            if handle.read(4) != b"XDF:":
                raise UsageError(f"{path} is not an XDF file (no 'XDF:' at its start). Check the path.")
            handle.seek(0)
            warnings.simplefilter("ignore")  # numpy warnings from fits over tiny streams
            raw_streams, header = pyxdf.load_xdf(
                handle,
                synchronize_clocks=True,
                handle_clock_resets=True,
                dejitter_timestamps=dejitter,
                jitter_break_threshold_seconds=BREAK_THRESHOLD_S,
                jitter_break_threshold_samples=BREAK_THRESHOLD_SAMPLES,
            )
    except UsageError:
        raise
    except Exception as exc:  # pyxdf raises OSError, ParseError, struct.error, ValueError, ...
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
    finally:
        pyxdf_log.removeHandler(capture)
        pyxdf_log.propagate, _ = saved
        pyxdf_log.setLevel(saved[1])

    if header is None and not raw_streams:
        raise _corrupt(path, "no XDF chunks could be read")
    streams = tuple(_convert_stream(s) for s in raw_streams)
    problems = list(capture.errors)
    for s in streams:
        if not s.has_footer:
            problems.append(f"stream {s.name!r} has no footer")
        elif s.footer_sample_count is not None and s.footer_sample_count != s.sample_count:
            problems.append(
                f"stream {s.name!r} holds {s.sample_count} samples, its footer says {s.footer_sample_count}"
            )
    if problems:
        unique = list(dict.fromkeys(problems))
        summary = unique[0] + (f" and {len(unique) - 1} more problem(s)" if len(unique) > 1 else "")
        if strict:
            raise _corrupt(path, summary)
        log.warning("XDF file %s is damaged (%s); reading what is readable", path, summary)

    start = None
    start_text = _first((header or {}).get("info", {}) or {}, "datetime")
    if start_text:
        try:
            start = parse_iso_datetime(start_text)
        except ValueError:
            log.warning("XDF header datetime %r is not ISO-8601; ignoring it", start_text)
    return Recording(path=path, streams=streams, start=start)


def _convert_stream(raw: dict) -> RecordedStream:
    info = raw["info"]
    n_channels = int(_first(info, "channel_count", "0") or 0)
    fmt = _first(info, "channel_format", "float32")
    times = np.asarray(raw["time_stamps"], dtype=np.float64)
    if fmt == "string":
        data: Any = [list(sample) for sample in raw["time_series"]]
    else:
        data = np.asarray(raw["time_series"])
        if data.ndim == 1:
            data = data.reshape(-1, max(n_channels, 1))
    labels = fill_labels(_channel_field(info, "label"), n_channels)
    units = tuple(u or "" for u in _channel_field(info, "unit")) or ("",) * n_channels
    footer = raw.get("footer")
    footer_count = None
    if footer:
        try:
            footer_count = int(_first(footer.get("info", {}), "sample_count"))
        except (TypeError, ValueError):
            footer_count = None
    segments = tuple((int(a), int(b)) for a, b in info.get("segments", []) or [])
    return RecordedStream(
        stream_id=int(info.get("stream_id", 0)),
        name=_first(info, "name"),
        type=_first(info, "type"),
        source_id=_first(info, "source_id"),
        hostname=_first(info, "hostname"),
        channel_format=fmt,
        sfreq=float(_first(info, "nominal_srate", "0") or 0.0),
        labels=labels,
        units=units,
        data=data,
        times_s=times,
        segments=segments,
        has_footer=bool(footer),
        footer_sample_count=footer_count,
        clock_offsets=len(raw.get("clock_times") or []),
    )
