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

A *truncated* file (the recorder crashed or was killed: App-LabRecorder#107, neurobooth-os#812)
is not corrupt: its chunks are whole up to where it ends, then one chunk is cut short or the
stream footers are missing. `_complete_end` walks the chunk lengths (XDF's
[NumLengthBytes][Length][Tag] framing) to the end of the last whole chunk; pyxdf reads exactly
that prefix, so the samples are those of the complete chunks, as pyxdf's own load of the same
file gives them (pyxdf logs the cut chunk as corruption and stops). One warning says where the
file ends and what was recovered; a file with no complete sample is refused in one line.
"""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.channels import fill_labels
from collector.devices.recordings.model import RecordedStream, Recording, is_gzip, parse_iso_datetime
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


class _Prefix(io.RawIOBase):
    """The first `limit` bytes of a binary file, as a file pyxdf reads (it stops at their end)."""

    def __init__(self, handle: Any, limit: int) -> None:
        super().__init__()
        self._handle = handle
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return int(self._handle.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._handle.seek(offset, whence))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        room = max(0, min(len(view), self._limit - self.tell()))
        data = self._handle.read(room) if room else b""
        view[: len(data)] = data
        return len(data)


def _complete_end(handle: Any) -> tuple[int, int, bool]:
    """(end of the last whole chunk, bytes in the file, whether a chunk is cut short) by walking
    the chunk lengths from byte 4. A length prefix XDF does not allow (corruption, not an end) stops
    the walk as if the file were whole there, so pyxdf's own checks see the rest."""
    handle.seek(4)
    end = 4
    while True:
        try:
            width = handle.read(1)
            if not width:
                return end, end, False
            if width[0] not in (1, 4, 8):
                return end, end, False  # not a chunk boundary: left to pyxdf's corruption checks
            raw = handle.read(width[0])
            if len(raw) < width[0]:
                return end, end + 1 + len(raw), True
            target = end + 1 + width[0] + int.from_bytes(raw, "little")
            handle.seek(target)  # a plain file seeks past its end; gzip stops at the end
            if not handle.read(1):
                reached = _size(handle)
                if reached < target:
                    return end, reached, True
                return target, target, False
            handle.seek(target)
            end = target
        except EOFError:  # a gzip stream cut short, inside a chunk or after one
            return end, max(end + 1, int(handle.tell())), True


def _size(handle: Any) -> int:
    """Bytes in a file (decompressed bytes for gzip, read through), from where `handle` is."""
    try:
        return int(handle.seek(0, 2))
    except (OSError, ValueError):  # gzip: no seek from the end; read on to it
        while handle.read(1 << 20):
            pass
        return int(handle.tell())


def load_xdf(path: str | Path, *, dejitter: bool = True, strict: bool = True) -> Recording:
    """Load every stream of an XDF file; UsageError (one line) for a missing or corrupt file.

    strict: a file pyxdf had to repair (corrupt chunks, sample counts that differ from the
    footer) is refused; strict=False loads what is readable, with a warning. A truncated file
    (cut inside a chunk, or without stream footers) is read up to its last complete chunk with
    one warning, strict or not; UsageError when that holds no sample at all.
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
        opener = gzip.open if is_gzip(path) else open
        # Our own handle: pyxdf leaves its file open when the magic bytes are wrong.
        with opener(path, "rb") as handle, warnings.catch_warnings():
            if handle.read(4) != b"XDF:":
                raise UsageError(f"{path} is not an XDF file (no 'XDF:' at its start). Check the path.")
            complete, size, cut = _complete_end(handle)
            handle.seek(0)
            warnings.simplefilter("ignore")  # numpy warnings from fits over tiny streams
            raw_streams, header = pyxdf.load_xdf(
                io.BufferedReader(_Prefix(handle, complete)) if cut else handle,
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

    streams = tuple(_convert_stream(s) for s in raw_streams)
    # A recorder that stopped without closing the file writes no footers: truncated, not corrupt.
    cut = cut or bool(streams and any(not s.has_footer for s in streams))
    if cut and not any(s.sample_count for s in streams):
        raise UsageError(
            f"XDF file {path} is truncated at byte {size:,} and holds no complete chunk of samples: "
            "nothing to replay. Use a recording that ran longer before the recorder stopped."
        )
    if header is None and not raw_streams:
        raise _corrupt(path, "no XDF chunks could be read")
    problems = list(capture.errors)
    for s in streams:
        if not s.has_footer:
            if not cut:
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
    if cut:
        log.warning("%s", _truncation_note(path, size, complete, streams))

    start = None
    start_text = _first((header or {}).get("info", {}) or {}, "datetime")
    if start_text:
        try:
            start = parse_iso_datetime(start_text)
        except ValueError:
            log.warning("XDF header datetime %r is not ISO-8601; ignoring it", start_text)
    return Recording(path=path, streams=streams, start=start)


def _truncation_note(path: Path, size: int, complete: int, streams: tuple[RecordedStream, ...]) -> str:
    where = (
        f"ends at byte {size:,} inside a chunk, so the recorder stopped while writing"
        if size > complete
        else f"ends at byte {size:,} without stream footers, so the recorder stopped before closing it"
    )
    kept = ", ".join(
        f"{s.name or s.stream_id} {s.sample_count:,} samples"
        + (f" ({s.sample_count / s.sfreq:.1f} s)" if s.sfreq > 0 else "")
        for s in streams
    )
    return (
        f"XDF file {path} is truncated: it {where}; replaying what its complete chunks hold, up to "
        f"byte {complete:,}: {kept}."
    )


def _convert_stream(raw: dict) -> RecordedStream:
    info = raw["info"]
    n_channels = int(_first(info, "channel_count", "0") or 0)
    fmt = _first(info, "channel_format", "float32")
    times = np.asarray(raw["time_stamps"], dtype=np.float64)
    if fmt == "string":
        data: Any = [list(sample) for sample in raw["time_series"]]
        # XDF strings are UTF-8; pyxdf replaces other bytes (a Latin-1 "ü") with U+FFFD, for good.
        mangled = [v for sample in data for v in sample if "\ufffd" in v]
        if mangled:
            log.warning(
                "stream %r: %d marker value(s) hold bytes that are not UTF-8 (as XDF requires), "
                "delivered with them replaced by '\ufffd' (e.g. %r). Have the sender send its text as UTF-8.",
                _first(info, "name"),
                len(mangled),
                mangled[0],
            )
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
        channel_types=tuple(t or "" for t in _channel_field(info, "type")),
    )
