"""The clock model of one stream: a fitted line of stamp against sample index that tells jitter
from gaps, clock resets and bad stamps (`ClockFit`; used through `collector.core.time_repair`).

Shared by every source (replayed files of any format, live LSL, BrainFlow), so a recording and a
live stream with the same timestamps give the same samples, gaps, times and rate: replay runs
exactly the sequential model a live source runs, over the whole stream at once.

**The clock model.** Real senders stamp packets, not samples (muselsl stamps each 12-sample BLE
packet when it arrives; LabRecorder stores what the sender stamped), so stamps jitter around the
sender's clock. As pyxdf's `_jitter_removal` and liblsl's `proc_dejitter` do, the stream's clock is a
line of stamp against sample index, refitted as samples come (least squares over the last
`WINDOW_S` of good samples of the current segment, like liblsl's recursive least squares with a
forgetting window instead of a half-time) and broken only at real breaks (as pyxdf splits its fit
into segments). Each sample's time is that line at its index: strictly increasing, one fitted
period apart, within the stamps' jitter of the raw stamps. Only the first `2 * LEVEL_S` of a
segment are fitted with a look ahead (a line needs a few samples).

**Telling jitter, gaps, resets and bad stamps apart.** Every block of `LEVEL_S` is compared with
the line fitted before it (its residual e = stamp - line):

- *jitter*: the stream's jitter J is measured as it goes: the 99th percentile of |e - median(e)|
  over the last `WINDOW_S` (capped at 6 robust sigmas so that bad stamps cannot inflate it), and
  the largest value seen is kept. Two real muselsl sessions (256 Hz, ms-resolution LSL stamps,
  `muselsl_jitter_*.csv`) give e between -9 ms (arrival floor) and +30 ms (late packets), J from
  7.5 ms to 22 ms (per 10 s window; median 10-11 ms), stamps stepping back by up to 28 ms. A clean
  grid has J = 0.
- *level*: the median of e over the next `LEVEL_S` (64 samples at 256 Hz). On those sessions it
  stays within +-5.7 ms (std 2.5 ms) of the line: single late packets and bursts of two do not move
  it, a lost packet moves it by 46.9 ms for good.
- *gap* (samples missing): the level rises by more than G = max(gap_threshold_s [4 periods, at
  least 20 ms], GAP_JITTER * J, GAP_PACKETS * one packet) and does not come back: the next stamp
  lies later than the clock predicts by clearly more than the jitter. The packet of a
  packet-stamped sender (muselsl: 12) is found from the steps that break the regular spacing: when
  at least 80 % of them fall on one phase modulo m, packets are m samples (no samples can be
  lost short of a packet). On the muselsl sessions G = max(20, 1.5 * 22, 0.75 * 46.9) = 35 ms:
  6x the level's noise (5.7 ms) above it, 12 ms below a lost packet.
- *clock reset*: the level falls by more than G and does not come back to the line within
  `MAX_EXCURSION_S` (an excursion that comes back is a run of bad stamps). The samples after it
  follow one fitted period after those before (they are contiguous), and the break is reported
  like a gap, as before. A backward step of the raw stamps that the level does not follow (the
  muselsl sessions have about 50 of 11-28 ms) is jitter: no break at all.
- *bad stamps*: a single stamp (or a run shorter than half a level window) off the line by more
  than T = max(ANCHOR_TOLERANCE periods, BAD_JITTER * J) while the level stays: an outlier
  (+-200,000 s), a swapped or repeated stamp on a clean clock. It is left out of the fit, its time
  is the line's, and it is counted as repaired. A longer run that comes back to the line within
  `MAX_EXCURSION_S` is repaired the same way. Runs of at most `MAX_RUN` samples at the very end
  of a stream are bad stamps, not a gap.

Live, a sample is handed out when the blocks up to it are decided: a look ahead of
`LEVEL_S` + 2 `LEVEL_S` (about 0.75 s); after a clock going back (or a forward jump over
`IMPLAUSIBLE_JUMP_S`) the samples are held until the stamps come back or `MAX_EXCURSION_S` passed.
Every decision reads a fixed stretch of samples, so the pieces a live stream arrives in never
change the result (unless the stream pauses and the source decides early with `final=True`).

Times are float64 seconds on the stream's own clock, shape (n,).

Kept as one piece: the block-by-block model and its vectorised pass over runs of clean blocks
must decide bit for bit alike, so they are read and changed together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from collector.core.clock import GAP_MIN_S, GAP_PERIODS, gap_threshold_s

MAX_RUN = 8  # a run of at most this many off-line samples at a stream's end is bad stamps, not a gap
MAX_EXCURSION_S = 10.0  # a backward (or implausible) jump that comes back within this is bad stamps
ANCHOR_TOLERANCE = 0.75  # periods: the least a stamp must be off the line to be a bad stamp
IMPLAUSIBLE_JUMP_S = 3600.0  # a forward jump larger than this waits MAX_EXCURSION_S to come back

WINDOW_S = 10.0  # the clock line is fitted over the last this many seconds of the segment
LEVEL_S = 0.25  # the level (median residual) is taken over this long; also the block length
MIN_LEVEL = 32  # ... and over at least this many samples
LEVEL_PACKETS = 5  # ... and at least this many packets
GAP_JITTER = 1.5  # a gap rises the level by more than this many times the jitter J
GAP_PACKETS = 0.75  # ... and, for a packet-stamped sender, by more than this many packets
BAD_JITTER = 3.0  # a bad stamp is off the line by more than this many times the jitter J
PACKET_SHARE = 0.8  # share of irregular steps on one phase modulo m that makes m the packet size
MAX_PACKET = 64
_IRREGULAR_STEP = 0.35  # periods: a step further than this from the median step breaks the spacing
_CHUNK = 65536  # outputs fitted per vectorised pass (keeps the sums exact)
_BATCH_VALUES = 1 << 17  # window samples per vectorised pass over clean blocks (1 MB per array)
_BATCH_MIN = 4  # clean blocks tried at once after a block that was not clean ...
_BATCH_MAX = 32  # ... and at most (arrays of 32 x 2,560 samples stay in the CPU's cache)


_SPAN = 8  # samples per span in `typical_period`


def typical_period(times_s: np.ndarray) -> float:
    """The stream's period, seconds: the median over 8-sample spans of span / 8 (robust to bad
    stamps, pauses and to senders that stamp samples in pairs or packets), or with fewer samples
    the median positive interval; 0.0 when there is none.

    A sender that gives each packet (an LSL chunk pushed to an irregular stream, a BLE packet) one
    stamp repeats it for the packet's samples (`repeated_stamps` > 1): then the period is the
    median of `per_sample_steps`, each step between two stamps over the samples it spans."""
    times = np.asarray(times_s, dtype=np.float64)
    if repeated_stamps(times) > 1:
        steps = per_sample_steps(times)
        steps = steps[steps > 0]
        return float(np.median(steps)) if steps.size else 0.0
    if times.shape[0] > 4 * _SPAN:
        spans = (times[_SPAN:] - times[:-_SPAN]) / _SPAN
        spans = spans[spans > 0]
        if spans.size:
            return float(np.median(spans))
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 0.0


def repeated_stamps(times_s: np.ndarray) -> int:
    """How many consecutive samples typically share one stamp (1 for a sender that stamps each
    sample): the median length of the runs of equal consecutive stamps."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.shape[0] < 2:
        return 1
    change = np.flatnonzero(np.diff(times) != 0)
    runs = np.diff(np.concatenate(([-1], change, [times.shape[0] - 1])))
    return max(1, int(np.median(runs)))


def per_sample_steps(times_s: np.ndarray) -> np.ndarray:
    """Each step between two different consecutive stamps over the samples of the run it ends,
    seconds, shape (runs - 1,): a packet stamped once (at its last sample, as a push or an arrival
    is) spans its own samples since the packet before. With a stamp per sample: np.diff."""
    times = np.asarray(times_s, dtype=np.float64)
    change = np.flatnonzero(np.diff(times) != 0)  # the last sample of each run of equal stamps
    runs = np.diff(np.concatenate((change, [times.shape[0] - 1])))  # the run after each change
    return (times[change + 1] - times[change]) / runs


def _median_rows(a: np.ndarray) -> np.ndarray:
    """np.median(a, axis=1), the same numbers, partitioning `a` (rows, n) in place (no copy)."""
    n = a.shape[1]
    k = n // 2
    if n % 2:
        a.partition(k, axis=1)
        return a[:, k].copy()
    a.partition((k - 1, k), axis=1)
    return np.mean(a[:, k - 1 : k + 1], axis=1)  # as np.median: the mean of the two middle values


def _quantile_index(n: int, q: float) -> tuple[int, int, float]:
    """(below, above, gamma) of NumPy's linear quantile q of n values: it lies between the sorted
    values `below` and `above`, at gamma of the way, and never above the value `above`."""
    virtual = (n - 1) * q
    below = min(int(math.floor(virtual)), n - 1)
    return below, min(below + 1, n - 1), virtual - math.floor(virtual)


def _quantile_and_median_rows(a: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(np.quantile(a, q, axis=1), np.median(a, axis=1)), the same numbers, from one in-place
    partition of `a` (rows, n): NumPy's linear method, its `_lerp` included."""
    n = a.shape[1]
    below, above, g = _quantile_index(n, q)
    k = n // 2
    a.partition(sorted({below, above, k - 1 if n % 2 == 0 else k, k}), axis=1)
    median = a[:, k].copy() if n % 2 else np.mean(a[:, k - 1 : k + 1], axis=1)
    lo, hi = a[:, below], a[:, above]
    gamma = np.float64(g)
    diff = hi - lo
    quantile = hi - diff * (1 - gamma) if gamma >= 0.5 else lo + diff * gamma
    return quantile, median


def _packets_possible(irregular: np.ndarray, smallest: int) -> bool:
    """Whether some packet size m >= `smallest` can hold PACKET_SHARE of the sorted positions
    `irregular` on one phase modulo m: a necessary condition, cheap to test. With a share s of N
    positions on one phase, at least N - 1 - 2 (1 - s) N neighbouring pairs are both on it, and
    their distance is a multiple of m, so at least m. Jittery stamps (irregular steps side by side)
    fail it, so the bincount over every size is skipped; the packet found is the same either way."""
    return int(np.count_nonzero(np.diff(irregular) >= smallest)) >= _pairs_needed(irregular.size)


def _pairs_needed(n: Any) -> Any:
    """The neighbouring pairs on one phase that N = n positions with PACKET_SHARE on it give at
    least (`_packets_possible`); n an int or an int array."""
    return n - 1 - 2 * (1 - PACKET_SHARE) * n - 1e-9


def _packets_possible_rows(irregular: np.ndarray, smallest: int) -> tuple[np.ndarray, np.ndarray]:
    """(irregular positions per row, `_packets_possible` of each row's positions) for a (rows, n)
    boolean array, at once: the neighbouring positions of the same row are compared. A row with
    over 1024 positions (`_find_packet` keeps its last 1024) must be tested on its own."""
    rows = irregular.shape[0]
    row_of, col = np.nonzero(irregular)  # by row, then position
    counts = np.bincount(row_of, minlength=rows)
    wide_apart = (np.diff(col) >= smallest) & (row_of[1:] == row_of[:-1])
    pairs = np.bincount(row_of[1:][wide_apart], minlength=rows)
    return counts, pairs >= _pairs_needed(counts)


def _thresholds_rows(
    slope: np.ndarray, jitter: np.ndarray, packet: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`ClockFit._thresholds` of each row (slope, jitter (rows,) float64; packet (rows,) int): the
    same IEEE operations in the same order, so the same numbers."""
    sfreq = 1.0 / slope
    with np.errstate(divide="ignore"):
        by_rate = np.where(sfreq > 0, np.maximum(GAP_PERIODS / sfreq, GAP_MIN_S), np.inf)  # gap_threshold_s
    gap = np.maximum(np.maximum(by_rate, GAP_JITTER * jitter), GAP_PACKETS * packet * slope)
    bad = np.maximum(ANCHOR_TOLERANCE * slope, BAD_JITTER * jitter)
    return gap, bad


@dataclass
class _Segment:
    start: int  # absolute index of its first sample
    kind: str  # "start", "gap" or "reset"
    shift: float | None = None  # added to the fitted line (resets move later samples)
    slope: float = 0.0  # last fitted slope (for the period after a reset)


class ClockFit:
    """The sequential clock model (see the module docstring). Feed stamps with `add`, then `run`;
    `take` hands out the decided samples' times. Indices are absolute (from the stream's start)."""

    def __init__(self, period_s: float) -> None:
        self.p = float(period_s) if period_s > 0 else 0.0
        self.base = 0  # absolute index of _t[0]
        self._t = np.zeros(0)
        self._good = np.zeros(0, dtype=bool)
        self.n = 0  # samples seen
        self.pos = 0  # flags decided for [0, pos)
        self.out_pos = 0  # times handed out for [0, out_pos)
        self.segments = [_Segment(0, "start", 0.0)]
        self.jitter = 0.0
        self.packet = 1
        self.pending: tuple[int, float, float, float, float, float] | None = None
        self.suspect = False  # waiting for a jump to come back (or not)
        self.repaired: list[int] = []
        self.resets: list[int] = []
        self.gaps: list[int] = []
        self.last_out: float | None = None
        self._batch_rows = _BATCH_MIN  # blocks `_clean_blocks` tries next (grows while they are clean)
        self._scratch: np.ndarray | None = None  # `_buffers`

    # -- sizes ---------------------------------------------------------------------------------
    def _level_n(self, p: float) -> int:
        return self._level_n_for(p, self.packet)

    @staticmethod
    def _level_n_for(p: float, packet: int) -> int:
        return max(MIN_LEVEL, int(round(LEVEL_S / p)), LEVEL_PACKETS * packet)

    def _window_n(self, p: float) -> int:
        return max(4 * self._level_n(p), int(round(WINDOW_S / p)))

    def _reach(self, p: float) -> int:
        return max(MAX_RUN + 1, int(MAX_EXCURSION_S / p))

    # -- buffer --------------------------------------------------------------------------------
    def add(self, times_s: np.ndarray) -> None:
        t = np.asarray(times_s, dtype=np.float64)
        if not t.size:
            return
        if self.p <= 0:
            self.p = typical_period(np.concatenate((self._t, t))) if self.n + t.size > 1 else 0.0
        self._t = np.concatenate((self._t, t))
        self._good = np.concatenate((self._good, np.ones(t.size, dtype=bool)))
        self.n += t.size

    def t(self, a: int, b: int) -> np.ndarray:
        return self._t[a - self.base : b - self.base]

    def good(self, a: int, b: int) -> np.ndarray:
        return self._good[a - self.base : b - self.base]

    def trim(self) -> None:
        p = self.p if self.p > 0 else 1.0
        keep_from = min(self.out_pos, self.pos) - self._window_n(p) - 2
        cut = keep_from - self.base
        if cut > 4096:
            self._t = self._t[cut:]
            self._good = self._good[cut:]
            self.base += cut
            self.segments = [
                s
                for i, s in enumerate(self.segments)
                if i == len(self.segments) - 1 or self.segments[i + 1].start > self.base - 1
            ]

    # -- the model -----------------------------------------------------------------------------
    def _seg(self) -> _Segment:
        return self.segments[-1]

    def _line(self, pos: int) -> tuple[float, float, float, float]:
        """(t at pos, slope, median residual, jitter of the window) of the line before pos."""
        s = self._seg().start
        p = self.p
        w = self._window_n(p)
        d = self._level_n(p)
        a = max(s, pos - w, self.base)
        tt = self.t(a, pos)
        g = self.good(a, pos)
        if int(g.sum()) >= d:
            x = np.flatnonzero(g).astype(np.float64)
            y = tt[g] - tt[g][0]
            xm, ym = x.mean(), y.mean()
            sxx = float(((x - xm) ** 2).sum())
            slope = float(((x - xm) * (y - ym)).sum() / sxx) if sxx > 0 else p
            if not slope > 0:  # stamps that do not rise over the window (one packet's) give no rate
                slope = p
            at = tt[g][0] + ym + slope * ((pos - a) - xm)
            e = y - (ym + slope * (x - xm))
            self._find_packet(tt, a)
        else:  # the start of a segment: a robust line over its next samples
            b = min(self.n, a + 2 * d)
            tt = self.t(a, b)
            slope = typical_period(tt) or p
            x = np.arange(tt.size, dtype=np.float64)
            off = float(np.median(tt - slope * x))
            at = off + slope * (pos - a)
            e = tt - (off + slope * x)
        med = float(np.median(e))
        dev = np.abs(e - med)
        if dev.size >= 8:
            j = min(float(np.quantile(dev, 0.99)), 6 * 1.4826 * float(np.median(dev)))
            self.jitter = max(self.jitter, j)
        return at, slope, med, self.jitter

    def _find_packet(self, tt: np.ndarray, a: int) -> None:
        if tt.size < 64:
            return
        d = np.diff(tt)
        irregular = np.flatnonzero(np.abs(d - np.median(d)) > _IRREGULAR_STEP * self.p)[-1024:] + a
        if irregular.size < 16 or not _packets_possible(irregular, self.packet + 1):
            return
        for m in range(MAX_PACKET, 1, -1):
            if m <= self.packet:
                break
            if np.bincount(irregular % m, minlength=m).max() >= PACKET_SHARE * irregular.size:
                self.packet = m
                break

    def _thresholds(self, slope: float, jitter: float, packet: int | None = None) -> tuple[float, float]:
        packet = self.packet if packet is None else packet
        gap = max(gap_threshold_s(1.0 / slope), GAP_JITTER * jitter, GAP_PACKETS * packet * slope)
        bad = max(ANCHOR_TOLERANCE * slope, BAD_JITTER * jitter)
        return gap, bad

    def run(self, final: bool) -> None:
        """Decide as many blocks as the samples seen allow."""
        while self.pos < self.n and self.p > 0:
            if self.pending is not None:
                if not self._excursion(final):
                    self.suspect = True
                    return
                continue
            if self._clean_blocks():
                continue
            if not self._block(final):
                return
        self.suspect = False

    def _clean_blocks(self) -> bool:
        """Decide a run of clean blocks at once, bit for bit as `_block` decides them one by one.

        A block is clean when the `_window_n` samples its line is fitted over are all good, its
        whole look ahead is received, and it holds no lasting level shift and no bad stamp:
        deciding it changes only `pos`, `jitter` and `packet`. An hour of 256 Hz EEG is 14,400
        blocks, each ~20 NumPy calls on 2,560 samples (4 s of CPU one by one, issue 23); here the
        same arithmetic runs on a (blocks, window) array: the same element-wise operations, and
        per-row reductions, medians and quantiles that give the same numbers (tests/unit/
        test_time_repair_model.py runs both paths on many streams). The first block that is not
        clean is left to `_block`. Returns whether any block was decided.
        """
        from numpy.lib.stride_tricks import sliding_window_view

        p = self.p
        d = self._level_n(p)
        w = self._window_n(p)
        pos, n, base = self.pos, self.n, self.base
        if pos - w < max(self._seg().start, base):
            return False
        rows = min((n - 3 * d - 1 - pos) // d + 1, self._batch_rows, max(1, _BATCH_VALUES // w))
        if rows < 1:
            return False
        lo = pos - w - base  # the first window's start in the buffer
        good = self._good[lo : lo + (rows - 1) * d + w]
        if not good.all():  # only the rows whose whole window is good
            rows = (int(np.argmin(good)) - w) // d + 1
            if rows < 1:
                return False
        t = self._t
        win = sliding_window_view(t[lo : lo + (rows - 1) * d + w], w)[::d]  # (rows, w), a view
        ahead = sliding_window_view(t[lo + w - d : lo + w + (rows - 1) * d + 3 * d + 1], 4 * d + 1)[::d]

        # `_line` with every sample good: least squares of stamp against index over the window.
        # The same operations in the same order as `_line`, into two reused (rows, w) buffers: a
        # fresh array of that size per operation cost 3x the arithmetic (issue 23).
        x = np.arange(w, dtype=np.float64)
        xm = x.mean()
        xc = x - xm
        sxx = float((xc**2).sum())
        y, e = self._buffers(rows, w)
        np.subtract(win, win[:, :1], out=y)
        if not (np.isfinite(y).all() and np.isfinite(ahead).all()):
            return False  # (y is finite only where every stamp of the window is)
        ym = y.mean(axis=1)
        np.subtract(y, ym[:, None], out=e)
        e *= xc
        slope = e.sum(axis=1) / sxx  # (xc * (y - ym)).sum()
        flat = np.flatnonzero(~(slope > 0))  # `_line` replaces such a slope: left to `_block`
        if flat.size:
            rows = int(flat[0])
            if rows == 0:
                return False
            win, ahead, y, e, ym, slope = (
                win[:rows],
                ahead[:rows],
                y[:rows],
                e[:rows],
                ym[:rows],
                slope[:rows],
            )
        at = win[:, 0] + ym + slope * (w - xm)
        np.multiply(slope[:, None], xc, out=e)
        e += ym[:, None]
        np.subtract(y, e, out=e)  # y - (ym + slope * xc)
        med = _median_rows(e)  # partitions e in place: only its order statistics are used below
        dev = np.abs(np.subtract(e, med[:, None], out=e), out=e)
        # A row's j = min(q99, cap) can raise the jitter only if its q99 exceeds the jitter so far,
        # and q99 is at most the order statistic above it: rows with no more than w - 1 - above
        # deviations over the jitter keep it, and their quantile is not computed.
        _, above, _ = _quantile_index(w, 0.99)
        j = np.full(dev.shape[0], self.jitter)
        rise = np.flatnonzero(np.count_nonzero(dev > self.jitter, axis=1) > w - 1 - above)
        if rise.size:
            q99, dev_med = _quantile_and_median_rows(dev[rise], 0.99)
            j[rise] = np.minimum(q99, 6 * 1.4826 * dev_med)
        jitter = np.maximum.accumulate(np.concatenate(([self.jitter], j)))[1:]
        packet = self._packets(win, pos - w, d, t[lo : lo + (rows - 1) * d + w])
        # A new packet size changes the block size: blocks after the one that found it are redone.
        if (packet != self.packet).any():
            resized = np.flatnonzero([self._level_n_for(p, m) != d for m in packet.tolist()])
            if resized.size:
                rows = int(resized[0]) + 1

        # `_block`: residuals from d before each block to its look ahead, against its line.
        line = at[:rows, None] + slope[:rows, None] * np.arange(-d, 3 * d + 1)
        e_all = ahead[:rows] - line - med[:rows, None]
        blk = e_all[:, d : 2 * d]
        level = _median_rows(blk.copy())  # (a copy: `_shift` reads e_all in order)
        gap, bad = _thresholds_rows(slope[:rows], jitter[:rows], packet[:rows])
        shifted = (np.abs(e_all[:, d : 3 * d]) > (gap / 2)[:, None]).any(axis=1)
        off = (np.abs(blk - level[:, None]) > bad[:, None]).any(axis=1)
        done = rows
        for r in np.flatnonzero(shifted | off).tolist():
            if off[r]:
                done = r
                break
            k, _ = self._shift(e_all[r], d, pos + r * d, pos + r * d + d, d, float(gap[r]))
            if k is not None:
                done = r
                break
        if done:
            self.pos = pos + done * d
            self.jitter = float(jitter[done - 1])
            self.packet = int(packet[done - 1])
        self._batch_rows = min(2 * self._batch_rows, _BATCH_MAX) if done == rows else _BATCH_MIN
        return done > 0

    def _buffers(self, rows: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Two C-ordered (rows, w) float64 scratch arrays for `_clean_blocks`, kept between calls
        (`_packets` reuses them once the line is fitted)."""
        if self._scratch is None or self._scratch.shape[1] < rows or self._scratch.shape[2] != w:
            self._scratch = np.empty((2, max(rows, min(_BATCH_MAX, _BATCH_VALUES // w)), w))
        return self._scratch[0, :rows], self._scratch[1, :rows]

    def _steps_buffers(self, rows: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """The two `_buffers` as C-ordered (rows, w - 1) arrays (a window's steps)."""
        first, second = self._buffers(rows, w)
        size = rows * (w - 1)
        return first.reshape(-1)[:size].reshape(rows, w - 1), second.reshape(-1)[:size].reshape(rows, w - 1)

    def _packets(self, win: np.ndarray, a: int, d: int, span: np.ndarray) -> np.ndarray:
        """The packet size after each row's `_find_packet` (win: (rows, w) windows, row r from
        index a + r * d; `span`: the stamps they are views of)."""
        found = np.full(win.shape[0], self.packet)
        sizes = np.arange(self.packet + 1, MAX_PACKET + 1)
        if win.shape[1] < 64 or not sizes.size:
            return found
        limit = _IRREGULAR_STEP * self.p
        spread = np.diff(span)
        if float(spread.max() - spread.min()) <= limit / 2:
            # No step of any row is further than `limit` from its row's median step (which lies
            # among them): no irregular step, no packet. Evenly stamped streams end here.
            return found
        rows, w = win.shape
        steps, ordered = self._steps_buffers(rows, w)
        np.subtract(win[:, 1:], win[:, :-1], out=steps)  # np.diff(win, axis=1)
        np.copyto(ordered, steps)
        step_med = _median_rows(ordered)
        irregular = np.abs(np.subtract(steps, step_med[:, None], out=steps), out=steps) > limit
        counts, possible = _packets_possible_rows(irregular, int(sizes[0]))
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        for r in np.flatnonzero((counts >= 16) & (possible | (counts > 1024))).tolist():
            where = np.flatnonzero(irregular[r])[-1024:] + (a + r * d)
            if counts[r] > 1024 and not _packets_possible(where, int(sizes[0])):
                continue
            # The largest m with PACKET_SHARE of them on one phase (`_find_packet` tries m downwards).
            phase = (where[None, :] % sizes[:, None]) + starts[:, None]
            on_phase = np.bincount(phase.ravel(), minlength=int(sizes.sum()))
            ok = np.maximum.reduceat(on_phase, starts) >= PACKET_SHARE * where.size
            if ok.any():
                found[r] = int(sizes[ok].max())
        return np.maximum.accumulate(found)

    def _block(self, final: bool) -> bool:
        p = self.p
        d = self._level_n(p)
        pos, n = self.pos, self.n
        if not final and n < pos + 3 * d + 1:
            return False
        end = min(n, pos + d)
        at, slope, med, jitter = self._line(pos)
        gap, bad = self._thresholds(slope, jitter)
        hi = min(n, pos + 3 * d + 1)
        a0 = max(self._seg().start, pos - d, self.base)
        e_all = self.t(a0, hi) - (at + slope * np.arange(a0 - pos, hi - pos)) - med
        e = e_all[pos - a0 :]
        k = None
        if np.any(np.abs(e[: min(hi - pos, 2 * d)]) > gap / 2):
            k, delta = self._shift(e_all, pos - a0, pos, end, d, gap)
        stop = end if k is None else k
        # Bad stamps: off the block's own level (the line may lag a wandering clock) by over `bad`.
        level = float(np.median(e[: stop - pos])) if stop - pos >= MAX_RUN + 1 else 0.0
        off = np.flatnonzero(np.abs(e[: stop - pos] - level) > bad)
        if off.size:
            self._good[pos - self.base + off] = False
            self.repaired.extend((pos + off).tolist())
        self.pos = stop
        if k is None:
            return True
        if gap < delta <= IMPLAUSIBLE_JUMP_S:
            self._break(k, "gap", slope)
        else:
            self.pending = (k, delta, at + slope * (k - pos), slope, med, gap)
        return True

    def _shift(
        self, e_all: np.ndarray, lead: int, pos: int, end: int, d: int, gap: float
    ) -> tuple[int | None, float]:
        """The first lasting level shift beyond `gap` starting in [pos, end): (index, size).

        e_all: residuals from pos - lead on. The shift must be a step: the level just after it
        differs from the level just before it by more than `gap` too (a clock whose rate wanders
        drifts off the line gradually, which is no break).
        """
        e = e_all[lead:]
        n_e = e.size
        idx = np.arange(end - pos)
        lo = idx
        hi = np.minimum(idx + d, n_e)
        ok = hi - lo >= MAX_RUN + 1
        if not ok.any():
            return None, 0.0
        from numpy.lib.stride_tricks import sliding_window_view

        if n_e >= d:
            win = sliding_window_view(e, d)[: end - pos]
            levels = np.median(win, axis=1)
            if levels.size < end - pos:  # truncated windows at a stream's end
                extra = [np.median(e[i:]) for i in range(levels.size, end - pos)]
                levels = np.concatenate((levels, extra))
        else:
            levels = np.array([np.median(e[i:]) for i in range(end - pos)])
        cand = np.flatnonzero((np.abs(levels) > gap) & ok)
        if not cand.size:
            return None, 0.0
        c = int(cand[0])
        c2 = min(c + d // 2 + 1, max(c, n_e - (MAX_RUN + 1)))
        delta = float(np.median(e[c2 : c2 + d]))
        if abs(delta) <= gap:
            return None, 0.0
        stop = min(n_e, c + d + d // 2 + 1)
        seg = e[c:stop]
        before = np.concatenate(([0.0], np.cumsum(np.abs(seg))))
        after = np.concatenate((np.cumsum(np.abs(seg - delta)[::-1])[::-1], [0.0]))
        ks = np.arange(0, min(d // 2 + 2, seg.size) + 1)
        k = c + int(ks[np.argmin(before[ks] + after[ks])])
        if self.n - (pos + k) <= MAX_RUN:  # the last few samples: bad stamps, not a lasting jump
            return None, 0.0
        ahead = e[k : k + d]
        behind = e_all[max(0, lead + k - d) : lead + k]
        if behind.size >= MAX_RUN + 1:
            step = float(np.median(ahead)) - float(np.median(behind))
            if abs(step) <= gap or step * delta < 0:
                return None, 0.0
        return pos + k, delta

    def _excursion(self, final: bool) -> bool:
        """A backward (or implausible) jump at k: bad stamps if they come back, else a break."""
        assert self.pending is not None
        k, delta, at_k, slope, med, gap = self.pending
        d = self._level_n(slope)
        reach = self._reach(slope)
        need = k + reach + d
        if not final and self.n < need:
            return False
        hi = min(self.n, need)
        e = self.t(k, hi) - (at_k + slope * np.arange(hi - k)) - med
        back = None
        for j in range(1, min(reach, e.size - 1) + 1):
            w = e[j : j + d]
            if w.size < min(d, MAX_RUN + 1):
                break
            if abs(float(np.median(w))) <= gap / 2:
                back = j
                break
        self.pending = None
        if back is None:
            self._break(k, "reset" if delta < 0 else "gap", slope)
            return True
        stop = min(e.size, back + d)
        seg = e[:stop]
        inside = np.concatenate(([0.0], np.cumsum(np.abs(seg - delta))))
        outside = np.concatenate((np.cumsum(np.abs(seg)[::-1])[::-1], [0.0]))
        rs = np.arange(max(1, back - 1), stop + 1)
        r = int(rs[np.argmin(inside[rs] + outside[rs])])
        self._good[k - self.base : k + r - self.base] = False
        self.repaired.extend(range(k, k + r))
        self.pos = k + r
        return True

    def _break(self, k: int, kind: str, slope: float) -> None:
        self.segments[-1].slope = slope
        self.segments.append(_Segment(k, kind))
        (self.gaps if kind == "gap" else self.resets).append(k)
        self.pos = k

    # -- fitted times --------------------------------------------------------------------------
    def take(self, final: bool) -> np.ndarray:
        """Times of the samples decided since the last call, in order."""
        out: list[np.ndarray] = []
        while self.out_pos < self.pos:
            i0 = self.out_pos
            si = max(i for i, s in enumerate(self.segments) if s.start <= i0)
            seg = self.segments[si]
            nxt = self.segments[si + 1].start if si + 1 < len(self.segments) else None
            d = self._level_n(self.p)
            m = 2 * d
            seg_end = nxt if nxt is not None else (self.pos if final and self.pos >= self.n else None)
            limit = self.pos if nxt is None else min(self.pos, nxt)
            reach_end = seg.start + m - 1
            if seg_end is not None:
                reach_end = min(reach_end, seg_end - 1)
            if reach_end >= self.pos:  # the start of the segment needs its first samples decided
                if not (final and self.pos >= self.n):
                    break
                reach_end = self.pos - 1
            i1 = min(limit, i0 + _CHUNK)
            times = self._fit(seg, i0, i1, reach_end)
            out.append(times)
            self.out_pos = i1
        return np.concatenate(out) if out else np.zeros(0)

    def _fit(self, seg: _Segment, i0: int, i1: int, reach_end: int) -> np.ndarray:
        s = seg.start
        p = self.p
        w = self._window_n(p)
        i = np.arange(i0, i1)
        lo = np.maximum(s, i - w + 1)
        hi = np.maximum(i, reach_end)
        a0, b0 = int(lo[0]), int(hi[-1]) + 1
        tt = self.t(a0, b0)
        g = self.good(a0, b0).astype(np.float64)
        x = np.arange(b0 - a0, dtype=np.float64)
        ref = tt[int(np.argmax(g))] if g.any() else tt[0]
        y = np.where(g > 0, tt - ref - x * p, 0.0)

        def csum(v: np.ndarray) -> np.ndarray:
            return np.concatenate(([0.0], np.cumsum(v)))

        c0, c1, c2, cy, cxy = csum(g), csum(g * x), csum(g * x * x), csum(y), csum(x * y)
        a, b = lo - a0, hi - a0 + 1
        s0, s1, s2 = c0[b] - c0[a], c1[b] - c1[a], c2[b] - c2[a]
        sy, sxy = cy[b] - cy[a], cxy[b] - cxy[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            xm = s1 / s0
            ym = sy / s0
            sxx = s2 - s1 * xm
            slope = np.where((s0 >= 2) & (sxx > 0), (sxy - s1 * ym) / sxx, 0.0)
        xi = (i - a0).astype(np.float64)
        fitted = np.where(s0 > 0, ref + ym + slope * (xi - xm) + xi * p, tt[i - a0])
        seg.slope = float(p + slope[-1])
        if seg.shift is None:
            k = self.segments.index(seg)
            before = self.segments[k - 1] if k > 0 else None
            if seg.kind == "reset" and self.last_out is not None and before is not None:
                # The first samples after a reset: one period after those before.
                seg.shift = float(self.last_out + (before.slope or p) - fitted[0])
            else:
                seg.shift = float(before.shift or 0.0) if before is not None else 0.0
        times = fitted + seg.shift
        last = self.last_out
        steps = np.diff(np.concatenate(([last], times))) if last is not None else np.diff(times)
        if np.any(steps <= 0):  # keep strictly increasing (never expected with a sane fit)
            prev = last if last is not None else -np.inf
            for j in range(times.size):
                if times[j] <= prev:
                    times[j] = prev + 0.5 * p
                prev = times[j]
        self.last_out = float(times[-1])
        return times
