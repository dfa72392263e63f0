"""LSL clock -> Unix time, so that everything downstream speaks Unix milliseconds.

LSL stamps samples with `pylsl.local_clock()`, a monotonic clock counted from an arbitrary origin
(boot on Linux). We map it to Unix time with an offset `unix - lsl` measured from paired readings
`local_clock(), time.time(), local_clock()`: the pair whose two LSL readings are closest together
brackets the wall reading tightest, so its midpoint is the best estimate (typically < 10 µs wide).
The offset is re-measured every `remeasure_s` so that NTP steps and slews of the wall clock are
followed.

Remote streams are first brought into the local LSL clock with the inlet's `time_correction()`
(done by the LSL source). Streams that carry Unix-epoch timestamps instead of LSL-clock
timestamps (muselsl without `--lsltime`) are detected once per stream and used as Unix times
directly, not shifted by the ~56 years between the two origins.

The clock functions are injectable so the mapping can be unit-tested without LSL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

ClockFn = Callable[[], float]

# A timestamp within a day of the wall clock, while the LSL clock is further than that from it,
# is a Unix-epoch timestamp.
UNIX_EPOCH_WINDOW_S = 86_400.0

# A step between consecutive samples longer than this many periods (and at least 20 ms) is a gap:
# at 256 Hz that is 20 ms, so one lost 12-sample BLE packet of a Muse (47 ms) is reported.
GAP_PERIODS = 4.0
GAP_MIN_S = 0.02

TIMESTAMP_KIND_LSL = "lsl"
TIMESTAMP_KIND_UNIX = "unix"


def _pylsl_local_clock() -> float:
    import pylsl  # imported here: collector/ must not load liblsl at import time

    return float(pylsl.local_clock())


@dataclass(frozen=True, slots=True)
class OffsetMeasurement:
    offset_s: float  # unix - lsl, seconds
    bracket_s: float  # LSL time between the two readings around the wall reading: the uncertainty
    lsl_time_s: float  # LSL time of the measurement


def measure_offset(lsl_clock: ClockFn, wall_clock: ClockFn, pairs: int = 16) -> OffsetMeasurement:
    """Offset unix - lsl from the tightest of `pairs` bracketed readings."""
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    best: OffsetMeasurement | None = None
    for _ in range(pairs):
        before = lsl_clock()
        wall = wall_clock()
        after = lsl_clock()
        mid = (before + after) / 2.0
        candidate = OffsetMeasurement(offset_s=wall - mid, bracket_s=after - before, lsl_time_s=mid)
        if best is None or candidate.bracket_s < best.bracket_s:
            best = candidate
    assert best is not None
    return best


class LslClock:
    """Maps LSL-clock seconds to Unix milliseconds; thread-safe, re-measures itself when stale."""

    def __init__(
        self,
        *,
        lsl_clock: ClockFn | None = None,
        wall_clock: ClockFn = time.time,
        remeasure_s: float = 10.0,
        pairs: int = 16,
    ) -> None:
        if remeasure_s <= 0:
            raise ValueError(f"remeasure_s must be positive, got {remeasure_s}")
        self._lsl_clock = lsl_clock or _pylsl_local_clock
        self._wall_clock = wall_clock
        self._remeasure_s = remeasure_s
        self._pairs = pairs
        self._lock = threading.Lock()
        self._last: OffsetMeasurement | None = None

    def lsl_now(self) -> float:
        return self._lsl_clock()

    def wall_now(self) -> float:
        return self._wall_clock()

    def remeasure(self) -> OffsetMeasurement:
        measurement = measure_offset(self._lsl_clock, self._wall_clock, self._pairs)
        with self._lock:
            previous = self._last
            self._last = measurement
        if previous is not None and abs(measurement.offset_s - previous.offset_s) > 0.05:
            log.info(
                "wall clock moved by %+.1f ms against the LSL clock (NTP adjustment); following it",
                (measurement.offset_s - previous.offset_s) * 1000.0,
            )
        return measurement

    @property
    def offset_s(self) -> float:
        """Current unix - lsl offset in seconds, re-measured when older than `remeasure_s`."""
        with self._lock:
            last = self._last
        if last is None or self._lsl_clock() - last.lsl_time_s >= self._remeasure_s:
            last = self.remeasure()
        return last.offset_s

    @property
    def last_measurement(self) -> OffsetMeasurement | None:
        with self._lock:
            return self._last

    def lsl_to_unix_ms(self, lsl_times_s: np.ndarray | float) -> np.ndarray:
        """LSL-clock seconds (local clock domain) -> Unix milliseconds, float64."""
        times = np.asarray(lsl_times_s, dtype=np.float64)
        return (times + self.offset_s) * 1000.0

    # The name used across the project.
    to_unix_ms = lsl_to_unix_ms


def looks_like_unix_epoch(timestamp_s: float, *, wall_now_s: float, lsl_now_s: float) -> bool:
    """True when `timestamp_s` is a Unix time rather than an LSL-clock time.

    Needs the LSL clock to be far from Unix time (true everywhere: it counts from boot or from an
    arbitrary origin), otherwise the two cannot be told apart and LSL is assumed.
    """
    near_wall = abs(timestamp_s - wall_now_s) < UNIX_EPOCH_WINDOW_S
    lsl_far_from_wall = abs(lsl_now_s - wall_now_s) > UNIX_EPOCH_WINDOW_S
    return near_wall and lsl_far_from_wall


class StreamTimeMapper:
    """Maps one stream's timestamps to Unix ms, deciding once whether they are LSL or Unix times.

    `correction_s` is the inlet's time correction (remote LSL clock -> local LSL clock); it only
    applies to LSL-clock timestamps, since a Unix timestamp is already on a shared clock.
    """

    def __init__(self, clock: LslClock, *, stream_label: str = "stream") -> None:
        self.clock = clock
        self.stream_label = stream_label
        self.kind: str | None = None

    def reset(self) -> None:
        """Forget the decision (the publisher was restarted and may stamp differently)."""
        self.kind = None

    def classify(self, timestamp_s: float) -> str:
        if looks_like_unix_epoch(
            timestamp_s, wall_now_s=self.clock.wall_now(), lsl_now_s=self.clock.lsl_now()
        ):
            log.warning(
                "%s carries Unix-epoch timestamps instead of LSL-clock ones (muselsl without "
                "--lsltime?); using them as Unix time as they are",
                self.stream_label,
            )
            return TIMESTAMP_KIND_UNIX
        return TIMESTAMP_KIND_LSL

    def to_unix_ms(self, timestamps_s: np.ndarray, correction_s: float = 0.0) -> np.ndarray:
        times = np.asarray(timestamps_s, dtype=np.float64)
        if times.size == 0:
            return times.astype(np.float64, copy=True)
        if self.kind is None:
            self.kind = self.classify(float(times[-1]))
        if self.kind == TIMESTAMP_KIND_UNIX:
            return times * 1000.0
        return self.clock.lsl_to_unix_ms(times + correction_s)


def gap_threshold_s(sfreq: float) -> float:
    """Seconds between consecutive samples beyond which the stream has a gap (inf if irregular)."""
    if sfreq <= 0:
        return float("inf")
    return max(GAP_PERIODS / sfreq, GAP_MIN_S)
