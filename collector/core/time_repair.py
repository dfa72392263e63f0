"""One stream's sample times: repair of isolated bad stamps, gaps, and the rate they really show.

Shared by every source (replayed files of any format, live LSL), so a recording and a live stream
with the same timestamps give the same samples, gaps and rate.

**Time repair.** Recorders and senders occasionally stamp a sample wrong: one sample off by about
±200,000 s (a known LabRecorder/liblsl glitch), two stamps swapped, a stamp repeated. A regularly
sampled stream has a grid: one period between samples. A run of at most `MAX_RUN` samples whose
stamps break strict increase is *isolated* when the good samples on either side of it agree with
each other (their distance is the run's length + 1 periods, within `ANCHOR_TOLERANCE` periods):
those stamps are replaced by the grid between the two neighbours (linear interpolation), the data
stay where they are, and the repair is counted. A run at the very start or end of the stream (one
neighbour only) is extrapolated from the grid when its stamps go backwards or jump by more than
`IMPLAUSIBLE_JUMP_S`. A longer run (up to `MAX_EXCURSION_S` of samples, e.g. 12 stamps
200,000 s early) whose stamps then come back to the grid of the samples before it is an
excursion of the stamps, not of the clock: repaired and counted the same way (a live source holds
the samples after such a jump until they return or `MAX_EXCURSION_S` passed).
What no isolated run explains is a real, lasting jump of the clock:
forwards it is a gap; backwards (a clock reset) the later samples are placed one period after the
earlier ones and the break is recorded as a gap, so sample times always strictly increase and no
gap ever has start >= end.

**Rate.** The period used for the grid is the median over 8-sample spans (robust to outliers,
pauses and stamps repeated in pairs or packets).
The rate a stream really has is measured over its gap-free stretches: intervals that are not gaps,
counted and summed (`measure_rate`); for streams declared irregular (`nominal_srate` 0) the typical
spacing, 1 / median interval, is used. A stream whose intervals vary too much to be windowed
(interquartile range over `IRREGULAR_IQR` times the median) is refused (`irregularity`).

Times are float64 seconds on the stream's own clock, shape (n,).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from collector.core.clock import gap_threshold_s

log = logging.getLogger(__name__)

MAX_RUN = 8  # longest run of bad stamps repaired from the grid by `_best_run`
MAX_EXCURSION_S = 10.0  # a longer run of bad stamps is repaired only if its far side is back on the grid
ANCHOR_TOLERANCE = 0.75  # periods: how far the run's two neighbours may be off the grid (jitter)
_RUN_PENALTY = 0.2  # per extra sample: prefer the shortest run that explains the anomaly
_HOLD_STEP = 1.5  # live: a step longer than this many periods near the end waits for later samples
IMPLAUSIBLE_JUMP_S = 3600.0  # at a stream's edge, a jump larger than this is a bad stamp, not a gap
RATE_TOLERANCE = 0.01  # measured vs declared rate: beyond 1 % the measured rate is used
IRREGULAR_IQR = 1.0  # interquartile range of the intervals / median above this: cannot be windowed
MIN_INTERVALS = 16  # fewer intervals than this: no rate can be measured


@dataclass
class TimeRepair:
    """The outcome of `repair_times` on one stretch of stamps."""

    times: np.ndarray  # (n,) repaired stamps, seconds; strictly increasing over [0, decided)
    repaired: np.ndarray  # indices whose stamp was replaced from the grid
    resets: list[int] = field(default_factory=list)  # first index after each backward clock jump
    decided: int = 0  # [0, decided) is final; the rest awaits later samples (final=False only)


_SPAN = 8  # samples per span in `typical_period`


def typical_period(times_s: np.ndarray) -> float:
    """The stream's period, seconds: the median over 8-sample spans of span / 8 (robust to bad
    stamps, pauses and to senders that stamp samples in pairs or packets), or with fewer samples
    the median positive interval; 0.0 when there is none."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.shape[0] > 4 * _SPAN:
        spans = (times[_SPAN:] - times[:-_SPAN]) / _SPAN
        spans = spans[spans > 0]
        if spans.size:
            return float(np.median(spans))
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 0.0


def _best_run(t: np.ndarray, k: int, p: float, lo: int, final: bool) -> tuple[int, int, str] | None:
    """The shortest run [i, j) of bad stamps around the non-increasing step k -> k + 1.

    Returns (i, j, how) with how "interpolate" (both neighbours agree) or "left"/"right" (a run at
    the end or start, extrapolated from the neighbour on that side), or None (a lasting jump).
    """
    n = t.shape[0]
    best: tuple[float, int, int, str] | None = None
    for length in range(1, MAX_RUN + 1):
        for i in range(max(lo, k - length + 1, 0), min(k + 1, n - length) + 1):
            j = i + length
            if i >= 1 and j <= n - 1:
                span = t[j] - t[i - 1]
                if span <= 0:
                    continue
                err = abs(span / p - (length + 1))
                if err <= ANCHOR_TOLERANCE:
                    score = err + _RUN_PENALTY * (length - 1)
                    if best is None or score < best[0]:
                        best = (score, i, j, "interpolate")
        if best is not None and best[0] < _RUN_PENALTY:  # an exact fit: no longer run can beat it
            break
    if best is not None:
        return best[1], best[2], best[3]
    # A long run of bad stamps starts or ends with a clear step back; stamps merely repeated
    # (a packet sharing one stamp) are not searched for one.
    excursion = _excursion(t, k, p, lo) if t[k + 1] - t[k] < -ANCHOR_TOLERANCE * p else None
    if excursion is not None:
        return excursion[0], excursion[1], "interpolate"
    if not final:
        return None
    if n - (k + 1) <= MAX_RUN and k >= lo:  # the last few samples went backwards: extrapolate
        return k + 1, n, "left"
    if k + 1 <= MAX_RUN and lo == 0 and n - (k + 1) >= 2:  # the first few samples were ahead
        return 0, k + 1, "right"
    return None


def _excursion(t: np.ndarray, k: int, p: float, lo: int) -> tuple[int, int] | None:
    """A run longer than MAX_RUN (up to MAX_EXCURSION_S of samples) around the backward step
    k -> k + 1 whose two neighbours agree with one grid: the clock did not jump, the stamps of
    the run were bad (an excursion that came back). Returns the run [i, j) or None.

    Backward excursion: the run starts at k + 1 and ends before the first later stamp back on the
    grid of t[k]. Forward excursion: the run ends at k and starts after the last earlier stamp on
    the grid of t[k + 1]. Tolerance: ANCHOR_TOLERANCE periods (290 ppm of drift over 10 s at 256 Hz).
    """
    n = t.shape[0]
    reach = _reach(p)
    found: list[tuple[int, int]] = []
    right = np.arange(k + 2, min(n, k + 2 + reach))
    if right.size:
        steps = right - k
        err = np.abs((t[right] - t[k]) / p - steps)
        ok = np.flatnonzero(err <= ANCHOR_TOLERANCE)
        if ok.size:
            found.append((k + 1, int(right[ok[0]])))
    left = np.arange(k - 1, max(lo - 1, 0, k - reach) - 1, -1)  # candidate left neighbours i - 1
    if left.size:
        steps = k + 1 - left
        err = np.abs((t[k + 1] - t[left]) / p - steps)
        ok = np.flatnonzero(err <= ANCHOR_TOLERANCE)
        if ok.size:
            found.append((int(left[ok[0]]) + 1, k + 1))
    return min(found, key=lambda run: run[1] - run[0]) if found else None


def _reach(p: float) -> int:
    """Samples in MAX_EXCURSION_S at period p (at least MAX_RUN + 1)."""
    return max(MAX_RUN + 1, int(MAX_EXCURSION_S / p))


def _back_on_grid(t: np.ndarray, s: int, p: float) -> bool:
    """Whether some stamp after s + 1 lies on the grid of t[s] again."""
    later = np.arange(s + 2, t.shape[0])
    return bool(later.size) and bool(np.any(np.abs((t[later] - t[s]) / p - (later - s)) <= ANCHOR_TOLERANCE))


def repair_times(times_s: np.ndarray, period_s: float, *, final: bool = True, fixed: int = 0) -> TimeRepair:
    """Repair isolated bad stamps of one regularly sampled stretch (see the module docstring).

    times_s: (n,) seconds. period_s: the stream's typical period (`typical_period`), > 0.
    final: the stretch is complete (a file, or the end of a live stream); when False, backward
    steps and steps over 1.5 periods among the last MAX_RUN + 1 samples are left undecided
    (`decided` stops before them) so that a live source can hold those samples until the next
    ones arrive. fixed: samples [0, fixed) were
    already handed out and are never changed. Costs one vectorised pass when nothing is wrong.
    """
    t = np.array(times_s, dtype=np.float64)
    n = t.shape[0]
    result = TimeRepair(times=t, repaired=np.zeros(0, dtype=np.int64), decided=n)
    if n < 2 or not period_s > 0:
        return result
    p = float(period_s)
    d = np.diff(t)
    edge = n - 1 - (MAX_RUN + 1)  # steps at or after this index lack the samples to decide
    if not final:
        # Hold from just before the first suspicious step near the end: a stamp going backwards or
        # more than 1.5 periods ahead (a late stamp, a swap's first half, or a gap) until later
        # samples decide; a live source releases them when the stream goes quiet.
        tail = d[max(0, edge) :]
        near = np.flatnonzero((tail <= 0) | (tail > _HOLD_STEP * p))
        if near.size:
            result.decided = max(fixed, int(near[0]) + max(0, edge) + 1 - MAX_RUN)
        # An implausible jump forward may start a long run of bad stamps that comes back: hold
        # from it until MAX_EXCURSION_S of samples show whether it lasts (backward: see below).
        for s in np.flatnonzero(d > IMPLAUSIBLE_JUMP_S).tolist():
            if s + 1 >= fixed and n - (s + 1) < _reach(p) and not _back_on_grid(t, s, p):
                result.decided = max(fixed, min(result.decided, s + 1))
                break
    repaired: list[int] = []
    limit = result.decided - 1  # consider steps k with k + 1 < decided
    # A first or last few samples off by an implausible amount look like a gap: they are not.
    big = np.flatnonzero(np.abs(d) > IMPLAUSIBLE_JUMP_S)
    for s in big.tolist():
        if s < MAX_RUN and fixed == 0 and n - (s + 1) >= 2:
            t[: s + 1] = t[s + 1] - p * np.arange(s + 1, 0, -1)
            repaired.extend(range(s + 1))
        elif final and n - (s + 1) <= MAX_RUN and s + 1 >= fixed:
            t[s + 1 :] = t[s] + p * np.arange(1, n - s)
            repaired.extend(range(s + 1, n))
    if big.size:
        d = np.diff(t)
    for k in np.flatnonzero(d <= 0).tolist():
        if t[k + 1] > t[k]:  # already fixed by an earlier repair
            continue
        if k + 1 >= limit + 1 and not final:
            # Undecided, unless it ends a long run ahead that began among the samples decided now.
            back = t[k + 1] - t[k] < -ANCHOR_TOLERANCE * p
            ahead = _excursion(t, k, p, fixed) if back else None
            if ahead is None or ahead[0] >= result.decided:
                break
            i, j = ahead
            t[i:j] = t[i - 1] + (t[j] - t[i - 1]) * np.arange(1, j - i + 1) / (j - i + 1)
            repaired.extend(range(i, j))
            continue
        run = _best_run(t, k, p, fixed, final)
        if run is None and not final and n - (k + 1) < _reach(p) and t[k + 1] - t[k] < -ANCHOR_TOLERANCE * p:
            # Maybe a long run of bad stamps: hold until it comes back or MAX_EXCURSION_S passed.
            result.decided = max(fixed, min(result.decided, k + 1))
            break
        if run is None:
            # A lasting backward jump: continue one period after the last sample before it.
            t[k + 1 :] += t[k] + p - t[k + 1]
            result.resets.append(k + 1)
            continue
        i, j, how = run
        if how == "interpolate":
            t[i:j] = t[i - 1] + (t[j] - t[i - 1]) * np.arange(1, j - i + 1) / (j - i + 1)
        elif how == "left":
            t[i:j] = t[i - 1] + p * np.arange(1, j - i + 1)
        else:
            t[i:j] = t[j] - p * np.arange(j - i, 0, -1)
        repaired.extend(range(i, j))
    result.repaired = np.unique(np.asarray(repaired, dtype=np.int64))
    return result


def gap_starts(times_s: np.ndarray, period_s: float) -> np.ndarray:
    """Indices of the first sample after each gap (an interval over `gap_threshold_s`)."""
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
    """Interquartile range of the positive intervals over their median (0 = perfectly regular)."""
    steps = np.diff(np.asarray(times_s, dtype=np.float64))
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
    """`repair_times` for a live stream that arrives in pieces.

    Keeps the last few stamps handed out (the left neighbours of the next piece) and holds back
    the samples an anomaly near the end of a piece leaves undecided (at most MAX_RUN + 1 of them,
    until the next piece shows whether it was one bad stamp or a lasting jump). After a clock
    reset every later stamp is shifted by the same amount, so the stream stays on one line.
    `period_s` follows the stream: the median interval of the last stamps handed out.
    """

    _HISTORY = 512  # stamps kept to follow the period

    def __init__(self, period_s: float) -> None:
        self.period_s = float(period_s)
        self.shift_s = 0.0
        self.repaired_total = 0
        self.resets_total = 0
        self._history = np.zeros(0)
        self._held_t = np.zeros(0)
        self._held_fixed = np.zeros(0, dtype=bool)  # held samples already repaired (counted on release)
        self._held_x: np.ndarray | None = None

    @property
    def held(self) -> int:
        return int(self._held_t.shape[0])

    def feed(
        self, times_s: np.ndarray, data: np.ndarray, *, final: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
        """Stamps (n,) seconds and data (n, ch) in; out: the samples decided so far (times
        repaired), the positions (in the output) of repaired stamps, and of samples after a reset."""
        incoming = np.asarray(times_s, dtype=np.float64) + self.shift_s
        held_x = self._held_x if self._held_x is not None else data[:0]
        x = np.concatenate((held_x, data)) if held_x.shape[0] else data
        keep = min(self._history.shape[0], MAX_RUN + 2)
        t_in = np.concatenate((self._history[self._history.shape[0] - keep :], self._held_t, incoming))
        if not self.period_s > 0:
            self.period_s = typical_period(t_in)
        r = repair_times(t_in, self.period_s, final=final, fixed=keep)
        fixed = np.concatenate((np.zeros(keep, bool), self._held_fixed, np.zeros(incoming.shape[0], bool)))
        fixed[r.repaired] = True
        if r.resets:
            last = r.resets[-1]
            self.shift_s += float(r.times[last] - t_in[last])
        decided = max(keep, r.decided)
        out_t = r.times[keep:decided]
        out_x = x[: decided - keep]
        self._held_t = r.times[decided:]
        self._held_fixed = fixed[decided:]
        self._held_x = x[decided - keep :] if decided - keep < x.shape[0] else None
        if out_t.shape[0]:
            self._history = np.concatenate((self._history, out_t))[-self._HISTORY :]
            if self._history.shape[0] > 32:
                self.period_s = typical_period(self._history)
        repaired = (np.flatnonzero(fixed[keep:decided])).tolist()
        resets = [int(i) - keep for i in r.resets if keep <= i < decided]
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
    """Least-squares line through each gap-free stretch's stamps (index -> time), as pyxdf's
    dejitter does, but split at our own gaps (`breaks`: first index after each) and applied after
    the repair, so bad stamps are counted rather than silently smoothed. Stretches of fewer than
    3 samples are kept as they are."""
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
