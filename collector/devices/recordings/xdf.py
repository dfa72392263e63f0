"""XDF recordings as an EEG source: the same SampleChunks as a live LSL stream, from a file.

Loading goes through `pyxdf.load_xdf` with clock synchronisation and clock-reset handling on.
`load_recording(dejitter=True)` also dejitters regular streams with pyxdf's per-segment linear fit
(the LSL player uses that); `XdfSource` loads the stamps as recorded instead and hands the EEG to
`collector.devices.recordings.fixes`, which repairs isolated bad stamps first (counting them), then
fits a line per gap-free stretch: LabRecorder stores the sender's timestamps, which for chunked
amplifiers and BLE headsets carry several ms of transmission jitter, while the band-power core
assumes even spacing.
Real holes are kept as `Gap`s, not smoothed over. Pass `dejitter=False` to keep the raw timestamps.

After loading, `collector.devices.recordings.fixes` puts every stream on one clock, joins the parts
of a restarted stream, repairs isolated bad stamps and measures the real rate (format-independent steps).

Time anchor: by default the recording's own start (the file header's `datetime`, written by
LabRecorder when recording started) is the Unix time of the earliest timestamp of any stream in
the file, so an EEG stream that starts 30 s in starts 30 s after the header time and no marker
lands before the recording; `start_time="now"` rebases the recording to the present; an ISO-8601
string or a datetime anchors it there.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.channels import fill_labels, split_channels
from collector.core.records import Event, Gap, SampleChunk, SourceEnded, StreamDescription
from collector.errors import UsageError

log = logging.getLogger(__name__)

# Breaks in a regular stream longer than this split pyxdf's dejitter fit and become Gaps.
BREAK_THRESHOLD_S = 0.1
BREAK_THRESHOLD_SAMPLES = 10

_PYXDF_LOGGER = "pyxdf.pyxdf"


@dataclass(frozen=True, slots=True)
class XdfStream:
    """One stream of a recording, as loaded: numeric data (n, ch) or a list of strings."""

    stream_id: int
    name: str
    type: str
    source_id: str
    hostname: str
    channel_format: str
    sfreq: float  # nominal rate; 0 for irregular streams
    labels: tuple[str, ...]
    units: tuple[str, ...]  # per channel, "" when not given
    data: Any  # np.ndarray (n, ch) for numeric streams, list[list[str]] for string streams
    times_s: np.ndarray  # synchronised (and dejittered) timestamps, LSL clock of the recorder
    segments: tuple[tuple[int, int], ...]  # inclusive index ranges without breaks
    has_footer: bool
    footer_sample_count: int | None

    @property
    def is_string(self) -> bool:
        return self.channel_format == "string"

    @property
    def is_marker(self) -> bool:
        return self.is_string or self.type.lower() == "markers"

    @property
    def sample_count(self) -> int:
        return int(self.times_s.shape[0])


@dataclass(frozen=True, slots=True)
class XdfRecording:
    path: Path
    streams: tuple[XdfStream, ...]
    start: datetime | None  # the file header's `datetime`, None when absent


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


def parse_iso_datetime(value: str) -> datetime:
    """ISO-8601 including the `+0000` offsets LabRecorder writes (Python 3.10 wants `+00:00`)."""
    text = value.strip().replace(" ", "T", 1)
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


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


def load_recording(path: str | Path, *, dejitter: bool = True, strict: bool = True) -> XdfRecording:
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
    return XdfRecording(path=path, streams=streams, start=start)


def _convert_stream(raw: dict) -> XdfStream:
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
    return XdfStream(
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
    )


def _describe(s: XdfStream) -> str:
    sid = f", source_id {s.source_id}" if s.source_id else ""
    return (
        f"{s.name!r} (id {s.stream_id}, type {s.type or '?'}{sid}, {len(s.labels)} ch, "
        f"{s.sample_count} samples)"
    )


def pick_eeg_stream(recording: XdfRecording, stream: str | None = None) -> XdfStream:
    """The EEG stream: `stream` names it by the file's numeric stream id, its source_id, its name
    or its type (in that order); without `stream`, the first EEG-typed one with samples.

    A stream the sender restarted appears as several parts with the same name: naming it by name,
    type or source_id picks all of them (`collector.devices.recordings.fixes.stream_parts` joins them);
    its numeric stream id picks that one part alone.

    Raises UsageError (one line, listing the file's streams) when nothing numeric matches; when
    `stream` names a marker (string) stream, the message says so instead of "no numeric stream".
    """
    numeric = [s for s in recording.streams if not s.is_string]
    listing = ", ".join(_describe(s) for s in recording.streams) or "none"
    if stream is not None:
        wanted = stream.strip()
        chosen = (
            [s for s in numeric if wanted.isdigit() and s.stream_id == int(wanted)]
            or [s for s in numeric if s.source_id and s.source_id == wanted]
            or [s for s in numeric if s.name == wanted]
            or [s for s in numeric if s.type.lower() == wanted.lower()]
        )
        strings = [
            s
            for s in recording.streams
            if s.is_string
            and ((wanted.isdigit() and s.stream_id == int(wanted)) or wanted in (s.source_id, s.name))
        ]
        if not chosen and strings:
            raise UsageError(
                f"--stream {stream!r} in {recording.path.name} is {_describe(strings[0])}, a marker stream "
                f"(strings), not EEG: its markers are replayed as events with the EEG anyway. Pick the EEG "
                f"stream with --stream NAME|SOURCE_ID|ID; streams: {listing}."
            )
        if not chosen:
            raise UsageError(
                f"no numeric stream with id, source_id or name {stream!r} in {recording.path.name}; "
                f"streams: {listing}. Pick one with --stream NAME|SOURCE_ID|ID."
            )
    else:
        chosen = [s for s in numeric if s.type.lower() == "eeg"]
        if not chosen:
            raise UsageError(
                f"no EEG stream in {recording.path.name}; streams: {listing}. "
                "Pick a numeric stream with --stream NAME|SOURCE_ID|ID."
            )
    with_data = [s for s in chosen if s.sample_count > 0]
    if not with_data:
        raise UsageError(
            f"EEG stream {chosen[0].name!r} in {recording.path.name} has no samples. "
            "Use a recording that captured EEG, or pick another stream with --stream NAME|SOURCE_ID|ID."
        )
    pick = with_data[0]
    others = [s for s in chosen if s is not pick and (s.name, s.source_id) != (pick.name, pick.source_id)]
    if others:
        log.info(
            "%d streams match in %s; using %s. Others: %s. Pick another with --stream SOURCE_ID or ID.",
            len(others) + 1,
            recording.path.name,
            _describe(pick),
            ", ".join(_describe(s) for s in others),
        )
    return pick


def _same_named_not_replayed(
    recording: XdfRecording, eeg: XdfStream, replayed: Sequence[int]
) -> list[tuple[XdfStream, str]]:
    """Numeric streams with `eeg`'s name (or non-empty source_id) that are not among the
    `replayed` ids, each with why it is not one of its parts."""
    out = []
    first, last = float(eeg.times_s[0]), float(eeg.times_s[-1])
    for s in recording.streams:
        if (
            s.stream_id in replayed
            or s.is_string
            or not (s.name == eeg.name or (eeg.source_id and s.source_id == eeg.source_id))
        ):
            continue
        if len(s.labels) != len(eeg.labels):
            why = f"{len(s.labels)} channels, not {len(eeg.labels)}"
        elif s.type != eeg.type:
            why = f"type {s.type or '?'}"
        elif not s.sample_count:
            why = "no samples"
        elif float(s.times_s[0]) <= last and float(s.times_s[-1]) >= first:
            why = "overlaps it in time: another device"
        elif (s.source_id or s.hostname) != (eeg.source_id or eeg.hostname):
            why = "another source_id or host"
        else:
            why = "picked out by --stream"
        out.append((s, why))
    return out


def marker_value(sample: Sequence[Any]) -> str:
    values = []
    for v in sample:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        values.append(str(v))
    return values[0] if len(values) == 1 else ",".join(values)


def recording_markers(
    recording: XdfRecording, eeg: XdfStream | Sequence[int]
) -> tuple[np.ndarray, list[str]]:
    """Every marker of the recording's other streams: (times in the file's seconds, values), by time.

    eeg: the EEG stream, or the stream ids of its parts, which are not markers even when typed so.
    """
    skip = {eeg.stream_id} if isinstance(eeg, XdfStream) else set(eeg)
    times: list[float] = []
    values: list[str] = []
    for s in recording.streams:
        if s.stream_id in skip or not s.is_marker or s.sample_count == 0:
            continue
        samples = s.data if s.is_string else np.asarray(s.data).tolist()
        for t, sample in zip(s.times_s, samples, strict=True):
            times.append(float(t))
            values.append(marker_value(sample))
    order = np.argsort(np.asarray(times), kind="stable")
    return np.asarray(times, dtype=np.float64)[order], [values[i] for i in order]


class XdfSource:
    """Reads one XDF file's EEG stream as SampleChunks; markers ride along as Events.

    speed: None reads as fast as the caller asks (chunks of `chunk_s`); 1.0 paces reads against
    the wall clock (real time), 2.0 twice as fast, and so on. `clock` is the wall clock used for
    pacing (monotonic seconds).
    """

    def __init__(
        self,
        path: str | Path,
        stream: str | None = None,
        *,
        start_time: str | datetime = "file",
        speed: float | None = None,
        chunk_s: float = 0.25,
        dejitter: bool = True,
        strict: bool = True,
        eeg_channels: Sequence[str] | None = None,
        aux_channels: Sequence[str] = (),
        model: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and not speed > 0:
            raise UsageError(f"replay speed must be a positive number, {speed!r} is invalid.")
        if not chunk_s > 0:
            raise UsageError(f"chunk length must be positive, {chunk_s!r} is invalid.")
        self.path = Path(path)
        self.stream_name = stream
        self.start_time = start_time
        self.speed = speed
        self.chunk_s = chunk_s
        self.dejitter = dejitter
        self.strict = strict
        self.eeg_channels = eeg_channels
        self.aux_channels = tuple(aux_channels)
        self.model = model
        self._clock = clock  # monotonic seconds; tests pass a fake one to check pacing exactly
        self.description: StreamDescription | None = None
        self.recording: XdfRecording | None = None
        self._data = np.zeros((0, 0))
        self._rel_s = np.zeros(0)
        self._times_ms = np.zeros(0)
        self._gap_after: dict[int, Gap] = {}
        self._gap_index = np.zeros(0, dtype=np.int64)
        self._repaired = np.zeros(0, dtype=np.int64)
        self.prepared = None
        self._event_rel_s = np.zeros(0)
        self._event_ms = np.zeros(0)
        self._event_values: list[str] = []
        self._pos = 0
        self._event_pos = 0
        self._wall_start = 0.0
        self._chunk_n = 1

    # -- EegSource -----------------------------------------------------------------------------
    def open(self) -> StreamDescription:
        from collector.devices.recordings.detect import (  # XDF, CSV, EDF/BDF readers
            detect_format,
            load_any_recording,
        )
        from collector.devices.recordings.fixes import align_clock_domains, prepare_eeg, recording_start_s

        # Stamps as recorded: the repair must see (and count) every bad one before any smoothing.
        recording = load_any_recording(
            self.path,
            dejitter=False,
            strict=self.strict,
            stream=self.stream_name,
            start_time=self.start_time,
        )
        eeg = pick_eeg_stream(recording, self.stream_name)
        split = split_channels(eeg.labels, eeg=self.eeg_channels, aux=self.aux_channels)
        if not split.eeg_index:
            raise UsageError(
                f"stream {eeg.name!r} in {self.path.name} has only AUX channels ({', '.join(eeg.labels)}). "
                "Pick another stream with --stream NAME."
            )
        recording = align_clock_domains(recording, eeg)
        eeg = next(s for s in recording.streams if s.stream_id == eeg.stream_id)
        by_id = self.stream_name is not None and self.stream_name.strip() == str(eeg.stream_id)
        # Like pyxdf, only XDF streams are dejittered; CSV/EDF times are kept as the file has them.
        smooth = self.dejitter and detect_format(self.path) == "xdf"
        prepared = prepare_eeg(recording, eeg, join_parts=not by_id, smooth=smooth)
        eeg = prepared.stream
        sfreq = prepared.sfreq
        units = [eeg.units[i] for i in split.eeg_index if i < len(eeg.units) and eeg.units[i]]
        source_id = eeg.source_id or f"xdf:{self.path.name}:{eeg.name}"
        rivals = _same_named_not_replayed(recording, eeg, prepared.part_ids)
        self.description = StreamDescription(
            name=eeg.name,
            type=eeg.type,
            source_id=source_id,
            # Same name (or source_id) as a stream not replayed here: the file's id tells them apart.
            stream_key=f"{source_id}:{prepared.part_ids[0]}" if rivals else "",
            sfreq=float(sfreq),
            channels=split.eeg_labels,
            unit=units[0] if units else "microvolts",
            model=self.model,
            hostname=eeg.hostname,
            aux_channels=split.aux_labels,
            nominal_sfreq=prepared.nominal_sfreq,
            measured_sfreq=prepared.measured_sfreq,
            recheck_rate=False,
        )
        if rivals:
            log.warning(
                "%s holds %d other stream(s) named %r that are not replayed: %s. Replaying id %s as "
                "stream_id %s; pick another with --stream ID.",
                self.path.name,
                len(rivals),
                eeg.name,
                "; ".join(f"id {s.stream_id} ({why})" for s, why in rivals),
                "+".join(str(i) for i in prepared.part_ids),
                self.description.stream_id,
            )
        self.recording = recording
        self.prepared = prepared
        self._data = np.asarray(eeg.data[:, list(split.eeg_index)], dtype=np.float64)
        # The header's datetime is when recording began: the earliest stamp of any stream.
        t0 = recording_start_s(recording, prepared)
        self._rel_s = eeg.times_s - t0
        anchor_s = self._anchor_unix_s(recording)
        self._times_ms = (anchor_s + self._rel_s) * 1000.0
        self._gap_after = {
            int(i): Gap(start_ms=float(self._times_ms[i - 1]), end_ms=float(self._times_ms[i]))
            for i in prepared.breaks
        }
        self._gap_index = np.asarray(sorted(self._gap_after), dtype=np.int64)
        self._repaired = np.asarray(prepared.repaired, dtype=np.int64)
        self._load_events(recording, prepared, t0, anchor_s)
        self._chunk_n = max(1, int(round(self.chunk_s * sfreq))) if sfreq > 0 else 64
        self._pos = 0
        self._event_pos = 0
        self._wall_start = self._clock()
        log.info(
            "replaying %s: stream %s, %d channel%s (%s), %.6g Hz, %d samples (%.1f s)%s%s",
            self.path.name,
            eeg.name,
            len(split.eeg_labels),
            "" if len(split.eeg_labels) == 1 else "s",
            ", ".join(split.eeg_labels),
            sfreq,
            eeg.sample_count,
            float(self._rel_s[-1] - self._rel_s[0]),
            f", {len(self._gap_after)} gap(s)" if self._gap_after else "",
            f", {len(self._event_ms)} marker(s)" if len(self._event_ms) else "",
        )
        return self.description

    def read(self, timeout: float) -> SampleChunk | None:
        if self.description is None:
            raise RuntimeError("XdfSource.read() before open()")
        n = self._rel_s.shape[0]
        if self._pos >= n:
            raise SourceEnded(f"end of {self.path.name}")
        if self.speed is None:
            end = min(n, self._pos + self._chunk_n)
        else:
            end = self._due_end()
            if end <= self._pos:
                wait_s = (self._rel_s[self._pos] / self.speed) - (self._clock() - self._wall_start)
                if wait_s > timeout:
                    time.sleep(max(0.0, timeout))
                    end = self._due_end()
                    if end <= self._pos:
                        return None
                else:
                    time.sleep(max(0.0, wait_s))
                    end = max(self._due_end(), self._pos + 1)
        return self._make_chunk(self._pos, end)

    def close(self) -> None:
        self._data = np.zeros((0, 0))

    def __enter__(self) -> XdfSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def samples_read(self) -> int:
        return self._pos

    @property
    def total_samples(self) -> int:
        return int(self._rel_s.shape[0])

    @property
    def seconds_read(self) -> float:
        """Recording time replayed so far: first to last sample read, plus one sample period."""
        if self._pos == 0 or self.description is None:
            return 0.0
        period = 1.0 / self.description.sfreq if self.description.sfreq > 0 else 0.0
        return float(self._rel_s[self._pos - 1]) + period

    # -- internals -----------------------------------------------------------------------------
    def _due_end(self) -> int:
        assert self.speed is not None
        elapsed_rel = (self._clock() - self._wall_start) * self.speed
        return int(np.searchsorted(self._rel_s, elapsed_rel, side="right"))

    def _anchor_unix_s(self, recording: XdfRecording) -> float:
        start = self.start_time
        if isinstance(start, datetime):
            return start.timestamp()
        if start == "now":
            return time.time()
        if start == "file":
            if recording.start is not None:
                return recording.start.timestamp()
            log.warning(
                "%s has no recording date in its header; anchoring the first sample to now "
                "(pass --start-time ISO-8601 to choose)",
                self.path.name,
            )
            return time.time()
        try:
            return parse_iso_datetime(str(start)).timestamp()
        except ValueError:
            raise UsageError(
                f"start time {start!r} is not 'file', 'now' or an ISO-8601 date-time "
                "like 2024-05-01T14:30:00+02:00."
            ) from None

    def _load_events(self, recording: XdfRecording, prepared, t0: float, anchor_s: float) -> None:
        times_s, self._event_values = recording_markers(recording, prepared.part_ids)
        self._event_rel_s = times_s - t0
        self._event_ms = (anchor_s + self._event_rel_s) * 1000.0

    def _make_chunk(self, start: int, end: int) -> SampleChunk:
        n = self._rel_s.shape[0]
        lo, hi = np.searchsorted(self._gap_index, [start, end], side="left")
        gaps = tuple(self._gap_after[int(i)] for i in self._gap_index[lo:hi])
        # Events before the next chunk's first sample belong here; the last chunk takes the rest.
        if end >= n:
            event_end = self._event_rel_s.shape[0]
        else:
            event_end = int(np.searchsorted(self._event_rel_s, self._rel_s[end], side="left"))
        events = tuple(
            Event(time_ms=float(self._event_ms[i]), value=self._event_values[i])
            for i in range(self._event_pos, event_end)
        )
        self._event_pos = max(self._event_pos, event_end)
        self._pos = end
        lo, hi = np.searchsorted(self._repaired, [start, end], side="left")
        return SampleChunk(
            data=self._data[start:end].copy(),
            times_ms=self._times_ms[start:end].copy(),
            gaps=gaps,
            events=events,
            repaired=tuple(int(i) - start for i in self._repaired[lo:hi]),
        )
