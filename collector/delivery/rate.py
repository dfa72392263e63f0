"""Client-side request rate that follows the server's throttling signal (adaptive token bucket).

The API allows 120 requests per minute per key, and a key is often shared: several lab machines,
or a collector next to another tool. A fixed client rate either wastes the key (too low) or keeps
colliding with the others (too high: each refused request still counts against the key). This
limiter does what the AWS SDKs' "adaptive" retry mode does (botocore `retries/adaptive.py`,
"ClientRateLimiter" in the AWS SDK developer guides): a token bucket whose fill rate

- drops multiplicatively when the server throttles (a 429): what the client held of the key's
  window when it was refused (its requests in the last 60 s, at most its allowed rate) becomes
  `w_max`, and the new rate is `beta * w_max`; the refusals of one burst count once, and the rate
  does not grow while the uploader holds the queue for `Retry-After` (`hold`);
- grows back on success along CUBIC's curve (RFC 8312, as botocore's `CubicCalculator` does):
  `rate(t) = w_max + C * (t - K)**3`, K = cbrt(w_max * (1 - beta) / C), t seconds since the hold
  ended. It climbs fast at first, flattens near `w_max` (where the key was full last time), then
  probes above it, up to the configured ceiling. The climb above `w_max` is the same for every
  client whatever its share, which is what makes shares even out. Our rates are a thousand times
  lower than an SDK's, so C is set from `recovery_s` (default 20 s: a client refused at its
  ceiling is back there after about that long, jittered per process by +-15 % so collectors
  refused together do not climb back in step).

Each client reacts to its own refusals only; multiplicative decrease with an increase that does
not depend on the current rate makes clients sharing a key converge to a fair share;
a lone client never sees a 429 and stays at its ceiling. Honouring `Retry-After` (holding the
queue) is the uploader's job; this module only paces and adapts the rate. `TokenBucket` is the
same bucket at a fixed rate.

Rates are in requests per minute; times come from `clock` (monotonic seconds).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger("collector.delivery.rate")

DEFAULT_BETA = 0.7  # share of the achieved rate kept after a 429 (botocore's value)
DEFAULT_RECOVERY_S = 20.0  # a client refused at its ceiling is back there after this long
DEFAULT_FLOOR_PER_MIN = 2.0  # never slower than one request every 30 s
MAX_BURST = 5  # a bucket larger than this could overrun a sliding per-minute window
DEFAULT_BURST = 5  # a fixed `TokenBucket`'s: burst + rate must stay under the server's per-minute window
JITTER = 0.15
MIN_W_MAX_SHARE = 0.1  # of the ceiling: a client refused on its first requests climbs back from there
_MEASURE_S = 60.0  # send rate measured over the last minute (the server's window)
_LOG_STEP = 0.05  # log an increase when the rate moved this much since the last line


class AdaptiveRateLimiter:
    """Token bucket shared by the uploader's workers, with a fill rate that adapts (see module doc).

    `acquire(cancel)` blocks until a request may be sent; call `on_success()` after each 2xx and
    `on_throttle(sent_at)` after each 429 (`sent_at`: the `clock()` time the refused request left,
    so several refusals of requests already in flight count as one decrease), then `hold(s)` with
    the seconds the queue now waits (no growth meanwhile). `on_change(rate, reason)` is called
    (outside the lock) after each decrease and each logged increase. `rng` draws this process's
    jitter on the growth time (tests pass a seeded one).

    Raises ValueError for a ceiling <= 0, a floor above the ceiling, or beta outside (0, 1).
    """

    def __init__(
        self,
        ceiling_per_min: float,
        *,
        burst: int | None = None,
        beta: float = DEFAULT_BETA,
        recovery_s: float = DEFAULT_RECOVERY_S,
        floor_per_min: float = DEFAULT_FLOOR_PER_MIN,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[float, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not ceiling_per_min > 0:
            raise ValueError(f"the rate ceiling must be a positive number; {ceiling_per_min!r} is invalid.")
        if not 0 < beta < 1:
            raise ValueError(f"beta must be between 0 and 1; {beta!r} is invalid.")
        if not recovery_s > 0:
            raise ValueError(f"recovery_s must be positive; {recovery_s!r} is invalid.")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be an integer >= 1; {burst!r} is invalid.")
        self.ceiling_per_min = float(ceiling_per_min)
        self.floor_per_min = min(float(floor_per_min), self.ceiling_per_min)
        self.beta = float(beta)
        self.recovery_s = float(recovery_s)
        # Per-process jitter on the growth time: collectors refused together do not climb back
        # in step (and collide in step again).
        recovery_s = self.recovery_s * (1.0 + (rng or random.Random()).uniform(-JITTER, JITTER))
        # CUBIC's scale constant, set so that a client refused at its ceiling is back there
        # after `recovery_s`; requests per minute per s**3.
        self._c = self.ceiling_per_min * (1.0 - self.beta) / recovery_s**3
        self._fixed_burst = burst
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._rate = self.ceiling_per_min
        self._w_max: float | None = None  # rate at the last throttle; None: never throttled
        self._decreased_at = -float("inf")
        self._logged_rate = self._rate
        self._tokens = float(self._burst())
        self._last = clock()
        self._sent: collections.deque[float] = collections.deque()
        self.throttles = 0  # 429s that lowered the rate

    # ---- what others read ------------------------------------------------------------------------

    @property
    def rate_per_min(self) -> float:
        """The current allowed rate, requests per minute."""
        with self._lock:
            self._grow(self._clock())
            return self._rate

    def measured_per_min(self) -> float:
        """Requests that took a token in the last minute (per minute; less over a shorter run)."""
        with self._lock:
            self._forget_old(self._clock())
            return float(len(self._sent))

    # ---- the bucket ------------------------------------------------------------------------------

    def _burst(self) -> int:
        if self._fixed_burst is not None:
            return self._fixed_burst
        return max(1, min(MAX_BURST, int(self._rate // 20)))

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst(), self._tokens + (now - self._last) * self._rate / 60.0)
        self._last = now

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is due (nothing taken)."""
        with self._lock:
            now = self._clock()
            self._grow(now)
            self._refill(now)
            if self._tokens >= 1.0 - 1e-9:  # tolerance: float refills can stop a hair short of 1
                self._tokens = max(0.0, self._tokens - 1.0)
                self._sent.append(now)
                self._forget_old(now)
                return 0.0
            return (1.0 - self._tokens) * 60.0 / self._rate

    def acquire(self, cancel: threading.Event) -> bool:
        """Block until a token is taken (True) or `cancel` is set (False)."""
        while True:
            wait_s = self.try_acquire()
            if wait_s == 0.0:
                return True
            # Re-check at least every second: the rate may have grown meanwhile.
            if cancel.wait(min(wait_s, 1.0)):
                return False

    def drain(self) -> None:
        """Start again from an empty bucket (after a 429), so the restart is paced."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, 0.0)

    # ---- adapting --------------------------------------------------------------------------------

    def on_throttle(self, sent_at: float | None = None) -> float:
        """The server refused a request (429): lower the rate; returns the new rate per minute.

        `sent_at`: the `clock()` time the refused request left; a refusal of a request sent before
        the last decrease took effect (the end of its hold, see `hold`) is part of the same burst
        and counts once.
        """
        with self._lock:
            now = self._clock()
            self._grow(now)
            if sent_at is not None and sent_at <= self._decreased_at:
                return self._rate  # sent before the last decrease: that one already counted it
            self._forget_old(now)
            # What this client holds of the server's window: its requests in the last minute
            # (a count, not a rate extrapolated from a few seconds: the key's limit is a count per
            # 60 s, and clients that each keep what they had converge to shares of it). Measured
            # against the rate: fewer 429s (2.4-3.9 % vs 4.3-5.4 % in the mixed 4-collector test),
            # but a collector that started a few seconds first keeps a lead for a while.
            achieved = min(self._rate, max(float(len(self._sent)), MIN_W_MAX_SHARE * self.ceiling_per_min))
            old = self._rate
            self._w_max = max(self.floor_per_min, achieved)
            self._rate = max(self.floor_per_min, self.beta * self._w_max)
            self._decreased_at = now
            self._refill(now)
            self._tokens = min(self._tokens, 0.0)
            self._logged_rate = self._rate
            self.throttles += 1
            new = self._rate
        log.debug("request rate %.1f -> %.1f/min (429 from the server)", old, new)
        self._notify(new, "throttled")
        return new

    def hold(self, seconds: float) -> None:
        """The uploader holds the queue `seconds` after a 429 (Retry-After): the rate does not grow
        while nothing is sent, and refusals of requests sent before the hold ends count once."""
        with self._lock:
            self._decreased_at = max(self._decreased_at, self._clock() + max(0.0, seconds))

    def on_success(self) -> None:
        """A request was accepted: the rate keeps growing along its curve (logged in steps)."""
        with self._lock:
            self._grow(self._clock())
            rate = self._rate
            moved = abs(rate - self._logged_rate) >= _LOG_STEP * self._logged_rate
            if not (moved or (rate == self.ceiling_per_min and self._logged_rate != rate)):
                return
            old, self._logged_rate = self._logged_rate, rate
        log.debug("request rate %.1f -> %.1f/min (requests accepted)", old, rate)
        self._notify(rate, "recovering")

    def _grow(self, now: float) -> None:
        """CUBIC growth since the last decrease (lock held): `w_max + C * (t - K)**3`.

        K = cbrt(w_max * (1 - beta) / C) as in RFC 8312 and botocore's CubicCalculator: the
        climb above the last refusal's level, `C * (t - K)**3`, is the same for every client,
        whatever its share. With a fixed K the growth would scale with w_max and clients would
        keep the ratio of their rates after each common 429 instead of converging to fair shares.
        """
        if self._w_max is None:
            return
        t = max(0.0, now - self._decreased_at)
        k = (self._w_max * (1.0 - self.beta) / self._c) ** (1.0 / 3.0)
        target = self._w_max + self._c * (t - k) ** 3
        new = min(self.ceiling_per_min, max(self.floor_per_min, target))
        if new != self._rate:
            self._refill(now)  # tokens earned so far at the old rate
            self._rate = new

    def _forget_old(self, now: float) -> None:
        while self._sent and now - self._sent[0] > _MEASURE_S:
            self._sent.popleft()

    def _notify(self, rate: float, reason: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(rate, reason)
        except Exception:  # a broken hook must not stop delivery
            log.debug("rate on_change hook failed", exc_info=True)


class TokenBucket:
    """A fixed-rate token bucket shared by every worker: `rate_per_min` steady, `burst` at most.

    The uploader's alternative to `AdaptiveRateLimiter` (passed as its `limiter`, e.g. in tests):
    the same `acquire`/`try_acquire`/`drain`, and no adapting.
    """

    def __init__(
        self, rate_per_min: float, burst: int = DEFAULT_BURST, clock: Callable[[], float] = time.monotonic
    ):
        if rate_per_min <= 0:
            raise ValueError(f"rate_per_min must be a positive number; {rate_per_min!r} is invalid.")
        if burst < 1:
            raise ValueError(f"burst must be an integer >= 1; {burst!r} is invalid.")
        self.rate_per_min = float(rate_per_min)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_min / 60.0)
        self._last = now

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is due (nothing taken)."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) * 60.0 / self.rate_per_min

    def acquire(self, cancel: threading.Event) -> bool:
        """Block until a token is taken (True) or `cancel` is set (False)."""
        while True:
            wait_s = self.try_acquire()
            if wait_s == 0.0:
                return True
            if cancel.wait(wait_s):
                return False

    def drain(self) -> None:
        """After a 429: start again from an empty bucket, so the restart is paced."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """AWS 'full jitter' backoff: uniform in [0, min(cap, base * 2**attempt)] seconds."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))


def throttle_hold_s(
    consecutive_429: int,
    retry_after_s: float | None,
    rate_per_min: float,
    *,
    base_s: float,
    cap_s: float,
    rng: random.Random,
) -> float:
    """Seconds the whole queue holds after a 429: backoff or `Retry-After`, then a random share.

    Never less than one limiter interval (the bucket is empty from here); the extra uniform share
    of an interval keeps collectors refused together from coming back together (each refusal also
    counts against the key).
    """
    wait_s = full_jitter(consecutive_429, base_s, cap_s, rng)
    if retry_after_s is not None:
        wait_s = max(wait_s, retry_after_s)
    interval_s = 60.0 / rate_per_min
    return max(wait_s, interval_s) + rng.uniform(0.0, interval_s)


def steady_load_per_min(chunk_s: float, screen_interval_s: float | None, monitors: int = 1) -> float:
    """Requests per minute a live run sends at most once any backlog is gone.

    One EEG chunk every `chunk_s` seconds, plus one screenshot per monitor every `screen_interval_s`
    (None: no screen). Near-identical frames are skipped, so the screen part is a ceiling; the
    per-capture session summary (one request at the end) is left out. Divide the key's 120/min by
    it for the number of machines one key serves.
    """
    eeg = 60.0 / chunk_s
    screen = 0.0 if screen_interval_s is None else monitors * 60.0 / screen_interval_s
    return eeg + screen
