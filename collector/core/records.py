"""The small records every source yields, and the Protocols a source implements.

Data flows one way: source -> band-power core / chunker -> spool -> uploader -> API.
Sources map their own clock to Unix time, so everything downstream speaks Unix milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class SourceEnded(Exception):
    """A finite source (a file) has yielded its last sample. Not an error."""


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """What a stream is: read from the LSL header, the XDF header or a device profile."""

    name: str
    type: str
    source_id: str
    sfreq: float  # the rate windows, segments and PSD use, Hz (the measured one when the declared is off)
    channels: tuple[str, ...]  # labels of the channels carried in SampleChunk.data (EEG only)
    unit: str = "microvolts"
    model: str = ""  # e.g. "Muse 2"; "" when unknown
    hostname: str = ""
    aux_channels: tuple[str, ...] = ()  # labels present in the stream but not EEG (dropped)
    nominal_sfreq: float | None = None  # declared rate (0 = irregular); None: same as sfreq
    measured_sfreq: float | None = None  # rate the timestamps show, gaps excluded; None: not yet
    recheck_rate: bool = True  # False: the source measured the whole stream (a replay)
    # Overrides source_id/name in stream_id when those do not tell this stream from another one
    # (two same-named devices in one file: the file's stream id is added).
    stream_key: str = ""

    @property
    def stream_id(self) -> str:
        return f"eeg:{self.stream_key or self.source_id or self.name}"


MARK_SOURCE = "mark"  # an Event's `source` for the user's own marks, not a stream's marker


@dataclass(frozen=True, slots=True)
class Event:
    time_ms: float  # Unix ms
    value: str
    source: str = ""  # "mark": the user's own (`collector mark`, `m`); "": a stream's or a file's marker
    duration_s: float | None = None  # an annotation's duration, when it has one


@dataclass(frozen=True, slots=True)
class Gap:
    start_ms: float  # Unix ms of the last sample before the gap
    end_ms: float  # Unix ms of the first sample after the gap


@dataclass(frozen=True, slots=True)
class SampleChunk:
    """Consecutive samples of one stream.

    data: (n_samples, n_channels) float64 in `StreamDescription.unit`, EEG channels only.
    times_ms: (n_samples,) float64 Unix milliseconds of each sample (fractional ms kept).
    gaps: holes in the signal that end inside (or right before) this chunk.
    events: markers that fall in this chunk's time span.
    repaired: positions (in this chunk) of samples whose timestamp the source repaired.
    sfreq: a new rate measured by the source from here on (live re-check), None when unchanged.
    """

    data: np.ndarray
    times_ms: np.ndarray
    gaps: tuple[Gap, ...] = ()
    events: tuple[Event, ...] = ()
    repaired: tuple[int, ...] = ()
    sfreq: float | None = None

    def __len__(self) -> int:
        return int(self.times_ms.shape[0])


@dataclass(frozen=True, slots=True)
class ScreenFrame:
    """One encoded screenshot."""

    image: bytes
    mime_type: str  # image/jpeg | image/png | image/webp
    time_ms: int  # Unix ms of the capture
    monitor: int | str
    captured_size: tuple[int, int]  # (width, height) grabbed
    sent_size: tuple[int, int]  # (width, height) encoded
    diff_score: float | None = None
    skipped_before: int = 0  # near-identical frames skipped since the last sent frame
    paused_periods: tuple[tuple[int, int], ...] = ()  # (start_ms, end_ms) of privacy pauses
    extra: dict = field(default_factory=dict)
    # The local record's small copy (collector.core.screen_copy), made from the image before it was
    # encoded; None: the record makes it from `image` after delivery (a decode first: 2-3x the CPU).
    local_copy: bytes | None = None


@runtime_checkable
class EegSource(Protocol):
    """A source of EEG samples: an LSL inlet, a Muse via muselsl, an XDF file replayed."""

    def open(self) -> StreamDescription:
        """Find and open the stream; raise NoSourceError with the fix when there is none."""
        ...

    def read(self, timeout: float) -> SampleChunk | None:
        """Samples that arrived since the last read, None if none within `timeout` seconds.

        Raises SourceEnded after the last sample of a finite source.
        """
        ...

    def close(self) -> None: ...

    def __enter__(self) -> EegSource: ...

    def __exit__(self, *exc: object) -> None: ...
