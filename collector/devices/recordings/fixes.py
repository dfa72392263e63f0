"""A loaded recording made ready to replay, whatever its file format (XDF, CSV, EDF, ...).

Works on `Recording` / `RecordedStream` objects, so every reader that produces them gets the same
treatment:

- **Clock domains** (`align_clock_domains`): each stream's stamps are either LSL-clock seconds
  (counted from the sender's boot) or Unix time (muselsl without `--lsltime` stamps with
  `time.time()`); a stamp between 2000-01-01 and 2100-01-01 is Unix time. When one file mixes
  both, the Unix-time streams are moved onto the LSL time base by the offset between the two
  domains' starts: the earliest stamp of each domain's regularly sampled streams (they stream from
  the moment the recording starts), or of any of its streams when a domain has only irregular
  ones (markers); that last case is approximate and named in a warning. Any stream (mixed
  clocks or not) that lands more than a day away from the EEG cannot be aligned: a warning says
  which and why, and it is placed from the EEG's start instead, so no event is ever put decades
  away. Streams from another host than the EEG's, in a file without clock offsets for them (LSL's
  time correction, which LabRecorder records), cannot be related: one warning names them, and a
  marker stream among them that lies wholly outside the EEG's span is not alignable and is
  placed from the EEG's start the same way.
- **Parts** (`stream_parts`, `stitch`): a sender that restarted during the recording appears as
  several streams with the same name and source_id (or, without source_id, the same name and
  host). Parts that do not overlap in time are joined in time order into one stream; each outage
  is a gap.
- **Sample times** (`prepare_eeg`): isolated bad stamps repaired, gaps found, and the real rate
  measured over the whole stream without its gaps (see `collector.core.time_repair`).
- **Start** (`recording_start_s`): the earliest timestamp of any stream in the file, which the
  header's `datetime` (when recording began) anchors.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from collector.core.time_repair import (
    IMPLAUSIBLE_JUMP_S,
    IRREGULAR_IQR,
    MAX_EXCURSION_S,
    dejitter,
    gap_starts,
    irregularity,
    measure_rate,
    rate_to_use,
    rate_warning,
    repair_times,
    typical_period,
)
from collector.devices.recordings.model import RecordedStream, Recording
from collector.errors import UsageError

log = logging.getLogger(__name__)

CLOCK_LSL = "lsl"
CLOCK_UNIX = "unix"
_UNIX_MIN_S = 946_684_800.0  # 2000-01-01: no LSL clock (seconds since boot) gets this far
_UNIX_MAX_S = 4_102_444_800.0  # 2100-01-01
_ALIGN_LIMIT_S = 86_400.0  # a stream further than this from the EEG after alignment: not aligned


@dataclass(frozen=True, slots=True)
class PreparedEeg:
    """The EEG stream of a replay, ready for the chunker.

    stream.times_s: (n,) repaired, strictly increasing seconds on the file's time base.
    breaks: (g,) index of the first sample after each gap (outages between parts, clock resets,
    intervals over `gap_threshold_s`). repaired: indices whose stamp was replaced from the grid.
    """

    stream: RecordedStream
    parts: int
    part_ids: tuple[int, ...]  # the file's stream ids joined into `stream`
    repaired: np.ndarray
    resets: tuple[int, ...]
    breaks: np.ndarray
    nominal_sfreq: float  # declared (0 = irregular)
    measured_sfreq: float | None  # from the timestamps, gaps excluded
    sfreq: float  # the rate windows, segments and PSD use


def clock_domain(stream: RecordedStream) -> str:
    """CLOCK_UNIX when the stream's stamps are Unix times, else CLOCK_LSL."""
    if stream.sample_count == 0:
        return CLOCK_LSL
    mid = float(np.median(stream.times_s))
    return CLOCK_UNIX if _UNIX_MIN_S <= mid <= _UNIX_MAX_S else CLOCK_LSL


def _domain_start(streams: list[RecordedStream]) -> tuple[float, bool]:
    """Earliest stamp of the regular streams (exact start) or of any stream (approximate)."""
    regular = [s for s in streams if s.sfreq > 0 and not s.is_string and s.sample_count]
    pool = regular or [s for s in streams if s.sample_count]
    return min(_robust_first(s.times_s) for s in pool), bool(regular)


def _robust_first(times_s: np.ndarray) -> float:
    """The first stamp, skipping leading stamps far (IMPLAUSIBLE_JUMP_S) before the rest."""
    times = np.asarray(times_s, dtype=np.float64)
    for i in range(min(times.shape[0] - 1, 8)):
        if times[i + 1] - times[i] <= IMPLAUSIBLE_JUMP_S:
            return float(times[i])
    return float(times[min(times.shape[0] - 1, 8)])


def align_clock_domains(recording: Recording, eeg: RecordedStream) -> Recording:
    """Put every stream on one time base (see the module docstring); logs what it did."""
    with_data = [s for s in recording.streams if s.sample_count]
    domains = {s.stream_id: clock_domain(s) for s in with_data}
    unix = [s for s in with_data if domains[s.stream_id] == CLOCK_UNIX]
    lsl = [s for s in with_data if domains[s.stream_id] == CLOCK_LSL]
    if not unix or not lsl:
        return _place_far_streams(_unrelated_hosts(recording, eeg), eeg)
    unix_start, unix_exact = _domain_start(unix)
    lsl_start, lsl_exact = _domain_start(lsl)
    shift = unix_start - lsl_start  # subtract from Unix stamps to land on the LSL time base
    log.warning(
        "%s mixes clocks: %s stamped with Unix time, %s with the LSL clock; moving the Unix-time "
        "streams onto the LSL time base by their start (%.3f s apart)",
        recording.path.name,
        ", ".join(repr(s.name) for s in unix),
        ", ".join(repr(s.name) for s in lsl),
        shift,
    )
    if not (unix_exact and lsl_exact):
        vague = [s for s in (lsl if not lsl_exact else unix) if s.sample_count]
        log.warning(
            "stream(s) %s cannot be aligned exactly: their clock differs from the EEG's and they "
            "carry only irregular samples (markers), so nothing in the file says when their clock "
            "started; assuming they started with the recording (their events may be off by the "
            "delay before their first sample)",
            ", ".join(repr(s.name) for s in vague),
        )
    moved = []
    for s in recording.streams:
        if s.sample_count and domains[s.stream_id] == CLOCK_UNIX:
            s = dataclasses.replace(s, times_s=s.times_s - shift)
        moved.append(s)
    return _place_far_streams(
        _unrelated_hosts(dataclasses.replace(recording, streams=tuple(moved)), eeg), eeg
    )


def _unrelated_hosts(recording: Recording, eeg: RecordedStream) -> Recording:
    """Streams from another host than the EEG's when the file holds no clock offsets to relate
    their clocks (LabRecorder records them; a file without them cannot be synchronised): named in
    one warning. A marker stream among them that lies wholly outside the EEG's span is not
    alignable and is placed from the EEG's start, rather than delivered far from it."""
    eeg_now = next(s for s in recording.streams if s.stream_id == eeg.stream_id)
    if eeg_now.clock_offsets is None or not eeg_now.hostname or eeg_now.sample_count == 0:
        return recording
    unrelated = [
        s
        for s in recording.streams
        if s.sample_count
        and s.stream_id != eeg_now.stream_id
        and s.hostname
        and s.hostname != eeg_now.hostname
        and (s.clock_offsets == 0 or eeg_now.clock_offsets == 0)
    ]
    if not unrelated:
        return recording
    lo, hi = float(np.min(eeg_now.times_s)), float(np.max(eeg_now.times_s))
    outside = {
        s.stream_id
        for s in unrelated
        if s.is_marker and (float(np.min(s.times_s)) > hi or float(np.max(s.times_s)) < lo)
    }

    def host(s: RecordedStream) -> str:
        offsets = "no clock offsets" if not s.clock_offsets else f"{s.clock_offsets} clock offsets"
        return f"host {s.hostname}, {offsets}"

    log.warning(
        "%s: streams from different hosts have no clock offsets to relate their clocks: EEG %r (%s) "
        "and %s; their times are taken as recorded%s",
        recording.path.name,
        eeg_now.name,
        host(eeg_now),
        ", ".join(f"{s.name!r} ({host(s)})" for s in unrelated),
        "; "
        + ", ".join(repr(s.name) for s in unrelated if s.stream_id in outside)
        + " lie(s) wholly outside the EEG's span, so cannot be aligned: placed from the EEG's start"
        if outside
        else "",
    )
    fixed = []
    for s in recording.streams:
        if s.stream_id in outside:
            s = dataclasses.replace(s, times_s=s.times_s - _robust_first(s.times_s) + lo)
        fixed.append(s)
    return dataclasses.replace(recording, streams=tuple(fixed))


def _place_far_streams(aligned: Recording, eeg: RecordedStream) -> Recording:
    """Whatever the clocks said, no stream may land more than a day from the EEG: such a stream
    is named in a warning and placed from the EEG's start."""
    eeg_now = next(s for s in aligned.streams if s.stream_id == eeg.stream_id)
    if eeg_now.sample_count == 0:
        return aligned
    lo, hi = float(np.min(eeg_now.times_s)), float(np.max(eeg_now.times_s))
    fixed = []
    for s in aligned.streams:
        if s.sample_count and s is not eeg_now:
            first = _robust_first(s.times_s)
            if first < lo - _ALIGN_LIMIT_S or first > hi + _ALIGN_LIMIT_S:
                log.warning(
                    "stream %r cannot be aligned with the EEG: it starts %.0f s from it, so its clock "
                    "is neither the EEG's nor Unix time; placing it from the EEG's start",
                    s.name,
                    first - lo,
                )
                s = dataclasses.replace(s, times_s=s.times_s - first + lo)
        fixed.append(s)
    return dataclasses.replace(aligned, streams=tuple(fixed))


def _part_key(s: RecordedStream) -> tuple:
    return (s.name, s.type, s.source_id or f"host:{s.hostname}", len(s.labels), s.channel_format)


def stream_parts(recording: Recording, chosen: RecordedStream) -> list[RecordedStream]:
    """The parts of `chosen`'s stream (itself included), in time order; just [chosen] when alone.

    Parts have the same name, type, channel count and source_id (or host, without source_id)
    and do not overlap in time: two such streams at once are two devices, not one restarted.
    """
    key = _part_key(chosen)
    same = [s for s in recording.streams if _part_key(s) == key and s.sample_count]
    if len(same) <= 1 or chosen not in same:
        return [chosen]
    same.sort(key=lambda s: float(s.times_s[0]))
    for a, b in _pairs(same):
        if float(b.times_s[0]) <= float(a.times_s[-1]):
            log.debug(  # RecordingSource names the ones not replayed and how to pick them
                "%d streams named %r overlap in time, so they are separate devices, not parts of one",
                len(same),
                chosen.name,
            )
            return [chosen]
    return same


def _pairs(items: list) -> list[tuple]:
    return list(zip(items[:-1], items[1:], strict=True))


def stitch(parts: list[RecordedStream]) -> tuple[RecordedStream, np.ndarray]:
    """One stream from its parts in time order; also the index where each later part starts."""
    if len(parts) == 1:
        return parts[0], np.zeros(0, dtype=np.int64)
    first = parts[0]
    data = np.concatenate([np.asarray(p.data) for p in parts])
    times = np.concatenate([p.times_s for p in parts])
    starts = np.cumsum([p.sample_count for p in parts[:-1]]).astype(np.int64)
    joined = dataclasses.replace(
        first,
        data=data,
        times_s=times,
        segments=((0, int(times.shape[0]) - 1),),
        footer_sample_count=sum(p.sample_count for p in parts),
    )
    return joined, starts


def prepare_eeg(
    recording: Recording, chosen: RecordedStream, *, join_parts: bool = True, smooth: bool = True
) -> PreparedEeg:
    """Join `chosen`'s parts (unless join_parts is False: the user picked one part), repair its
    stamps, find its gaps, measure its rate and (smooth, regular streams only) dejitter its
    stamps per gap-free stretch (`collector.core.time_repair.dejitter`).

    Expects the stamps as recorded (load_recording(dejitter=False)), so that every bad stamp is
    seen and counted here.

    Raises UsageError (one line) for a stream too irregular to be windowed.
    """
    parts = stream_parts(recording, chosen) if join_parts else [chosen]
    stream, part_starts = stitch(parts)
    if len(parts) > 1:
        log.warning(
            "stream %r (source_id %s) came in %d parts (its sender restarted): replaying them as one "
            "stream in time order, with the %d outage(s) between them as gaps (%s)",
            stream.name,
            stream.source_id or "none",
            len(parts),
            len(parts) - 1,
            ", ".join(f"{float(b.times_s[0]) - float(a.times_s[-1]):.3f} s" for a, b in _pairs(parts)),
        )
    nominal = float(chosen.sfreq)
    name = stream.name
    period = typical_period(stream.times_s)
    if nominal <= 0 and stream.sample_count > 1:
        spread = irregularity(stream.times_s)
        if spread > IRREGULAR_IQR:
            raise UsageError(
                f"stream {name!r} is declared irregular (nominal_srate 0) and its sample spacing varies "
                f"too much to be windowed as EEG (interquartile range {spread:.2f}× the median interval). "
                "Pick the EEG stream with --stream, or resample the recording to a fixed rate."
            )
    repair = repair_times(stream.times_s, period) if period > 0 else None
    times = repair.times if repair is not None else stream.times_s
    if repair is not None and repair.repaired.size:
        log.warning(
            "stream %r: %d sample timestamp(s) off the stream's regular grid (an outlier, swapped or "
            "repeated stamp, or a run of bad stamps whose neighbours agree) were repaired from their "
            "neighbours; the samples are kept",
            name,
            repair.repaired.size,
        )
    raw = stream.times_s
    for i in repair.resets if repair is not None else ():
        log.warning(
            "stream %r: the clock went back %.3f s at sample %d and did not return to its grid within "
            "%g s (a clock reset, or a long run of bad stamps); the samples after it follow one period "
            "after those before, and the break is a gap (spurious if only the stamps were bad)",
            name,
            float(raw[i - 1] - raw[i]),
            i,
            MAX_EXCURSION_S,
        )
    for i in np.flatnonzero(np.diff(times) > IMPLAUSIBLE_JUMP_S).tolist():
        log.warning(
            "stream %r: the stamps jump %.0f s forward at sample %d and stay there: kept as a gap, "
            "though a jump this large is more likely a clock fault than a pause in the recording",
            name,
            float(times[i + 1] - times[i]),
            i + 1,
        )
    measured = measure_rate(times, period, robust=nominal <= 0) if period > 0 else None
    sfreq = rate_to_use(nominal, measured)
    if measured is not None and nominal > 0 and sfreq != nominal:
        log.warning("%s", rate_warning(name, nominal, measured))
    elif nominal <= 0 and measured is not None:
        log.info("stream %r is declared irregular; its typical spacing gives %.6g Hz", name, measured)
    period_used = 1.0 / sfreq if sfreq > 0 else period
    breaks = set(gap_starts(times, period_used).tolist()) | set(part_starts.tolist())
    if repair is not None:
        breaks |= set(repair.resets)
    ordered = np.asarray(sorted(b for b in breaks if 0 < b < stream.sample_count), dtype=np.int64)
    if smooth and nominal > 0:
        times = dejitter(times, ordered)
    return PreparedEeg(
        stream=dataclasses.replace(stream, times_s=times),
        parts=len(parts),
        part_ids=tuple(p.stream_id for p in parts),
        repaired=repair.repaired if repair is not None else np.zeros(0, dtype=np.int64),
        resets=tuple(repair.resets) if repair is not None else (),
        breaks=ordered,
        nominal_sfreq=nominal,
        measured_sfreq=measured,
        sfreq=float(sfreq),
    )


def recording_start_s(recording: Recording, eeg: PreparedEeg) -> float:
    """The earliest timestamp of any stream (the repaired EEG's own first stamp for the EEG)."""
    starts = [float(eeg.stream.times_s[0])]
    for s in recording.streams:
        if s.sample_count and s.stream_id not in eeg.part_ids:
            starts.append(_robust_first(s.times_s))
    return min(starts)
