"""The in-memory model of a recording, whatever its file format: a `Recording` of `RecordedStream`s.

Every reader (XDF, muselsl and Mind Monitor CSV, EDF/BDF) returns a `Recording`; everything after
loading (stream choice, clock domains, parts, stamp repair, events, pacing) works on it alone.
Also here: the helpers every stage of a replay shares on that model (the marker values and times
of a recording, the choice of its EEG stream, a marker stream built from events, the recording's
start as an ISO-8601 date-time).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from collector.errors import UsageError

log = logging.getLogger(__name__)

ANNOTATIONS_TYPE = "annotations"  # MNE-LSL's PlayerLSL stream `<name>-annotations`


@dataclass(frozen=True, slots=True)
class RecordedStream:
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
    clock_offsets: int | None = (
        None  # XDF ClockOffset chunks recorded for it; None: not a notion of the format
    )
    channel_types: tuple[str, ...] = ()  # per channel as declared (XDF desc), "" when not given

    @property
    def is_string(self) -> bool:
        return self.channel_format == "string"

    @property
    def is_marker(self) -> bool:
        return self.is_string or self.type.lower() in ("markers", ANNOTATIONS_TYPE)

    @property
    def is_annotations(self) -> bool:
        """MNE-LSL's annotations stream: one float channel per description (see `sample_events`)."""
        return not self.is_string and self.type.lower() == ANNOTATIONS_TYPE

    @property
    def sample_count(self) -> int:
        return int(self.times_s.shape[0])


@dataclass(frozen=True, slots=True)
class Recording:
    path: Path
    streams: tuple[RecordedStream, ...]
    start: datetime | None  # the file header's `datetime`, None when absent


def parse_iso_datetime(value: str) -> datetime:
    """ISO-8601 including the `+0000` offsets LabRecorder writes (Python 3.10 wants `+00:00`)."""
    text = value.strip().replace(" ", "T", 1)
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def marker_stream(
    name: str, source_id: str, times_s: Sequence[float], values: Sequence[str], *, stream_id: int
) -> RecordedStream:
    """A string stream of events (one value per marker), like an LSL marker stream in XDF."""
    times = np.asarray(times_s, dtype=np.float64)
    return RecordedStream(
        stream_id=stream_id,
        name=name,
        type="Markers",
        source_id=source_id,
        hostname="",
        channel_format="string",
        sfreq=0.0,
        labels=("marker",),
        units=("",),
        data=[[str(v)] for v in values],
        times_s=times,
        segments=((0, len(times) - 1),) if len(times) else (),
        has_footer=True,
        footer_sample_count=None,
    )


def _describe(s: RecordedStream) -> str:
    sid = f", source_id {s.source_id}" if s.source_id else ""
    return (
        f"{s.name!r} (id {s.stream_id}, type {s.type or '?'}{sid}, {len(s.labels)} ch, "
        f"{s.sample_count} samples)"
    )


def pick_eeg_stream(recording: Recording, stream: str | None = None) -> RecordedStream:
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
        chosen = [s for s in numeric if s.type.strip().lower() == "eeg"]
        if not chosen:  # no stream type, but EEG channels (MNE-LSL's player of EEG with EOG, stim...)
            chosen = [
                s
                for s in numeric
                if not s.type.strip() and any(t.strip().lower() == "eeg" for t in s.channel_types)
            ]
            if chosen:
                log.info(
                    "%s: stream %r declares no type but EEG channels; replaying it as the EEG",
                    recording.path.name,
                    chosen[0].name,
                )
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


def marker_value(sample: Sequence[Any]) -> str:
    """One marker sample as text: its value, or its values joined by commas; whole floats as ints."""
    values = []
    for v in sample:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        values.append(str(v))
    return values[0] if len(values) == 1 else ",".join(values)


def sample_events(
    sample: Sequence[Any], labels: Sequence[str], *, annotations: bool
) -> list[tuple[str, float | None]]:
    """The events in one marker sample: [(value, duration in s or None)], often none.

    A marker stream sampled at a rate (stimulus tools sending a string every 1-2 ms) is mostly
    empty: a sample whose channels are all empty (or blank) is no event. An annotations stream
    (MNE-LSL's `<name>-annotations`: one float channel per description, the value the duration in
    s or -1 when there is none, NaN or 0 otherwise) gives one event per channel that is set,
    carrying the channel label as its value.
    """
    if annotations:
        out: list[tuple[str, float | None]] = []
        for i, v in enumerate(sample):
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(x) and x != 0.0:
                label = labels[i] if i < len(labels) and labels[i] else f"annotation {i + 1}"
                out.append((label, x if x > 0 else None))
        return out
    if all(str(v).strip() == "" for v in sample):
        return []
    return [(marker_value(sample), None)]


class MarkerDecoder:
    """One marker stream's samples turned into events, sample after sample (replay and live alike).

    Strings and one-hot annotations follow `sample_events`. A *numeric* marker stream sampled at a
    rate (`sampled`: a trigger line recorded as a channel, 0 at rest) is read as MNE's
    `find_events` reads a stim channel: an event where the level changes to a value that is not
    0/NaN on every channel; the level held over the following samples, and the return to rest,
    are not events (`onsets`). An irregular numeric stream sends a sample only for an event: each
    one is.
    """

    def __init__(self, labels: Sequence[str], *, annotations: bool, numeric: bool, sampled: bool) -> None:
        self.labels = tuple(labels)
        self.annotations = annotations
        self.level = numeric and sampled and not annotations
        self._previous: np.ndarray | None = None  # the last sample seen (level mode), NaN as 0

    def events(self, sample: Sequence[Any]) -> list[tuple[str, float | None]]:
        """[(value, duration in s or None)] of one sample, often none."""
        if not self.level:
            return sample_events(sample, self.labels, annotations=self.annotations)
        return [(value, None) for _, value in self.onsets(np.asarray([sample], dtype=np.float64))]

    def onsets(self, block: np.ndarray) -> list[tuple[int, str]]:
        """Level mode, for consecutive samples (n, n_channels) of a numeric stream: [(row, value)]
        where the level changes to a code; the state carries over to the next block."""
        values = np.nan_to_num(np.asarray(block, dtype=np.float64).reshape(len(block), -1), nan=0.0)
        if values.shape[0] == 0:
            return []
        first = self._previous if self._previous is not None else np.zeros(values.shape[1])
        before = np.vstack([first[None, :], values[:-1]])
        self._previous = values[-1].copy()
        rows = np.flatnonzero(np.any(values != before, axis=1) & np.any(values != 0.0, axis=1))
        return [(int(i), marker_value(values[i].tolist())) for i in rows]


def recording_markers(
    recording: Recording, eeg: RecordedStream | Sequence[int]
) -> tuple[np.ndarray, list[str]]:
    """Every marker of the recording's other streams: (times in the file's seconds, values), by
    time; `recording_events` adds each one's duration."""
    times, values, _ = recording_events(recording, eeg)
    return times, values


def recording_events(
    recording: Recording, eeg: RecordedStream | Sequence[int]
) -> tuple[np.ndarray, list[str], list[float | None]]:
    """Every marker of the recording's other streams: (times in the file's seconds, values,
    durations in s or None), by time. Empty samples, and a sampled trigger level held or back at
    rest, are not markers (see `MarkerDecoder`).

    eeg: the EEG stream, or the stream ids of its parts, which are not markers even when typed so.
    """
    skip = {eeg.stream_id} if isinstance(eeg, RecordedStream) else set(eeg)
    times: list[float] = []
    values: list[str] = []
    durations: list[float | None] = []
    for s in recording.streams:
        if s.stream_id in skip or not s.is_marker or s.sample_count == 0:
            continue
        decoder = MarkerDecoder(
            s.labels, annotations=s.is_annotations, numeric=not s.is_string, sampled=s.sfreq > 0
        )
        if decoder.level:  # a trigger line: its code onsets, at once
            for i, value in decoder.onsets(np.asarray(s.data)):
                times.append(float(s.times_s[i]))
                values.append(value)
                durations.append(None)
            continue
        samples = s.data if s.is_string else np.asarray(s.data).tolist()
        for t, sample in zip(s.times_s, samples, strict=True):
            for value, duration in decoder.events(sample):
                times.append(float(t))
                values.append(value)
                durations.append(duration)
    order = np.argsort(np.asarray(times), kind="stable")
    return (
        np.asarray(times, dtype=np.float64)[order],
        [values[i] for i in order],
        [durations[i] for i in order],
    )


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """Whether the file is gzip-compressed, from its first bytes (not its name): an XDF as .xdfz or
    .xdf.gz, a CSV as .csv.gz. Every reader opens such a file through gzip."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC
