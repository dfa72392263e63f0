"""A recording of any format replayed as a live EEG source: `RecordingSource`.

It yields the same SampleChunks as a live LSL stream, from a file: the file is loaded with
`collector.devices.recordings.detect.load_recording` (XDF, muselsl and Mind Monitor CSV,
EDF/BDF), its EEG stream picked, made ready by `collector.devices.recordings.fixes` (clock
domains, parts, bad stamps, the real rate), and read in chunks, paced against the wall clock or
as fast as asked; the recording's markers ride along as Events.

The stamps are loaded as recorded, so the clock fit (`collector.core.time_repair`, the model in
`collector.core.clock_fit`) sees and counts every bad one; every format's sample times are that
fitted clock (as live). Like pyxdf, XDF streams are then also dejittered with one line per
gap-free stretch; `dejitter=False` skips that last step only.

Time anchor: by default the recording's own start (the file header's `datetime`, written by
LabRecorder when recording started) is the Unix time of the earliest timestamp of any stream in
the file, so an EEG stream that starts 30 s in starts 30 s after the header time and no marker
lands before the recording; `start_time="now"` rebases the recording to the present; an ISO-8601
string or a datetime anchors it there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from collector.core.channels import split_channels, typed_out_message
from collector.core.records import Event, Gap, SampleChunk, SourceEnded, StreamDescription
from collector.core.units import stream_units
from collector.devices.recordings.detect import detect_format, load_recording
from collector.devices.recordings.fixes import (
    PreparedEeg,
    align_clock_domains,
    prepare_eeg,
    recording_start_s,
)
from collector.devices.recordings.model import (
    MarkerDecoder,
    RecordedStream,
    Recording,
    marker_stream,
    parse_iso_datetime,
    pick_eeg_stream,
    recording_events,
)
from collector.errors import UsageError

log = logging.getLogger(__name__)


def _same_named_not_replayed(
    recording: Recording, eeg: RecordedStream, replayed: Sequence[int]
) -> list[tuple[RecordedStream, str]]:
    """Numeric streams with `eeg`'s name (or non-empty source_id) that are not among the
    `replayed` ids, each with why it is not one of its parts. Marker streams are replayed as events
    and never counted here."""
    out = []
    first, last = float(eeg.times_s[0]), float(eeg.times_s[-1])
    for s in recording.streams:
        if (
            s.stream_id in replayed
            or s.is_marker  # replayed as events (MNE-LSL's annotations share the EEG's source_id)
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


def _with_stim_events(recording: Recording, eeg: RecordedStream, stim_index: Sequence[int]) -> Recording:
    """`recording` plus a marker stream of the code onsets in `eeg`'s stim channels (as MNE's
    `find_events` reads them: `MarkerDecoder.onsets`), on the EEG's own (repaired) times."""
    decoder = MarkerDecoder(
        [eeg.labels[i] for i in stim_index], annotations=False, numeric=True, sampled=True
    )
    onsets = decoder.onsets(np.asarray(eeg.data, dtype=np.float64)[:, list(stim_index)])
    stim = marker_stream(
        f"{eeg.name} stim",
        f"{eeg.source_id}:stim",
        [float(eeg.times_s[i]) for i, _ in onsets],
        [value for _, value in onsets],
        stream_id=max(s.stream_id for s in recording.streams) + 1,
    )
    return Recording(path=recording.path, streams=(*recording.streams, stim), start=recording.start)


class RecordingSource:
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
        self.recording: Recording | None = None
        self._data = np.zeros((0, 0))
        self._rel_s = np.zeros(0)
        self._times_ms = np.zeros(0)
        self._gap_after: dict[int, Gap] = {}
        self._gap_index = np.zeros(0, dtype=np.int64)
        self._repaired = np.zeros(0, dtype=np.int64)
        self.prepared: PreparedEeg | None = None
        self._event_rel_s = np.zeros(0)
        self._event_ms = np.zeros(0)
        self._event_values: list[str] = []
        self._event_durations: list[float | None] = []
        self._pos = 0
        self._event_pos = 0
        self._wall_start = 0.0
        self._chunk_n = 1

    # -- EegSource -----------------------------------------------------------------------------
    def open(self) -> StreamDescription:
        # Stamps as recorded: the repair must see (and count) every bad one before any smoothing.
        recording = load_recording(
            self.path,
            dejitter=False,
            strict=self.strict,
            stream=self.stream_name,
            start_time=self.start_time,
        )
        eeg = pick_eeg_stream(recording, self.stream_name)
        split = split_channels(
            eeg.labels, eeg=self.eeg_channels, aux=self.aux_channels, types=eeg.channel_types
        )
        if split.typed_out:
            log.warning("%s", typed_out_message(eeg.name, split))
        if not split.eeg_index:
            raise UsageError(
                f"stream {eeg.name!r} in {self.path.name} has only AUX channels ({', '.join(eeg.labels)}). "
                "Pick another stream with --stream NAME."
            )
        recording = align_clock_domains(recording, eeg)
        eeg = next(s for s in recording.streams if s.stream_id == eeg.stream_id)
        by_id = self.stream_name is not None and self.stream_name.strip() == str(eeg.stream_id)
        # Like pyxdf, only XDF streams get the per-stretch line on top of the clock fit.
        smooth = self.dejitter and detect_format(self.path) == "xdf"
        prepared = prepare_eeg(recording, eeg, join_parts=not by_id, smooth=smooth)
        eeg = prepared.stream
        if split.stim_index:  # trigger codes in a stim channel of the EEG stream are events
            recording = _with_stim_events(recording, eeg, split.stim_index)
        sfreq = prepared.sfreq
        units = [(eeg.units[i] if i < len(eeg.units) else "") or "" for i in split.eeg_index]
        factors, unit = stream_units(units, len(split.eeg_index), eeg.name, log, split.eeg_labels)
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
            unit=unit,
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
        # In µV when the declared unit is a voltage (collector.core.units).
        self._data = np.asarray(eeg.data[:, list(split.eeg_index)], dtype=np.float64) * np.asarray(factors)
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
            raise RuntimeError("RecordingSource.read() before open()")
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

    def __enter__(self) -> RecordingSource:
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

    def _anchor_unix_s(self, recording: Recording) -> float:
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

    def _load_events(self, recording: Recording, prepared: PreparedEeg, t0: float, anchor_s: float) -> None:
        times_s, self._event_values, self._event_durations = recording_events(recording, prepared.part_ids)
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
            Event(
                time_ms=float(self._event_ms[i]),
                value=self._event_values[i],
                duration_s=self._event_durations[i],
            )
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
