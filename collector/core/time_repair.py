"""One stream's sample times: the fitted clock's times, bad stamps, gaps, resets, and the rate they
really show.

Shared by every source (replayed files of any format, live LSL, BrainFlow), so a recording and a
live stream with the same timestamps give the same samples, gaps and rate. The model that tells
jitter from gaps, clock resets and bad stamps (a least-squares line of stamp against sample index,
broken only at real breaks, as pyxdf's `_jitter_removal` and liblsl's dejitter do) and its
thresholds are in `collector.core.clock_fit`; this module runs it on a whole stretch
(`repair_times`, replay) or on pieces as they arrive (`LiveRepair`, live), and measures rates.

**Rate.** The period used to start a segment is the median over 8-sample spans (robust to
outliers, pauses and stamps repeated in pairs or packets). The rate a stream really has is measured
from the fitted times over their gap-free stretches (`measure_rate`); for streams declared irregular
(`nominal_srate` 0) the typical spacing, 1 / median interval, is used. A stream whose intervals vary
too much to be windowed (interquartile range over `IRREGULAR_IQR` times the median) is refused.

Times are float64 seconds on the stream's own clock, shape (n,).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collector.core.clock import gap_threshold_s
from collector.core.clock_fit import (
    ANCHOR_TOLERANCE,
    BAD_JITTER,
    GAP_JITTER,
    GAP_PACKETS,
    IMPLAUSIBLE_JUMP_S,
    LEVEL_S,
    MAX_EXCURSION_S,
    MAX_RUN,
    WINDOW_S,
    ClockFit,
    per_sample_steps,
    typical_period,
)

__all__ = [
    "ANCHOR_TOLERANCE",
    "BAD_JITTER",
    "GAP_JITTER",
    "GAP_PACKETS",
    "IMPLAUSIBLE_JUMP_S",
    "IRREGULAR_IQR",
    "LEVEL_S",
    "MAX_EXCURSION_S",
    "MAX_RUN",
    "MIN_INTERVALS",
    "RATE_TOLERANCE",
    "WINDOW_S",
    "LiveRepair",
    "RateMeter",
    "TimeRepair",
    "dejitter",
    "gap_starts",
    "irregularity",
    "measure_rate",
    "rate_to_use",
    "rate_warning",
    "repair_times",
    "typical_period",
]

RATE_TOLERANCE = 0.01  # measured vs declared rate: beyond 1 % the measured rate is used
IRREGULAR_IQR = 1.0  # interquartile range of the intervals / median above this: cannot be windowed
MIN_INTERVALS = 16  # fewer intervals than this: no rate can be measured


@dataclass
class TimeRepair:
    """The outcome of `repair_times` on one stretch of stamps."""

    times: np.ndarray  # (n,) fitted times, seconds; strictly increasing over [0, decided)
    repaired: np.ndarray  # indices whose stamp was bad (left out of the fit, time from the line)
    resets: list[int] = field(default_factory=list)  # first index after each backward clock jump
    decided: int = 0  # [0, decided) is final; the rest awaits later samples (final=False only)
    gaps: list[int] = field(default_factory=list)  # first index after each gap (samples missing)
    jitter_s: float = 0.0  # the stream's measured jitter J
    packet: int = 1  # samples per packet stamp (1: per-sample stamps)


def repair_times(times_s: np.ndarray, period_s: float, *, final: bool = True, fixed: int = 0) -> TimeRepair:
    """Fit the stream's clock and find its bad stamps, gaps and resets (see the module docstring).

    times_s: (n,) seconds. period_s: the stream's typical period (`typical_period`), > 0.
    final: the stretch is complete; when False, samples whose decision needs later samples are
    left out of `decided`. fixed: kept for compatibility (the model never changes samples it
    handed out; a live source uses `LiveRepair`).
    """
    t = np.array(times_s, dtype=np.float64)
    n = t.shape[0]
    result = TimeRepair(times=t, repaired=np.zeros(0, dtype=np.int64), decided=n)
    if n < 2 or not period_s > 0:
        return result
    model = ClockFit(period_s)
    model.add(t)
    model.run(final)
    times = model.take(final)
    result.decided = times.shape[0]
    out = t.copy()
    out[: times.shape[0]] = times
    result.times = out
    decided = result.decided
    result.repaired = np.unique(np.asarray([i for i in model.repaired if i < decided], dtype=np.int64))
    result.resets = [i for i in model.resets if i < decided]
    result.gaps = [i for i in model.gaps if i < decided]
    result.jitter_s = model.jitter
    result.packet = model.packet
    return result


def gap_starts(times_s: np.ndarray, period_s: float) -> np.ndarray:
    """Indices of the first sample after each gap (an interval over `gap_threshold_s`) in fitted
    times: the model's gaps, since within a segment fitted times are one period apart."""
    if times_s.shape[0] < 2 or not period_s > 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.diff(times_s) > gap_threshold_s(1.0 / period_s)) + 1


def measure_rate(times_s: np.ndarray, period_s: float, *, robust: bool = False) -> float | None:
    """Samples per second over the stream's gap-free stretches, None with too few intervals.

    robust: 1 / median interval (for streams declared irregular: the typical spacing).
    """
    steps = np.diff(np.asarray(times_s, dtype=np.float64))
    if not period_s > 0:
        return None
    ok = steps[(steps > 0) & (steps <= gap_threshold_s(1.0 / period_s))]
    if ok.size < MIN_INTERVALS:
        return None
    rate = 1.0 / np.median(ok) if robust else ok.size / ok.sum()
    return round(float(rate), 6)


def irregularity(times_s: np.ndarray) -> float:
    """Interquartile range of the positive intervals per sample over their median (0 = perfectly
    regular); inf with fewer than MIN_INTERVALS of them.

    A sender that gives each packet (an LSL chunk pushed to a stream declared irregular, say) one
    stamp repeats it for the packet's samples: an interval between two stamps then spans the later
    packet, and counts per sample of it. With a stamp per sample this is the plain interval."""
    steps = per_sample_steps(times_s)
    steps = steps[steps > 0]
    if steps.size < MIN_INTERVALS:
        return float("inf")
    q1, med, q3 = np.quantile(steps, [0.25, 0.5, 0.75])
    return float((q3 - q1) / med) if med > 0 else float("inf")


def rate_to_use(nominal: float, measured: float | None) -> float:
    """The measured rate when the declared one is 0 or off by more than RATE_TOLERANCE, else the declared."""
    if measured is None or not measured > 0:
        return nominal
    if nominal <= 0 or abs(measured / nominal - 1.0) > RATE_TOLERANCE:
        return measured
    return nominal


def rate_warning(name: str, nominal: float, measured: float) -> str:
    """The one warning for a stream whose real rate is not the declared one."""
    return (
        f"stream {name!r} declares {nominal:.6g} Hz but its timestamps show {measured:.6g} Hz "
        f"({(measured / nominal - 1) * 100:+.1f} %): the device does not run at its declared rate; "
        f"windows, segments and PSD use the measured {measured:.6g} Hz, and the chunks state both"
    )


class LiveRepair:
    """The clock model for a live stream that arrives in pieces.

    Holds the samples not decided yet (the look ahead of `3 * LEVEL_S`, or, after a jump back, until
    the stamps come back or `MAX_EXCURSION_S` passed) and hands out the rest with their fitted
    times, so the pieces give the same times as the whole stream would. `period_s` follows the
    fitted clock of the stream.
    """

    def __init__(self, period_s: float) -> None:
        self._model = ClockFit(period_s)
        self.repaired_total = 0
        self.resets_total = 0
        self._held_x: np.ndarray | None = None
        self._reported = (0, 0)

    @property
    def period_s(self) -> float:
        seg = self._model.segments[-1]
        return seg.slope if seg.slope > 0 else self._model.p

    @property
    def held(self) -> int:
        """Samples received and not handed out yet."""
        return int(self._model.n - self._model.out_pos)

    @property
    def suspect(self) -> bool:
        """Samples are held after a jump until later ones show whether it lasts: worth waiting for."""
        return self._model.suspect

    def feed(
        self, times_s: np.ndarray, data: np.ndarray, *, final: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
        """Stamps (n,) seconds and data (n, ch) in; out: the samples decided so far (fitted
        times), the positions (in the output) of repaired stamps, and of samples after a reset."""
        m = self._model
        x = data if self._held_x is None else np.concatenate((self._held_x, data))
        first = m.out_pos
        m.add(times_s)
        m.run(final)
        out_t = m.take(final)
        k = out_t.shape[0]
        out_x = x[:k]
        self._held_x = x[k:] if k < x.shape[0] else None
        end = first + k
        repaired = sorted({i - first for i in m.repaired if first <= i < end})
        resets = [i - first for i in m.resets if first <= i < end]
        m.repaired = [i for i in m.repaired if i >= end]
        m.resets = [i for i in m.resets if i >= end]
        m.gaps = [i for i in m.gaps if i >= end]
        m.trim()
        self.repaired_total += len(repaired)
        self.resets_total += len(resets)
        return out_t, out_x, repaired, resets


class RateMeter:
    """The rate a live stream shows over its last `window_s` seconds, gaps excluded."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._pieces: list[tuple[float, int, float]] = []  # (last stamp, intervals, their sum)
        self._last: float | None = None

    def add(self, times_s: np.ndarray, period_s: float) -> None:
        if times_s.shape[0] == 0 or not period_s > 0:
            return
        t = times_s if self._last is None else np.concatenate(([self._last], times_s))
        steps = np.diff(t)
        ok = steps[(steps > 0) & (steps <= gap_threshold_s(1.0 / period_s))]
        self._last = float(times_s[-1])
        self._pieces.append((self._last, int(ok.size), float(ok.sum())))
        while self._pieces and self._pieces[0][0] < self._last - self.window_s:
            self._pieces.pop(0)

    def rate(self) -> float | None:
        """Samples per second, None before MIN_INTERVALS intervals and a second of stream."""
        count = sum(p[1] for p in self._pieces)
        total = sum(p[2] for p in self._pieces)
        if count < MIN_INTERVALS or total < 1.0:
            return None
        return round(count / total, 6)


def dejitter(times_s: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Least-squares line through each gap-free stretch's times (index -> time), as pyxdf's
    dejitter does, split at `breaks` (first index after each). `repair_times` already returns
    fitted times; this whole-stretch refit (replay of XDF only) smooths what is left. Stretches of
    fewer than 3 samples are kept as they are."""
    t = np.array(times_s, dtype=np.float64)
    edges = [0, *[int(b) for b in breaks], t.shape[0]]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        m = b - a
        if m < 3:
            continue
        x = np.arange(m, dtype=np.float64)
        y = t[a:b] - t[a]
        xm, ym = (m - 1) / 2.0, float(y.mean())
        slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
        t[a:b] = t[a] + ym + slope * (x - xm)
    return t
