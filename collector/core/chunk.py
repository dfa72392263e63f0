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

Artifact schema (`application/json`, compact UTF-8; version 1):

    {
      "format": "openlesson-collector.eeg-chunk",
      "version": 1,
      "capture_id": str,
      "stream_id": str,                    # e.g. "eeg:Muse-00:55:DA:B0:0B:61"
      "collector_version": str,
      "chunk_index": int,                  # 0, 1, 2, ... per stream
      "device": {"name": str, "model": str, "source_id": str,
                 "sfreq": float,           # Hz used for windows, segments and PSD
                 "nominal_sfreq": float,   # declared rate, 0 = irregular
                 "measured_sfreq": float | null,   # from the timestamps, gaps excluded
                 "channels": [str, ...],   # distinct keys, one per column of samples
                 "unit": "microvolts"},    # (collector.core.channels.distinct_keys)
      "t0_ms": int,                        # Unix ms of the first sample, rounded down;
                                           # equals the evidence timestamp_ms
      "times_ms": [float, ...],            # per sample: Unix ms - t0_ms, to 0.001 ms
                                           # (0 <= times_ms[0] <= 1: never negative)
      "samples": [[float, ...], ...],      # one row per sample, one column per channel, in
                                           # `device.unit`, rounded to 0.001 uV; null = the
                                           # source delivered a non-finite value
      "method": {"psd": "welch", "window": "hann", "window_s": float, "step_s": float,
                 "segment_s": float, "nperseg": int, "noverlap": int,
                 "detrend": "constant", "scaling": "density", "average": "mean",
                 "quality_thresholds": {"flat_ptp_uv": float, "max_ptp_uv": float,
                                        "clip_fraction": float, "line_noise_max_share": float,
                                        "line_freqs_hz": [float, ...],
                                        "line_halfwidth_hz": float},
                 "timestamps_repaired": int},   # samples here whose stamp the source
                                                # replaced from the stream's grid
      "bands_hz": {"delta": [1.0, 4.0], "theta": [4.0, 8.0], "alpha": [8.0, 13.0],
                   "beta": [13.0, 30.0], "gamma": [30.0, 44.0]},   # [lo, hi)
      "windows": [                         # windows whose last sample is in this chunk
        {"end_ms": float,                  # Unix ms of the window's last sample, to 0.001 ms
         "absolute": {channel: {band: float | null}} | null,   # uV^2, 6 significant digits
         "relative": {channel: {band: float | null}} | null,   # band / sum of the bands
         "quality": {
           "gap": bool,                    # spans a gap: absolute/relative are null
           "ok": bool,                     # no gap and no flag on any channel
           "channels": {channel: {
             "flat": bool | null,          # peak-to-peak < flat_ptp_uv
             "clipped": bool | null,       # >= clip_fraction of samples on the window's max/min
             "excessive_amplitude": bool | null,   # peak-to-peak > max_ptp_uv
             "line_noise": bool | null,    # line_noise_share > line_noise_max_share
             "missing": bool,              # non-finite samples, or the window spans a gap
             "ptp_uv": float | null,
             "line_noise_share": float | null}}}}  # power at 50+-1 and 60+-1 Hz over the
      ],                                   # power from 1 Hz to Nyquist, same spectrum; null
                                           # when no line frequency fits below Nyquist
      "band_powers": {band: float},        # mean over channels and windows of `relative`
                                           # (windows with powers only); {} if none
      "events": [{"time_ms": float, "value": str}],   # markers, Unix ms to 0.001 ms
      "gaps": [{"start_ms": float, "end_ms": float}]  # Unix ms of the last sample before and
    }                                                 # the first sample after each gap

Flags are null (not evaluated) in windows that span a gap. Welch's method follows
`scipy.signal.welch` exactly; absolute band power is the sum of PSD bins lo <= f < hi times the
bin width. Sample precision: 0.001 uV is far below any EEG amplifier's noise (a Muse LSB is
0.49 uV) and keeps a 5 s, 4-channel 256 Hz chunk near 75 kB; `sample_decimals=None` writes full
float64 precision instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from collector import __version__
from collector.core.bandpower import BandPowers, BandSettings, compute_band_powers
from collector.core.channels import distinct_keys
from collector.core.clock import gap_threshold_s
from collector.core.evidence import EvidenceChunk
from collector.core.records import Event, Gap, SampleChunk, StreamDescription
from collector.core.time_repair import RATE_TOLERANCE, rate_to_use
from collector.errors import UsageError

FORMAT = "openlesson-collector.eeg-chunk"
VERSION = 1
_POWER_DIGITS = 6  # significant digits of band powers in the artifact
# The API takes at most 10 MB (10 MiB decoded) per item; stay well under both readings of "MB".
HARD_MAX_CHUNK_BYTES = 9_000_000
# A replay's chunks are sized for delivery: long (60 s), but a few MB at most, so one request
# stays quick to send and to retry.
DELIVERY_CHUNK_S = 60.0
DELIVERY_CHUNK_BYTES = 4_000_000
_FIT_MARGIN = 0.95  # when a chunk is cut to fit, aim this far under the bound (values vary)


@dataclass(frozen=True, slots=True)
class EegChunkOut:
    chunk_index: int
    t0_ms: int
    sample_count: int
    band_powers: dict[str, float]  # mean relative power per band; {} if no window had powers
    artifact: dict
    encoded: bytes | None = field(default=None, repr=False, compare=False)  # to_bytes(), once

    def to_bytes(self) -> bytes:
        if self.encoded is not None:
            return self.encoded
        return encode_artifact(self.artifact)


def encode_artifact(artifact: dict) -> bytes:
    """The artifact as compact UTF-8 JSON (the evidence's `data` before base64)."""
    return json.dumps(artifact, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


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


def _sig(value: float, digits: int = _POWER_DIGITS) -> float | None:
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _ms(value: float) -> float:
    return round(float(value), 3)


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
    ) -> None:
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
        try:
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
            raw = encode_artifact(out.artifact)
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

    def _static_fields(self) -> dict:
        d, s = self.description, self.settings
        return {
            "device": {
                "name": d.name,
                "model": d.model,
                "source_id": d.source_id,
                "sfreq": self.sfreq,
                "nominal_sfreq": self.nominal_sfreq,
                "measured_sfreq": None if self.measured_sfreq is None else round(self.measured_sfreq, 6),
                "channels": list(self.keys),
                "unit": d.unit,
            },
            "method": {
                "psd": "welch",
                "window": "hann",
                "window_s": s.window_s,
                "step_s": s.step_s,
                "segment_s": s.segment_s,
                "nperseg": self.nperseg or None,
                "noverlap": self.noverlap if self.nperseg else None,
                "detrend": s.detrend,
                "scaling": "density",
                "average": "mean",
                **({"not_computed": self.no_powers_reason} if self.no_powers_reason else {}),
                "quality_thresholds": {
                    "flat_ptp_uv": s.flat_ptp_uv,
                    "max_ptp_uv": s.max_ptp_uv,
                    "clip_fraction": s.clip_fraction,
                    "line_noise_max_share": s.line_noise_max_share,
                    "line_freqs_hz": list(s.line_freqs_hz),
                    "line_halfwidth_hz": s.line_halfwidth_hz,
                },
            },
            "bands_hz": {name: [lo, hi] for name, lo, hi in s.bands},
        }

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
        channels = self.keys
        bands = self.settings.band_names
        # Rounded down, so no sample ever has a negative offset from it (times_ms[0] in [0, 1]);
        # the 1 ns allowance keeps a whole ms computed as x.999999999 on x + 1.
        t0_ms = math.floor(float(times[0]) + 1e-6)

        windows = []
        q = powers.quality
        j = 0
        for e, gap in zip(ends.tolist(), spans_gap.tolist(), strict=True):
            end_ms = _ms(times[e - first])  # window ends always lie in this chunk
            if gap:
                flags = dict.fromkeys(
                    ("flat", "clipped", "excessive_amplitude", "line_noise", "ptp_uv", "line_noise_share")
                )
                windows.append(
                    {
                        "end_ms": end_ms,
                        "absolute": None,
                        "relative": None,
                        "quality": {
                            "gap": True,
                            "ok": False,
                            "channels": {c: {**flags, "missing": True} for c in channels},
                        },
                    }
                )
                continue
            absolute = powers.absolute_uv2[j].tolist()
            relative = powers.relative[j].tolist()
            chan_q = {}
            ok = True
            for c, name in enumerate(channels):
                flags = {
                    "flat": bool(q.flat[j, c]),
                    "clipped": bool(q.clipped[j, c]),
                    "excessive_amplitude": bool(q.excessive_amplitude[j, c]),
                    "line_noise": bool(q.line_noise[j, c]),
                    "missing": bool(q.missing[j, c]),
                }
                ok = ok and not any(flags.values())
                flags["ptp_uv"] = _ms(q.ptp_uv[j, c]) if math.isfinite(q.ptp_uv[j, c]) else None
                flags["line_noise_share"] = _sig(float(q.line_noise_share[j, c]))
                chan_q[name] = flags
            windows.append(
                {
                    "end_ms": end_ms,
                    "absolute": {
                        name: {b: _sig(v) for b, v in zip(bands, absolute[c], strict=True)}
                        for c, name in enumerate(channels)
                    },
                    "relative": {
                        name: {b: _sig(v) for b, v in zip(bands, relative[c], strict=True)}
                        for c, name in enumerate(channels)
                    },
                    "quality": {"gap": False, "ok": ok, "channels": chan_q},
                }
            )
            j += 1

        band_powers: dict[str, float] = {}
        rel = powers.relative.reshape(-1, len(bands))
        rel = rel[np.isfinite(rel).all(axis=1)]
        if rel.shape[0]:
            band_powers = {b: float(v) for b, v in zip(bands, rel.mean(axis=0), strict=True)}

        samples: list
        if self.sample_decimals is None:
            rounded = data
        else:
            rounded = np.round(data, self.sample_decimals)
        finite = np.isfinite(rounded)
        if finite.all():
            samples = rounded.tolist()
        else:
            as_obj = rounded.astype(object)
            as_obj[~finite] = None
            samples = as_obj.tolist()

        index = self._next_chunk_index  # counted up in _emit once the chunk is accepted
        artifact = {
            "format": FORMAT,
            "version": VERSION,
            "capture_id": self._capture_id,
            "stream_id": self._stream_id,
            "collector_version": self._version,
            "chunk_index": index,
            **self._static_fields(),
            "t0_ms": t0_ms,
            "times_ms": (np.round(times - t0_ms, 3) + 0.0).tolist(),  # + 0.0: no -0.0
            "samples": samples,
            "windows": windows,
            "band_powers": {b: _sig(v) for b, v in band_powers.items()},
            "events": [
                {"time_ms": _ms(ev.time_ms), "value": ev.value} for ev in sorted(events, key=_event_time)
            ],
            "gaps": [{"start_ms": _ms(g.start_ms), "end_ms": _ms(g.end_ms)} for g in gaps],
        }
        # Samples of this chunk whose timestamp the source replaced from the stream's grid.
        artifact["method"]["timestamps_repaired"] = int(repaired)
        return EegChunkOut(
            chunk_index=index,
            t0_ms=t0_ms,
            sample_count=int(data.shape[0]),
            band_powers=band_powers,
            artifact=artifact,
        )


def _event_time(event: Event) -> float:
    return event.time_ms
