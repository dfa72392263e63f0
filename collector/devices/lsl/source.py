"""A live LSL stream as an EEG source: `LslSource`.

Kept as one piece: `LslSource` is one class whose read path (pull, time repair, held samples, rate
re-check, reconnection) shares its state; its helpers already live in discovery.py and markers.py.

Resolution: by source_id, name and type (type defaults to EEG; muselsl names all its outlets "Muse"
and tells them apart by type). When several streams match, the choice is logged with the flags
that pick another.

Timestamps: pulled raw (no liblsl post-processing), brought into the local LSL clock with the
inlet's `time_correction()`, then mapped to Unix ms by `collector.core.clock`. Raw pulls let us see
Unix-epoch stamps (muselsl without --lsltime) before any correction is added, and keep gaps as
they are: liblsl's dejitter fits a line over the sample count and would smear a hole in the data
over the following seconds.

A lost stream never ends the source: when no sample came for `lost_after_s`, the source logs
"stream lost, waiting" and keeps reading. The same source is re-resolved: for a stream with a
source_id liblsl does it inside the inlet (so no sample in flight is dropped), and if that has not
happened after `replace_after_s` while the source resolves, a new inlet is opened; a stream
without a source_id (liblsl reports it lost) is re-resolved by name, type and host. The hole is
reported as a Gap (last sample before, first sample after) in the next chunk; a jump in the
timestamps longer than `gap_threshold_s` is reported the same way.

One class in one module (a little over 500 lines): the inlet, the loss and reconnection state, the
live stamp repair and the rate re-check all share that one inlet's state, read by one thread.
Finding streams is in `discovery`, the marker stream in `markers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from collector.core.channels import fill_labels, split_channels, typed_out_message
from collector.core.clock import LslClock, StreamTimeMapper, gap_threshold_s
from collector.core.records import Event, Gap, SampleChunk, StreamDescription
from collector.core.time_repair import (
    IMPLAUSIBLE_JUMP_S,
    IRREGULAR_IQR,
    MAX_EXCURSION_S,
    MIN_INTERVALS,
    LiveRepair,
    RateMeter,
    irregularity,
    rate_to_use,
    rate_warning,
    typical_period,
)
from collector.core.units import stream_units
from collector.devices.lsl.discovery import build_predicate, describe_info, resolve, sort_key
from collector.devices.lsl.markers import MarkerFollower
from collector.devices.recordings.model import MarkerDecoder
from collector.errors import NoSourceError, UsageError

log = logging.getLogger("collector.devices.lsl")


# A read waits (up to its timeout) for this much signal before it returns. Each read runs the clock
# fit and the chunker once, ~1 ms of NumPy calls whatever its size: reading 2 times a second rather
# than 8 took the EEG thread of a live 256 Hz capture from 1.1-1.3 % to 0.65-0.7 % of a core
# (issue 23). Samples wait at most this long more before they are chunked.
READ_BATCH_S = 0.5
BATCH_WAIT_MAX_S = 0.5  # ... but returns the samples it has after this long, even fewer
HOLD_WAIT_S = 0.05  # how long a read waits for the samples that decide about a held bad stamp
REPAIR_LOG_S = 60.0  # after the first repaired stamp is logged, further ones are logged as a count this often


def _join(parts: list) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Concatenate LiveRepair.feed results, shifting their positions."""
    stamps, data, repaired, resets, offset = [], [], [], [], 0
    for t, x, rep, res in parts:
        stamps.append(t)
        data.append(x)
        repaired += [offset + i for i in rep]
        resets += [offset + i for i in res]
        offset += t.shape[0]
    return np.concatenate(stamps), np.concatenate(data), repaired, resets


class LslSource:
    """EegSource over an LSL inlet. See the module docstring for resolution, time and loss."""

    def __init__(
        self,
        stream_name: str | None = None,
        stream_type: str | None = "EEG",
        source_id: str | None = None,
        *,
        resolve_timeout_s: float = 5.0,
        eeg_channels: Sequence[str] | None = None,
        aux_channels: Sequence[str] = (),
        model: str = "",
        unit: str | None = None,
        lost_after_s: float = 3.0,
        reconnect_resolve_s: float = 0.5,
        replace_after_s: float = 10.0,
        max_buflen_s: int = 360,
        clock: LslClock | None = None,
        markers: str | None = "auto",
        markers_retry_s: float = 5.0,
        recheck_s: float = 10.0,
        probe_s: float = 3.0,
        kind: str = "eeg",
    ) -> None:
        if resolve_timeout_s < 0:
            raise UsageError(f"resolve timeout must be 0 or more seconds, {resolve_timeout_s!r} is invalid.")
        self.stream_name = stream_name
        self.stream_type = stream_type
        self.source_id = source_id
        self.resolve_timeout_s = resolve_timeout_s
        self.eeg_channels = tuple(eeg_channels) if eeg_channels else None
        self.aux_channels = tuple(aux_channels)
        self.model = model
        self.unit = unit
        self.kind = kind  # "eeg", or an auxiliary sensor's kind (accelerometer, gyroscope, ppg)
        self.lost_after_s = lost_after_s
        self.reconnect_resolve_s = reconnect_resolve_s
        self.replace_after_s = replace_after_s
        self._last_replace_check = 0.0
        self.max_buflen_s = max_buflen_s
        self.clock = clock or LslClock()
        self.description: StreamDescription | None = None
        self.lost = False
        self.reconnects = 0
        self._inlet: Any = None
        self._sticky_predicate = ""
        self._eeg_index: list[int] = []
        # Columns read: the EEG's, then those of its stim channels (their codes become events).
        self._read_index: list[int] = []
        self._stim: MarkerDecoder | None = None
        self._factors = np.ones(0)
        self._labels: tuple[str, ...] = ()
        self._mapper = StreamTimeMapper(self.clock)
        self._correction_s = 0.0
        self._correction_checked = 0.0
        self._last_ms: float | None = None
        self._last_data_mono = 0.0
        self._max_samples = 1024
        self._batch = 1  # samples a read waits for (then it takes all there are); see _connect
        self._gap_s = float("inf")
        self.markers = None if markers is None or markers.strip().lower() in ("", "off", "none") else markers
        self.markers_retry_s = markers_retry_s
        self._markers: MarkerFollower | None = None
        self._annotations: MarkerFollower | None = None
        self.recheck_s = recheck_s
        self.probe_s = probe_s
        self._repair: LiveRepair | None = None
        self._rate_meter = RateMeter()
        self._rate_checked: float | None = None
        self._rate_warned = False
        self._measured: float | None = None
        self._probed: list[tuple[np.ndarray, np.ndarray]] = []
        self._repairs_unlogged = 0  # repaired stamps not yet in the log (rate-limited)
        self._repair_logged_at: float | None = None

    @property
    def marker_stream(self) -> str | None:
        """The marker stream being followed (as logged), None while there is none."""
        return self._markers.taken if self._markers is not None else None

    # -- EegSource -----------------------------------------------------------------------------
    def open(self) -> StreamDescription:
        predicate = build_predicate(name=self.stream_name, type=self.stream_type, source_id=self.source_id)
        found = resolve(predicate, self.resolve_timeout_s)
        if found:
            # Others answering a moment later would be missed by a resolve that stops at the first.
            time.sleep(0.05)
            more = resolve(predicate, 0.3, minimum=len(found) + 1)
            seen = {i.uid() for i in found}
            found += [i for i in more if i.uid() not in seen]
        if not found:
            found = self._named_without_type()
        if not found:
            raise NoSourceError(
                f"no LSL stream matches {self._wanted()} within {self.resolve_timeout_s:g} s. "
                "Start the stream (e.g. `muselsl stream --lsltime`), check `collector devices`, "
                "or pick one with --stream-name/--source-id."
            )
        found.sort(key=sort_key)
        info = found[0]
        if len(found) > 1:
            others = "; ".join(describe_info(i) for i in found[1:])
            log.warning(
                "%d LSL streams match %s; using %s. Others: %s. Pick another with --stream-name NAME "
                "or --source-id ID.",
                len(found),
                self._wanted(),
                describe_info(info),
                others,
            )
        # Re-resolve exactly this source after a loss: its source_id when it has one.
        if info.source_id():
            self._sticky_predicate = build_predicate(source_id=info.source_id(), type=info.type())
        else:
            self._sticky_predicate = build_predicate(
                name=info.name(), type=info.type(), hostname=info.hostname()
            )
        self.description = self._connect(info, first=True)
        if self.markers is not None and self._markers is None:
            self._markers = MarkerFollower(
                self.markers, self.description, self.clock, retry_s=self.markers_retry_s
            )
            self._markers.start()
            if self.markers.strip().lower() == "auto":  # MNE-LSL's `<name>-annotations` beside it
                self._annotations = MarkerFollower(
                    "auto", self.description, self.clock, retry_s=self.markers_retry_s, annotations=True
                )
                self._annotations.start()
        return self.description

    def read(self, timeout: float) -> SampleChunk | None:
        if self.description is None:
            raise RuntimeError("LslSource.read() before open()")
        if self._inlet is None:
            if not self._try_reconnect(timeout):
                return None
        from pylsl.util import LostError  # not re-exported by the pylsl package

        if self._probed:  # samples read while measuring an irregular stream's rate, all at once
            stamps = np.concatenate([t for t, _ in self._probed])
            data = np.concatenate([x for _, x in self._probed])
            self._probed = []
            self._refresh_correction()
            return self._chunk(stamps, data, final=False)
        try:
            # Wait in liblsl for a batch (fewer wake-ups), but no longer than BATCH_WAIT_MAX_S for
            # it: then take whatever single sample arrives, so a slow or stalling stream's sample
            # is not held for the whole timeout.
            first = min(max(0.0, timeout), BATCH_WAIT_MAX_S)
            samples, stamps = self._inlet.pull_chunk(
                timeout=first, max_samples=self._max_samples, min_samples=self._batch, as_numpy=True
            )
            if len(stamps) == 0 and timeout > first:
                samples, stamps = self._inlet.pull_chunk(
                    timeout=timeout - first, max_samples=self._max_samples, min_samples=1, as_numpy=True
                )
        except LostError:  # only for streams without a source_id: liblsl cannot recover those
            self._mark_lost("it has no source_id, so LSL cannot recover it")
            self._drop_inlet()  # the marker follower keeps running: markers may outlive the EEG
            return None
        if len(stamps) == 0:
            if self._repair is not None and self._repair.held:
                # Nothing more is coming now: decide about the samples held back.
                return self._chunk(np.zeros(0), np.zeros((0, len(self._read_index))), final=True)
            self._on_silence()
            return None
        self._last_data_mono = time.monotonic()
        if self.lost:
            self._on_back()
        self._refresh_correction()
        data = np.asarray(samples, dtype=np.float64)[:, self._read_index]
        chunk = self._chunk(np.asarray(stamps, dtype=np.float64), data, final=False)
        if chunk is None and self._repair is not None and self._repair.held and timeout > 0:
            # Everything pulled is in the clock fit's look-ahead: wait a little for more (0.25 s of
            # silence, within this read's timeout); a read that then gets nothing decides about the
            # held samples (above), so a sample never waits longer than that for its read.
            left = timeout - (time.monotonic() - self._last_data_mono)
            return self.read(max(0.0, min(left, 0.25)))
        return chunk

    def _chunk(self, stamps: np.ndarray, data: np.ndarray, *, final: bool) -> SampleChunk | None:
        """Repaired stamps -> Unix ms, gaps, markers and (when measured) the stream's rate."""
        assert self._repair is not None
        stamps, data, repaired, resets = self._repair.feed(stamps, data, final=final)
        # Samples held after a jump (back, or implausibly far ahead): the next ones decide; if none
        # come within HOLD_WAIT_S, decide with what is there, so a read never sits on samples it
        # has. The clock fit's normal look-ahead (`LiveRepair.held`) is not waited for: later reads
        # release it, and a read that gets nothing within its timeout decides it (below, `read`).
        if self._repair.suspect and not final and self._inlet is not None:
            parts = [(stamps, data, repaired, resets)]
            for _ in range(16):
                more, more_t = self._inlet.pull_chunk(
                    timeout=HOLD_WAIT_S, max_samples=self._max_samples, as_numpy=True
                )
                got = len(more_t) > 0
                rows = np.asarray(more, dtype=np.float64)[:, self._read_index] if got else data[:0]
                parts.append(self._repair.feed(np.asarray(more_t, dtype=np.float64), rows, final=not got))
                if not got or not self._repair.suspect:
                    break
            stamps, data, repaired, resets = _join(parts)
        self._log_repairs(len(repaired), resets)
        n_eeg = len(self._eeg_index)
        stim, data = data[:, n_eeg:], data[:, :n_eeg]
        data = data * self._factors  # declared unit -> µV (collector.core.units)
        events = self._markers.take() if self._markers is not None else ()
        if self._annotations is not None:
            events = (*events, *self._annotations.take())
        if stamps.shape[0] == 0:
            return SampleChunk(data=data, times_ms=np.zeros(0), events=events) if events else None
        self._gap_s = gap_threshold_s(1.0 / self._repair.period_s)
        times_ms = self._mapper.to_unix_ms(stamps, self._correction_s)
        if self._stim is not None:  # trigger codes of the stream's stim channels, as in a replay
            codes = [Event(time_ms=float(times_ms[i]), value=v) for i, v in self._stim.onsets(stim)]
            events = (*events, *codes)
        gaps = self._gaps(times_ms, resets)
        return SampleChunk(
            data=data,
            times_ms=times_ms,
            gaps=gaps,
            events=events,
            repaired=tuple(repaired),
            sfreq=self._recheck_rate(stamps),
        )

    def _log_repairs(self, count: int, resets: Sequence[int], *, closing: bool = False) -> None:
        """Repaired stamps in the log as a replay logs them: the first at once, then a count at
        most every REPAIR_LOG_S (a sender with a bad clock would flood it), the rest on close."""
        assert self._repair is not None
        name = self.description.name if self.description else "the stream"
        for _ in resets:
            log.warning(
                "stream %r: the clock went back and did not return to its grid within %g s (a clock "
                "reset, or a long run of bad stamps); the samples after it follow one period after "
                "those before, and the break is a gap (spurious if only the stamps were bad)",
                name,
                MAX_EXCURSION_S,
            )
        self._repairs_unlogged += count
        now = time.monotonic()
        due = self._repair_logged_at is None or now - self._repair_logged_at >= REPAIR_LOG_S or closing
        if self._repairs_unlogged and due:
            log.warning(
                "stream %r: %d sample timestamp(s) off the stream's regular grid (an outlier, swapped or "
                "repeated stamp, or a run of bad stamps whose neighbours agree) were repaired from their "
                "neighbours; the samples are kept (%d in this capture so far)",
                name,
                self._repairs_unlogged,
                self._repair.repaired_total,
            )
            self._repairs_unlogged = 0
            self._repair_logged_at = now

    def _recheck_rate(self, stamps: np.ndarray) -> float | None:
        """The rate over the last minute, re-checked every `recheck_s` of stream; warns once."""
        assert self._repair is not None and self.description is not None
        self._rate_meter.add(stamps, self._repair.period_s)
        if self._rate_checked is not None and float(stamps[-1]) - self._rate_checked < self.recheck_s:
            return self._measured
        measured = self._rate_meter.rate()
        if measured is None:
            return self._measured
        self._rate_checked = float(stamps[-1])
        nominal = self.description.nominal_sfreq or 0.0
        if nominal > 0 and rate_to_use(nominal, measured) != nominal and not self._rate_warned:
            self._rate_warned = True
            log.warning("%s", rate_warning(self.description.name, nominal, measured))
        self._measured = measured
        return measured

    def close(self) -> None:
        if self._repairs_unlogged:
            self._log_repairs(0, (), closing=True)
        for follower in (self._markers, self._annotations):
            if follower is not None:
                follower.stop()
        self._markers = self._annotations = None
        self._drop_inlet()

    def __enter__(self) -> LslSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _drop_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # closing a lost inlet: nothing left to release
                log.debug("close_stream failed", exc_info=True)
            del inlet

    def _named_without_type(self) -> list[Any]:
        """The stream the user named (--stream-name/--source-id) when its type is not the one asked.

        A stream with no type at all is taken: MNE-LSL's PlayerLSL leaves the type empty when the
        recording holds several channel types (EEG with EOG and a stim channel, as most do). One
        with another type is not taken, and the error names its type and the option to pass.
        """
        if not self.stream_type or not (self.stream_name or self.source_id):
            return []
        named = resolve(build_predicate(name=self.stream_name, source_id=self.source_id), 0.5)
        untyped = [i for i in named if not i.type().strip()]
        if untyped:
            log.info(
                "LSL stream %s declares no type; taken as %s because it was named",
                describe_info(untyped[0]),
                self.stream_type,
            )
            return untyped
        if named:
            types = sorted({i.type() for i in named})
            raise NoSourceError(
                f"LSL stream {describe_info(named[0])} is there, but its type is "
                f"{' or '.join(repr(t) for t in types)}, not {self.stream_type!r}. To capture it, add "
                f"--stream-type {types[0]!r}."
            )
        return []

    def _wanted(self) -> str:
        parts = [
            f"{k}={v!r}"
            for k, v in (
                ("name", self.stream_name),
                ("type", self.stream_type),
                ("source_id", self.source_id),
            )
            if v
        ]
        return ", ".join(parts) or "any stream"

    def _connect(self, info: Any, *, first: bool) -> StreamDescription:
        """Open an inlet on `info`, read its header, and (first time) fix the channel selection."""
        import pylsl

        if info.channel_format() == pylsl.cf_string:
            raise NoSourceError(
                f"LSL stream {describe_info(info)} carries strings (markers), not EEG. "
                "Pick the EEG stream with --stream-name/--source-id."
            )
        inlet = pylsl.StreamInlet(info, max_buflen=self.max_buflen_s, recover=True, processing_flags=0)
        try:
            full = inlet.info(timeout=max(1.0, self.reconnect_resolve_s))
            inlet.open_stream(timeout=max(1.0, self.reconnect_resolve_s))
        except Exception as exc:  # the stream went away between resolve and open
            del inlet
            if first:
                raise NoSourceError(
                    f"LSL stream {describe_info(info)} did not answer ({exc}). Check that it is "
                    "still running, then try again."
                ) from None
            raise
        n_channels = full.channel_count()
        profile_labels = (*(self.eeg_channels or ()), *self.aux_channels)
        labels = fill_labels(full.get_channel_labels(), n_channels, profile_labels)
        if not first and labels != self._labels:
            del inlet
            raise ValueError(f"the stream came back with other channels ({', '.join(labels)})")
        split = split_channels(
            labels, eeg=self.eeg_channels, aux=self.aux_channels, types=full.get_channel_types() or ()
        )
        if not split.eeg_index:
            del inlet
            raise NoSourceError(
                f"LSL stream {describe_info(info)} has only AUX channels ({', '.join(labels)}). "
                "Pick the EEG stream with --stream-name/--source-id."
            )
        units = full.get_channel_units() or []
        eeg_units = [(units[i] if i < len(units) else "") or "" for i in split.eeg_index]
        if not any(u.strip() for u in eeg_units) and self.unit:  # the header wins over the profile
            eeg_units = [self.unit] * len(eeg_units)
        self._inlet = inlet
        self._labels = labels
        self._eeg_index = list(split.eeg_index)
        self._read_index = [*split.eeg_index, *split.stim_index]
        sfreq = float(full.nominal_srate())
        self._gap_s = gap_threshold_s(sfreq)
        self._max_samples = max(1024, int(sfreq * 10))
        # Wait in liblsl for READ_BATCH_S of samples instead of waking for each one as it arrives
        # (a 256 Hz outlet pushing sample by sample woke the whole read path 256 times a second).
        # An irregular stream (no nominal rate) returns at its first sample, as before.
        self._batch = max(1, min(self._max_samples, round(sfreq * READ_BATCH_S))) if sfreq > 0 else 1
        self._mapper = StreamTimeMapper(self.clock, stream_label=f"LSL stream {full.name()!r}")
        self._correction_s = 0.0
        self._correction_checked = 0.0
        self._last_data_mono = time.monotonic()
        if not first:
            assert self.description is not None
            return self.description
        if split.typed_out:
            log.warning("%s", typed_out_message(full.name(), split))
        if split.stim_index:
            stim_labels = [labels[i] for i in split.stim_index]
            self._stim = MarkerDecoder(stim_labels, annotations=False, numeric=True, sampled=True)
        factors, unit = stream_units(
            eeg_units,
            len(split.eeg_index),
            full.name(),
            log,
            split.eeg_labels,
            voltage_expected=self.kind == "eeg",
        )
        self._factors = np.asarray(factors, dtype=np.float64)
        nominal = sfreq
        measured = None
        if nominal <= 0:  # declared irregular: its rate comes from its typical spacing, as in a replay
            measured = sfreq = self._probe_rate(full.name())
        self._repair = LiveRepair(1.0 / sfreq)
        description = StreamDescription(
            name=full.name(),
            type=full.type(),
            source_id=full.source_id(),
            sfreq=sfreq,
            channels=split.eeg_labels,
            unit=unit,  # values are converted to µV when the declared unit is a voltage
            model=self.model,
            hostname=full.hostname(),
            aux_channels=split.aux_labels,
            nominal_sfreq=nominal,
            measured_sfreq=measured,
        )
        log.info(
            "LSL stream %r (source_id %s, host %s): %d %s channels (%s)%s, %.6g Hz",
            description.name,
            description.source_id or "none",
            description.hostname,
            len(description.channels),
            "EEG" if self.kind == "eeg" else self.kind,
            ", ".join(description.channels),
            f", AUX dropped: {', '.join(description.aux_channels)}" if description.aux_channels else "",
            sfreq,
            extra={"event": "stream_opened"},
        )
        return description

    def _probe_rate(self, name: str) -> float:
        """First samples of a stream declared irregular (kept for the first reads): the rate from
        their median interval, or UsageError when they are too few or too irregular to window."""
        stamps: list[np.ndarray] = []
        deadline = time.monotonic() + self.probe_s
        count = stamped = 0
        # 256 samples, and enough distinct stamps to measure (a chunk pushed to an irregular
        # stream has one stamp for all its samples)
        while (count < 256 or stamped <= MIN_INTERVALS) and time.monotonic() < deadline:
            samples, ts = self._inlet.pull_chunk(
                timeout=0.2, max_samples=self._max_samples, min_samples=self._batch, as_numpy=True
            )
            if len(ts):
                ts = np.asarray(ts, dtype=np.float64)
                self._probed.append((ts, np.asarray(samples, dtype=np.float64)[:, self._read_index]))
                stamps.append(ts)
                count += ts.shape[0]
                stamped = int(np.count_nonzero(np.diff(np.concatenate(stamps)) != 0))
        times = np.concatenate(stamps) if stamps else np.zeros(0)
        spread = irregularity(times)
        if not np.isfinite(spread):
            raise UsageError(
                f"LSL stream {name!r} is declared irregular (nominal_srate 0) and sent {times.shape[0]} "
                f"sample(s) in {self.probe_s:g} s, too few to measure its rate. Start the stream first, "
                "or pick the EEG stream with --stream-name/--source-id."
            )
        if spread > IRREGULAR_IQR:
            raise UsageError(
                f"stream {name!r} is declared irregular (nominal_srate 0) and its sample spacing varies "
                f"too much to be windowed as EEG (interquartile range {spread:.2f}× the median interval). "
                "Pick the EEG stream with --stream-name/--source-id, or send it at a fixed rate."
            )
        rate = round(1.0 / typical_period(times), 6)
        log.info("LSL stream %r is declared irregular; its typical spacing gives %.6g Hz", name, rate)
        return rate

    def _refresh_correction(self) -> None:
        """Remote clock -> local LSL clock; liblsl updates it in the background (instant after the first)."""
        now = time.monotonic()
        if now - self._correction_checked < 1.0:
            return
        self._correction_checked = now
        try:
            self._correction_s = float(self._inlet.time_correction(timeout=0.5))
        except Exception:  # TimeoutError/LostError: keep the last estimate
            log.debug("time_correction unavailable; keeping %.6f s", self._correction_s, exc_info=True)

    def _gaps(self, times_ms: np.ndarray, resets: Sequence[int] = ()) -> tuple[Gap, ...]:
        """Intervals over the gap threshold, and clock resets (stamps are repaired: increasing)."""
        gaps: list[Gap] = []
        gap_ms = self._gap_s * 1000.0
        if self._last_ms is not None and (times_ms[0] - self._last_ms > gap_ms or 0 in resets):
            if times_ms[0] > self._last_ms:
                gaps.append(Gap(start_ms=self._last_ms, end_ms=float(times_ms[0])))
        if times_ms.shape[0] > 1:
            steps = np.diff(times_ms)
            breaks = set(np.flatnonzero(steps > gap_ms).tolist()) | {r - 1 for r in resets if r > 0}
            for i in sorted(breaks):
                if times_ms[i + 1] > times_ms[i]:
                    gaps.append(Gap(start_ms=float(times_ms[i]), end_ms=float(times_ms[i + 1])))
        self._last_ms = float(times_ms[-1])
        for g in gaps:
            if g.end_ms - g.start_ms > IMPLAUSIBLE_JUMP_S * 1000.0:  # the stamps, not the stream, jumped
                log.warning(
                    "gap in the EEG stream: its stamps jumped %.0f s forward and stayed there (over %g s "
                    "of samples); kept as a gap, though a jump this large is more likely a clock fault",
                    (g.end_ms - g.start_ms) / 1000.0,
                    MAX_EXCURSION_S,
                )
                continue
            log.info("gap in the EEG stream: %.0f ms", g.end_ms - g.start_ms)
        return tuple(gaps)

    def _on_silence(self) -> None:
        """No sample within a read. After `lost_after_s` the stream is lost: say so, and wait.

        A stream with a source_id is re-resolved by liblsl itself (the inlet recovers when the
        same source_id is published again), so no sample in flight is dropped. If that has not
        happened after `replace_after_s` while the source does resolve, we open a new inlet.
        """
        now = time.monotonic()
        silent_s = now - self._last_data_mono
        if silent_s < self.lost_after_s:
            return
        if not self.lost:
            self._mark_lost(f"no samples for {silent_s:.1f} s")
            self._last_replace_check = now
            return
        if self._inlet is None or now - self._last_replace_check < self.replace_after_s:
            return
        self._last_replace_check = now
        found = sorted(resolve(self._sticky_predicate, self.reconnect_resolve_s), key=sort_key)
        if not found or self._inlet.samples_available():
            return
        old = self._inlet
        try:
            self._connect(found[0], first=False)
        except Exception as exc:
            log.warning("could not reopen %s: %s; still waiting", describe_info(found[0]), exc)
            return
        log.info("reopened %s; waiting for its samples", describe_info(found[0]))
        try:
            old.close_stream()
        except Exception:  # the old inlet's stream is gone anyway
            log.debug("close_stream failed", exc_info=True)
        del old

    def _mark_lost(self, why: str) -> None:
        if not self.lost:
            log.warning(
                "stream lost, waiting: %s (%s); re-resolving the same source (%s)",
                self.description.name if self.description else "the stream",
                why,
                self._sticky_predicate,
                extra={"event": "stream_lost"},
            )
        self.lost = True

    def _on_back(self) -> None:
        self.lost = False
        self.reconnects += 1
        self._mapper.reset()  # a restarted publisher may stamp differently
        log.info(
            "stream %s is back; continuing",
            self.description.name if self.description else "",
            extra={"event": "stream_back"},
        )

    def _try_reconnect(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            budget = min(self.reconnect_resolve_s, max(0.05, deadline - time.monotonic()))
            found = resolve(self._sticky_predicate, budget)
            for info in sorted(found, key=sort_key):
                try:
                    self._connect(info, first=False)
                except Exception as exc:
                    log.warning("could not reopen %s: %s; still waiting", describe_info(info), exc)
                    continue
                log.info("stream found again: %s", describe_info(info))
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
