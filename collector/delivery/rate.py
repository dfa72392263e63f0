"""Client-side request rate that follows the server's throttling signal: a share of the key's window.

The API allows 120 requests per minute per key, and a key is often shared: several lab machines,
or a collector next to another tool. A fixed client rate either wastes the key (too low) or keeps
colliding with the others (too high: each refused request still counts against the key). This
limiter starts from what the AWS SDKs' "adaptive" retry mode does (botocore `retries/adaptive.py`,
"ClientRateLimiter" in the AWS SDK developer guides), with what it adapts being the client's
share of the key's sliding window rather than a steady rate:

- a token bucket at the configured ceiling (default 100/min, burst 5) paces every request: a lone
  collector that is never refused sends at that pace, nothing else holds it back;
- on a throttle (a 429) the client's share drops multiplicatively: what it held of the key's
  window when it was refused (its requests in the last `window_s`, at most its allowed share)
  becomes `w_max`, and its share is now `beta * w_max` requests per window; the refusals of one
  burst count once. From then on the client keeps its own sliding window: no request while its
  requests of the last `window_s` (refused ones included, as the server counts them; each aged
  from when it left plus the slowest recent reply, so never before the server's copy) number as
  many as its share. So after a refusal it waits out the window instead of probing into it (each
  refused probe would keep the key shut longer when the server counts refusals), and when the
  window frees it sends again as fast as its own requests age out, which is as fast as the
  server's window frees for it. Sharing collectors whose shares add up to the key's limit never
  overrun it, however bursty each one is;
- the share grows back along CUBIC's curve (RFC 8312, as botocore's `CubicCalculator` does):
  `share(t) = w_max + C * (t - K)**3`, K = cbrt(w_max * (1 - beta) / C), t seconds since the
  client's window freed after the refusal (and after any `Retry-After` hold: `hold`), not since
  the refusal: while the key is shut nothing was learnt. It climbs fast at first, flattens near
  `w_max` (where the key was full last time), then probes above it, up to the ceiling. The climb
  above `w_max` is the same for every client whatever its share, which is what makes shares even
  out; a client refused below its last `w_max` (losing ground to a newcomer) lets go of more:
  `w_max` is then (1 + beta) / 2 of what it held (RFC 8312's "fast convergence"), so a collector
  that started first does not keep its lead for long. C is set from `recovery_s` (default 20 s:
  a client refused at its ceiling is back there after about that long once its window freed,
  jittered per process by +-15 % so collectors refused together do not climb back in step).

Each client reacts to its own refusals and its own requests only (collectors on several machines
share nothing but the key); multiplicative decrease with an increase that does not depend on the
current share makes clients sharing a key converge to fair shares; a lone client never sees a 429
and stays at its ceiling. The window length is the API's ("per minute": 60 s); a server that
answers `Retry-After` is honoured on top (the uploader holds the queue; this module only paces
and adapts). `TokenBucket` is the same bucket at a fixed rate, with no window.

Rates and shares are in requests per minute (per `window_s`); times come from `clock` (monotonic
seconds).
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
DEFAULT_WINDOW_S = 60.0  # the key's sliding window: the API allows 120 requests "per minute"
_LOG_STEP = 0.05  # log an increase when the rate moved this much since the last line


class AdaptiveRateLimiter:
    """Token bucket shared by the uploader's workers, with the client's share of the key's window
    adapting to the server's refusals (see module doc).

    `acquire(cancel)` blocks until a request may be sent; call `on_success(sent_at)` after each 2xx
    and `on_throttle(sent_at)` after each 429 (`sent_at`: the `clock()` time the request left; a
    refusal of a request sent before the last decrease took effect counts once, and the reply's
    delay keeps the client's window from ageing a request before the server's copy), then `hold(s)`
    with the seconds the queue now waits (no growth meanwhile). `on_change(rate, reason)` is called
    (outside the lock) after each decrease and each logged increase. `rng` draws this process's
    jitter on the growth time (tests pass a seeded one).

    Raises ValueError for a ceiling <= 0, a floor above the ceiling, beta outside (0, 1), or a
    window <= 0.
    """

    def __init__(
        self,
        ceiling_per_min: float,
        *,
        burst: int | None = None,
        beta: float = DEFAULT_BETA,
        recovery_s: float = DEFAULT_RECOVERY_S,
        floor_per_min: float = DEFAULT_FLOOR_PER_MIN,
        window_s: float = DEFAULT_WINDOW_S,
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
        if not window_s > 0:
            raise ValueError(f"window_s must be positive; {window_s!r} is invalid.")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be an integer >= 1; {burst!r} is invalid.")
        self.ceiling_per_min = float(ceiling_per_min)
        self.floor_per_min = min(float(floor_per_min), self.ceiling_per_min)
        self.beta = float(beta)
        self.recovery_s = float(recovery_s)
        self.window_s = float(window_s)
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
        self._rate = self.ceiling_per_min  # the share of the window, requests per minute
        self._w_max: float | None = None  # share at the last throttle; None: never throttled
        self._decreased_at = -float("inf")  # requests sent before this are the last decrease's burst
        self._grow_from = -float("inf")  # the share grows from here (the window had room, holds ended)
        self._keep_window = False  # the last 429 had no Retry-After: keep the own window to the share
        self._logged_rate = self._rate
        self._tokens = float(self._burst())
        self._last = clock()
        self._sent: collections.deque[float] = collections.deque()  # when each request left
        self._delays: collections.deque[tuple[float, float]] = collections.deque()  # (replied, delay s)
        self.throttles = 0  # 429s that lowered the rate

    # ---- what others read ------------------------------------------------------------------------

    @property
    def rate_per_min(self) -> float:
        """The current allowed rate (the share of the key's window), requests per minute."""
        with self._lock:
            self._grow(self._clock())
            return self._rate

    def measured_per_min(self) -> float:
        """Requests that took a token in the last minute (per minute; less over a shorter run)."""
        with self._lock:
            self._forget_old(self._clock())
            return float(len(self._sent))

    # ---- the bucket and the window ---------------------------------------------------------------

    def _pace_per_min(self) -> float:
        """The bucket's fill rate: the ceiling while the share is kept by the window (or never
        throttled), else the share itself (after a 429 with Retry-After)."""
        return self.ceiling_per_min if self._keep_window else self._rate

    def _burst(self) -> int:
        if self._fixed_burst is not None:
            return self._fixed_burst
        return max(1, min(MAX_BURST, int(self._pace_per_min() // 20)))

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst(), self._tokens + (now - self._last) * self._pace_per_min() / 60.0)
        self._last = now

    def _reply_delay_s(self, now: float) -> float:
        """The slowest reply of the last window: a request counts at the server from some moment
        between leaving and its reply, so it is aged from when it left plus this."""
        while self._delays and now - self._delays[0][0] > self.window_s:
            self._delays.popleft()
        return max((d for _, d in self._delays), default=0.0)

    def _window_wait(self, now: float) -> float:
        """Seconds until this client's own window has room for one more request under its share
        (0.0: room now). Only after a 429 without Retry-After: else the bucket alone paces."""
        if not self._keep_window:
            return 0.0
        allowed = max(1, int(self._rate + 1e-9))
        if len(self._sent) < allowed:
            return 0.0
        # The oldest requests must age out until allowed - 1 are left.
        oldest = self._sent[len(self._sent) - allowed]
        return max(0.0, oldest + self.window_s + self._reply_delay_s(now) - now)

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is due (nothing taken)."""
        with self._lock:
            now = self._clock()
            self._grow(now)
            self._refill(now)
            self._forget_old(now)
            window_wait = self._window_wait(now)
            if window_wait > 0.0:
                return window_wait
            if self._tokens >= 1.0 - 1e-9:  # tolerance: float refills can stop a hair short of 1
                self._tokens = max(0.0, self._tokens - 1.0)
                self._sent.append(now)
                return 0.0
            return (1.0 - self._tokens) * 60.0 / self._pace_per_min()

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

    def _replied(self, now: float, sent_at: float | None) -> None:
        if sent_at is not None and now >= sent_at:
            self._delays.append((now, now - sent_at))

    def on_throttle(self, sent_at: float | None = None, *, retry_after_s: float | None = None) -> float:
        """The server refused a request (429): lower the share; returns the new rate per minute.

        `sent_at`: the `clock()` time the refused request left; a refusal of a request sent before
        the last decrease took effect (its hold ended, see `hold`) is part of the same burst and
        counts once. `retry_after_s`: the 429's Retry-After. Without one (the API reference
        promises none) the client infers when the key has room from its own window and keeps
        its window to the share; with one it paces at the share as a steady rate after the hold
        (the AWS SDKs' mode): the server says when it has room, and a Retry-After on a 429 that
        has nothing to do with the key's window (a proxy's, say) does not lock it out for one.
        """
        with self._lock:
            now = self._clock()
            self._replied(now, sent_at)
            self._grow(now)
            if sent_at is not None and sent_at <= self._decreased_at:
                return self._rate  # sent before the last decrease: that one already counted it
            self._forget_old(now)
            # What this client holds of the server's window: its requests in the last minute
            # (a count, not a rate extrapolated from a few seconds: the key's limit is a count per
            # 60 s, and clients that each keep what they had converge to shares of it).
            achieved = min(self._rate, max(float(len(self._sent)), MIN_W_MAX_SHARE * self.ceiling_per_min))
            old = self._rate
            if retry_after_s is None and self._w_max is not None and achieved < self._w_max:
                # RFC 8312's fast convergence: a client refused below its last level is losing
                # ground to newcomers; it lets go of more, so shares even out within fewer windows
                # (each window-long lock-out is a round: without it a collector that started
                # first kept its lead for several).
                achieved *= (1.0 + self.beta) / 2.0
            self._w_max = max(self.floor_per_min, achieved)
            self._rate = max(self.floor_per_min, self.beta * self._w_max)
            self._keep_window = retry_after_s is None
            self._decreased_at = now
            # Nothing is learnt while this client's window is shut: its share grows from when
            # the window has room again (its oldest requests aged out), not from the refusal.
            self._grow_from = now + self._window_wait(now)
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
            until = self._clock() + max(0.0, seconds)
            self._decreased_at = max(self._decreased_at, until)
            self._grow_from = max(self._grow_from, until)

    def on_success(self, sent_at: float | None = None) -> None:
        """A request (that left at `sent_at`) was accepted: the share keeps growing along its curve
        (logged in steps)."""
        with self._lock:
            now = self._clock()
            self._replied(now, sent_at)
            self._grow(now)
            rate = self._rate
            moved = abs(rate - self._logged_rate) >= _LOG_STEP * self._logged_rate
            if not (moved or (rate == self.ceiling_per_min and self._logged_rate != rate)):
                return
            old, self._logged_rate = self._logged_rate, rate
        log.debug("request rate %.1f -> %.1f/min (requests accepted)", old, rate)
        self._notify(rate, "recovering")

    def _grow(self, now: float) -> None:
        """CUBIC growth since the last decrease took effect (lock held): `w_max + C * (t - K)**3`.

        K = cbrt(w_max * (1 - beta) / C) as in RFC 8312 and botocore's CubicCalculator: the
        climb above the last refusal's level, `C * (t - K)**3`, is the same for every client,
        whatever its share. With a fixed K the growth would scale with w_max and clients would
        keep the ratio of their rates after each common 429 instead of converging to fair shares.
        """
        if self._w_max is None:
            return
        t = max(0.0, now - self._grow_from)
        k = (self._w_max * (1.0 - self.beta) / self._c) ** (1.0 / 3.0)
        target = self._w_max + self._c * (t - k) ** 3
        new = min(self.ceiling_per_min, max(self.floor_per_min, target))
        if new != self._rate:
            self._refill(now)  # tokens earned so far at the old pace
            self._rate = new

    def _forget_old(self, now: float) -> None:
        # Kept a reply's delay past the window: the window check ages each request that much later.
        horizon = self.window_s + self._reply_delay_s(now)
        while self._sent and now - self._sent[0] > horizon:
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
