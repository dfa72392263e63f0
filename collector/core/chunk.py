"""Streaming chunker: SampleChunks in, EEG chunk artifacts (the `data` of `eeg` evidence) out.

`EegChunker.push` takes the source's SampleChunks as they arrive and returns every chunk of
`round(chunk_s * sfreq)` samples that is complete; `flush` returns the rest at the end of the
capture as a final, shorter chunk. Band-power windows run over the continuous stream across chunk
boundaries: their ends lie on a fixed step grid counted in samples from the stream's first sample
(window - 1, window - 1 + step, ...), and a window belongs to the chunk holding its last sample.
The chunker keeps only the last window - 1 samples of context plus the chunk being filled, so
memory stays flat however long the capture runs.

Chunks are also bounded by their encoded size (`max_bytes`, never above HARD_MAX_CHUNK_BYTES =
9,000,000, under the API's 10 MB): a chunk whose JSON would be larger is cut shorter before it is
handed out, and the stream's later chunks keep that shorter length, so many channels at a high
rate (136 channels at 2048 Hz is about 3 MB/s: 2.7 s per chunk) still fit; `sample_count`,
`times_ms` and `samples` always state the chunk's real length.

Every sample of every EEG channel is in exactly one chunk, in order. One sample always waits in
the chunker until the next arrives or the capture ends, so markers after the last sample (and
gaps not placed yet) ride in the final chunk: none is ever dropped. A source may report a new
measured rate (`SampleChunk.sfreq`, live re-check): when the rate to use (`collector.core.time_repair.
rate_to_use`) moves by more than 1 %, windows, segments, PSD and chunk length follow it from the
chunk being filled on, with the window grid restarted there. Gaps (the source's `Gap`
records, plus holes found in the timestamps: consecutive samples further apart than
`collector.core.clock.gap_threshold_s`, the same rule the sources use: 4 periods, at least 20 ms)
are listed in the chunk where the signal resumes; a window spanning a gap gets
`quality.gap = true` and null powers: nothing is computed over samples that do not exist. The
window grid is not restarted after a gap. Markers go to the chunk whose time span holds them:
chunk k spans (last sample of chunk k - 1, last sample of chunk k], the first chunk also takes
markers before the first sample, and the final chunk takes everything left. A marker that arrives
after its chunk was emitted goes into the next chunk, with its own time_ms.

The artifact each chunk becomes (its schema, version 1) is written down in
collector/core/chunk_artifact.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from collector import __version__
from collector.core.bandpower import BandPowers, BandSettings, compute_band_powers, load_fft
from collector.core.channels import distinct_keys
from collector.core.chunk_artifact import Series, encode, stream_fields, write_artifact
from collector.core.clock import gap_threshold_s
from collector.core.evidence import EvidenceChunk
from collector.core.records import Event, Gap, SampleChunk, StreamDescription
from collector.core.time_repair import RATE_TOLERANCE, rate_to_use
from collector.errors import UsageError

# The API takes at most 10 MB (10 MiB decoded) per item; stay well under both readings of "MB".
HARD_MAX_CHUNK_BYTES = 9_000_000
# A replay's chunks are sized for delivery: long (60 s), but a few MB at most, so one request
# stays quick to send and to retry.
DELIVERY_CHUNK_S = 60.0
DELIVERY_CHUNK_BYTES = 4_000_000
NO_POWERS_AUX = "auxiliary sensor stream (accelerometer, gyroscope or PPG): no band powers"
_FIT_MARGIN = 0.95  # when a chunk is cut to fit, aim this far under the bound (values vary)


@dataclass(frozen=True, slots=True)
class EegChunkOut:
    chunk_index: int
    t0_ms: int
    sample_count: int
    band_powers: dict[str, float]  # mean relative power per band; {} if no window had powers
    artifact: dict
    encoded: bytes | None = field(default=None, repr=False, compare=False)  # to_bytes(), once
    # The artifact's lists orjson may write (its windows, when their floats allow: chunk_artifact.encode).
    series: Series | None = field(default=None, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        if self.encoded is not None:
            return self.encoded
        return encode(self.artifact, self.series)


def encode_artifact(artifact: dict, series: Series | None = None) -> bytes:
    """The artifact as compact UTF-8 JSON (the evidence's `data` before base64)."""
    return encode(artifact, series)


def chunk_evidence(out: EegChunkOut, device_name: str) -> EvidenceChunk:
    """The evidence of one chunk; the pipeline adds the block, the spool keeps `out.to_bytes()`."""
    return EvidenceChunk(
        type="eeg",
        mime_type="application/json",
        timestamp_ms=out.t0_ms,
        chunk_index=out.chunk_index,
        sample_count=out.sample_count,
        device_name=device_name,
        band_powers=dict(out.band_powers) or None,
        metadata={
            "capture_id": out.artifact["capture_id"],
            "stream_id": out.artifact["stream_id"],
            "collector_version": out.artifact["collector_version"],
        },
    )


class EegChunker:
    """Turns a stream's SampleChunks into EEG chunk artifacts; see the module docstring."""

    def __init__(
        self,
        description: StreamDescription,
        settings: BandSettings,
        *,
        capture_id: str,
        stream_id: str,
        chunk_s: float = 5.0,
        collector_version: str = __version__,
        start_index: int = 0,
        gap_threshold_ms: float | None = None,
        sample_decimals: int | None = 3,
        max_bytes: int = HARD_MAX_CHUNK_BYTES,
        hold_samples: int = 0,
        band_powers: bool = True,
    ) -> None:
        """`band_powers=False`: an auxiliary sensor stream (accelerometer, gyroscope, PPG), chunked,
        identified and counted like EEG, with no windows (the artifact's `no_powers_reason` says so)."""
        load_fft()
        self.description = description
        self.settings = settings
        self.sfreq = float(description.sfreq)
        # Distinct keys per column (duplicate/empty labels never merge channels): collector.core.channels.
        self.keys = distinct_keys(description.channels)
        nominal = description.nominal_sfreq
        self.nominal_sfreq = float(description.sfreq if nominal is None else nominal)
        self.measured_sfreq = description.measured_sfreq
        self._fixed_gap_threshold = gap_threshold_ms is not None
        self._grid_origin = 0  # global index the window grid counts from (moves on a rate change)
        self._repaired: list[int] = []  # global indices of samples whose stamp the source repaired
        if not (math.isfinite(self.sfreq) and self.sfreq > 0):
            raise UsageError(
                f"Stream {description.name!r} has no regular sampling rate ({description.sfreq!r} Hz), "
                "so it cannot be windowed as EEG. Pick the EEG stream with --stream-name or --source-id."
            )
        self.band_powers = band_powers
        try:
            if not band_powers:
                raise UsageError(NO_POWERS_AUX)
            self.window, self.step, self.nperseg, self.noverlap = settings.sizes(self.sfreq)
            self.no_powers_reason = ""
        except UsageError as err:
            # Too slow a stream for these windows (e.g. a 1 Hz counter): chunk the samples anyway,
            # every one of them, with no windows; the artifact says why.
            self.window = self.step = self.nperseg = self.noverlap = 0
            self.no_powers_reason = str(err)
        if not (math.isfinite(chunk_s) and chunk_s > 0):
            raise ValueError(f"chunk_s={chunk_s!r} is invalid; it must be a positive number of seconds")
        self.chunk_s = float(chunk_s)
        self.chunk_samples = max(1, round(chunk_s * self.sfreq))
        if not 0 < max_bytes <= HARD_MAX_CHUNK_BYTES:
            raise ValueError(f"max_bytes={max_bytes!r} must be within 1..{HARD_MAX_CHUNK_BYTES}")
        self.max_bytes = int(max_bytes)
        # Samples per chunk actually cut: chunk_samples until a chunk's encoded size says fewer.
        self.target_samples = self.chunk_samples
        self.n_channels = len(description.channels)
        # One definition of a hole for sources and chunker, so they never disagree about a gap.
        self.gap_threshold_ms = (
            gap_threshold_ms if gap_threshold_ms is not None else gap_threshold_s(self.sfreq) * 1000.0
        )
        self.sample_decimals = sample_decimals
        # A full chunk is emitted only once this many later samples arrived, so events that come
        # in late (`collector mark` takes a few hundred ms to start) still land in their chunk.
        self.hold_samples = max(0, int(hold_samples))
        self._capture_id = capture_id
        self._stream_id = stream_id
        self._version = collector_version
        self._next_chunk_index = start_index
        self._chunk_start = 0  # global index of the first sample of the chunk being filled
        self._tail_data = np.zeros((0, self.n_channels))  # last window - 1 samples before it
        self._pending_data: list[np.ndarray] = []
        self._pending_times: list[np.ndarray] = []
        self._pending_n = 0
        self._last_time: float | None = None
        self._breaks: list[tuple[int, Gap]] = []  # (index of the first sample after a gap, gap)
        self._unplaced_gaps: list[Gap] = []  # source gaps ending after the last sample seen
        self._events: list[Event] = []

    # -- input ---------------------------------------------------------------------------

    def push(self, chunk: SampleChunk) -> list[EegChunkOut]:
        """Take the next samples; return the chunks completed by them (often none)."""
        # Copies: a source may reuse its buffers, and these samples are held until the chunk is full.
        data = np.array(chunk.data, dtype=np.float64)
        times = np.array(chunk.times_ms, dtype=np.float64).reshape(-1)
        n = times.shape[0]
        if data.ndim != 2 or data.shape != (n, self.n_channels):
            raise ValueError(
                f"SampleChunk data has shape {data.shape}; expected ({n}, {self.n_channels}) for "
                f"channels {list(self.description.channels)}"
            )
        self._events.extend(chunk.events)
        if chunk.sfreq and self.description.recheck_rate:  # the source's live re-check of the rate
            self.measured_sfreq = float(chunk.sfreq)
            use = rate_to_use(self.nominal_sfreq, self.measured_sfreq)
            if abs(use / self.sfreq - 1.0) > RATE_TOLERANCE:
                self._set_rate(use)
        gaps = self._unplaced_gaps + list(chunk.gaps)
        self._unplaced_gaps = []
        if n == 0:
            self._unplaced_gaps = gaps
            return []
        first_index = self._chunk_start + self._pending_n
        self._repaired.extend(first_index + int(i) for i in chunk.repaired)
        found: dict[int, Gap] = {}
        prev = times if self._last_time is None else np.concatenate(([self._last_time], times))
        holes = np.flatnonzero(np.diff(prev) > self.gap_threshold_ms)
        offset = 0 if self._last_time is None else 1
        for h in holes:
            pos = int(h) + 1 - offset  # position in `times` of the first sample after the hole
            found[first_index + pos] = Gap(start_ms=float(prev[h]), end_ms=float(prev[h + 1]))
        for gap in gaps:
            # The first sample at or after the gap's end resumes the signal (1 us tolerance).
            pos = int(np.searchsorted(times, gap.end_ms - 1e-3, side="left"))
            if pos >= n:
                self._unplaced_gaps.append(gap)
                continue
            found[first_index + pos] = gap  # the source's record wins over a detected hole
        self._breaks.extend(sorted(found.items(), key=lambda item: item[0]))
        self._last_time = float(times[-1])
        self._pending_data.append(data)
        self._pending_times.append(times)
        self._pending_n += n
        out: list[EegChunkOut] = []
        # Strictly more: one sample always waits, so markers that come after the last sample (and
        # gaps not placed yet) still have the final chunk to ride in.
        while self._pending_n > self.target_samples + self.hold_samples:
            out.append(self._emit(self.target_samples, final=False))
        return out

    def _set_rate(self, sfreq: float) -> None:
        """The source measured another rate (live re-check): windows, segments, PSD and chunk
        length follow it from the chunk being filled on; the window grid restarts there."""
        old = self.sfreq
        self.sfreq = sfreq
        try:
            if not self.band_powers:
                raise UsageError(NO_POWERS_AUX)
            self.window, self.step, self.nperseg, self.noverlap = self.settings.sizes(sfreq)
            self.no_powers_reason = ""
        except UsageError as err:
            self.window = self.step = self.nperseg = self.noverlap = 0
            self.no_powers_reason = str(err)
        self.chunk_samples = max(1, round(self.chunk_s * sfreq))
        self.target_samples = min(self.chunk_samples, max(1, round(self.target_samples * sfreq / old)))
        if not self._fixed_gap_threshold:
            self.gap_threshold_ms = gap_threshold_s(sfreq) * 1000.0
        self._grid_origin = self._chunk_start - self._tail_data.shape[0]

    def flush(self) -> list[EegChunkOut]:
        """End of capture: the remaining samples as a final (shorter) chunk, if there are any.

        The final chunk carries every marker and gap not placed yet (markers after the last sample
        included: an event's time_ms may lie after its chunk's samples).
        """
        out: list[EegChunkOut] = []
        while self._pending_n:
            m = min(self._pending_n, self.target_samples)
            out.append(self._emit(m, final=m == self._pending_n))
        self._events = []
        return out

    # -- output --------------------------------------------------------------------------

    def _pending_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All pending samples as one array each (concatenated once, kept that way)."""
        if len(self._pending_data) > 1:
            self._pending_data = [np.concatenate(self._pending_data)]
            self._pending_times = [np.concatenate(self._pending_times)]
        return self._pending_data[0], self._pending_times[0]

    def _emit(self, m: int, *, final: bool) -> EegChunkOut:
        """Cut the next chunk of at most m samples, fewer if its encoded bytes exceed max_bytes.

        The size is measured on the real encoding before anything leaves the chunker; a chunk
        that does not fit is rebuilt shorter (in proportion to the excess), and later chunks
        are cut at that length. Only the accepted chunk changes the chunker's state.
        """
        pending_data, pending_times = self._pending_arrays()
        while True:
            out, tail = self._compose(m, pending_data[:m], pending_times[:m], final=final)
            raw = encode_artifact(out.artifact, out.series)
            if len(raw) <= self.max_bytes:
                break
            if m == 1:
                raise ValueError(
                    f"one sample of {self.n_channels} channels encodes to {len(raw)} bytes, over the "
                    f"{self.max_bytes}-byte bound of an evidence item"
                )
            m = max(1, min(m - 1, int(m * self.max_bytes * _FIT_MARGIN / len(raw))))
            self.target_samples = min(self.target_samples, m)
            final = False  # samples remain after this shorter chunk
        out = EegChunkOut(
            chunk_index=out.chunk_index,
            t0_ms=out.t0_ms,
            sample_count=out.sample_count,
            band_powers=out.band_powers,
            artifact=out.artifact,
            encoded=raw,
            series=out.series,
        )
        # Commit: drop the m samples, keep the context later windows need, hand the events over.
        rest = self._pending_n - m
        self._pending_data = [pending_data[m:]] if rest else []
        self._pending_times = [pending_times[m:]] if rest else []
        self._pending_n = rest
        self._next_chunk_index += 1
        self._tail_data, self._events = tail
        w = self.window
        self._chunk_start += m
        self._breaks = [(b, g) for b, g in self._breaks if b > self._chunk_start - w]
        self._repaired = [i for i in self._repaired if i >= self._chunk_start]
        return out

    def _compose(
        self, m: int, data: np.ndarray, times: np.ndarray, *, final: bool
    ) -> tuple[EegChunkOut, tuple[np.ndarray, list[Event]]]:
        """Build the chunk of the next m samples without changing state; also return the state
        to keep if it is accepted (window context, events left for later chunks)."""
        cs = self._chunk_start
        context = np.concatenate((self._tail_data, data))
        base = cs - self._tail_data.shape[0]  # global index of context[0]

        # Windows whose last sample is in [cs, cs + m): ends on the grid window - 1 + k * step.
        w, h = self.window, self.step
        if self.no_powers_reason:
            ends = np.zeros(0, dtype=np.int64)
        else:
            g = self._grid_origin + w - 1  # first window end of the grid
            lo = max(cs, g)
            k0 = -(-(lo - g) // h)
            ends = np.arange(g + k0 * h, cs + m, h, dtype=np.int64)
        brk = np.array([b for b, _ in self._breaks], dtype=np.int64)
        spans_gap = (np.searchsorted(brk, ends, "right") - np.searchsorted(brk, ends - w + 1, "right")) > 0
        clean = ends[~spans_gap]
        if clean.size:
            powers = compute_band_powers(context, self.sfreq, self.settings, clean - base)
        else:  # no window ends here (a short stream, a short last chunk, or no powers at this rate)
            n_bands = len(self.settings.band_names)
            empty = np.zeros((0, self.n_channels, n_bands))
            powers = BandPowers(
                window_ends=clean,
                absolute_uv2=empty,
                relative=empty,
                band_names=self.settings.band_names,
                quality=None,
            )

        chunk_gaps = [g for b, g in self._breaks if cs <= b < cs + m]
        if final:
            chunk_gaps += self._unplaced_gaps  # ended after the last sample: still reported
            events, later = self._events, []
        else:
            t_last = float(times[-1])
            events = [e for e in self._events if e.time_ms <= t_last]
            later = [e for e in self._events if e.time_ms > t_last]

        repaired = sum(1 for i in self._repaired if cs <= i < cs + m)
        out = self._build(cs, data, times, ends, spans_gap, powers, chunk_gaps, events, repaired)

        # Keep only what later windows need: window - 1 samples of context (gaps: see _emit).
        keep = max(0, min(w - 1, context.shape[0]))
        return out, (context[context.shape[0] - keep :].copy(), later)

    def _build(
        self,
        first: int,
        data: np.ndarray,
        times: np.ndarray,
        ends: np.ndarray,
        spans_gap: np.ndarray,
        powers: BandPowers,
        gaps: list[Gap],
        events: list[Event],
        repaired: int = 0,
    ) -> EegChunkOut:
        index = self._next_chunk_index  # counted up in _emit once the chunk is accepted
        identity = {
            "capture_id": self._capture_id,
            "stream_id": self._stream_id,
            "collector_version": self._version,
            "chunk_index": index,
        }
        stream = stream_fields(
            self.description,
            self.settings,
            keys=self.keys,
            sfreq=self.sfreq,
            nominal_sfreq=self.nominal_sfreq,
            measured_sfreq=self.measured_sfreq,
            nperseg=self.nperseg,
            noverlap=self.noverlap,
            no_powers_reason=self.no_powers_reason,
        )
        artifact, band_powers, series = write_artifact(
            identity,
            stream,
            first=first,
            data=data,
            times=times,
            ends=ends,
            spans_gap=spans_gap,
            powers=powers,
            channels=self.keys,
            bands=self.settings.band_names,
            sample_decimals=self.sample_decimals,
            gaps=gaps,
            events=events,
            repaired=repaired,
        )
        return EegChunkOut(
            chunk_index=index,
            t0_ms=artifact["t0_ms"],
            sample_count=int(data.shape[0]),
            band_powers=band_powers,
            artifact=artifact,
            series=series,
        )
