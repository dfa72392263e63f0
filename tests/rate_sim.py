"""Collectors sharing one key, on a fake clock: the uploader's pacing against the sandbox's limiter.

Each simulated collector does what `Uploader` does per request (collector/delivery/uploader.py): wait out
a 429 hold, take a token from its own AdaptiveRateLimiter, send; on a 429 lower the rate
(`on_throttle`), hold the queue for `throttle_hold_s` and empty the bucket. The server is the
sandbox's real SlidingWindowLimiter (120 per 60 s per key, refusals counted). Requests take no
time. Pure logic, seconds of CPU for minutes of simulated delivery; the real processes against
the real sandbox are in tests/e2e/test_delivery_scale.py.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from collector.delivery.rate import AdaptiveRateLimiter, throttle_hold_s
from collector.sandbox.server import SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class SimCollector:
    items: int
    start_s: float = 0.0
    ceiling: float = 100.0
    seed: int = 0
    accepted: list[float] = field(default_factory=list)  # times of 201s
    refused: list[float] = field(default_factory=list)  # times of 429s


def simulate(
    collectors: list[SimCollector], *, limit: int = 120, step_s: float = 0.01, retry_after: bool = True
) -> float:
    """Run until every collector delivered its items; returns the simulated seconds it took.

    `retry_after=False`: the server's 429 carries no Retry-After (the API reference promises none).
    """
    clock = FakeClock()
    t0 = clock.t
    server = SlidingWindowLimiter(limit, 60.0, clock=clock)
    state = []
    for c in collectors:
        rng = random.Random(c.seed)
        state.append({"c": c, "lim": None, "hold": 0.0, "n429": 0, "rng": rng})
    while any(len(s["c"].accepted) < s["c"].items for s in state):
        now = clock.t - t0
        for s in state:
            c = s["c"]
            if now < c.start_s or len(c.accepted) >= c.items or clock.t < s["hold"]:
                continue
            if s["lim"] is None:
                s["lim"] = AdaptiveRateLimiter(c.ceiling, clock=clock, rng=s["rng"])
            lim = s["lim"]
            if lim.try_acquire() > 0:
                continue
            wait = server.admit("key")
            if wait is None:
                c.accepted.append(now)
                s["n429"] = 0
                lim.on_success(clock.t)
            else:
                c.refused.append(now)
                s["n429"] += 1
                after = max(1, math.ceil(wait)) if retry_after else None
                lim.on_throttle(clock.t, retry_after_s=after)
                s["hold"] = clock.t + throttle_hold_s(
                    s["n429"], after, lim.rate_per_min, base_s=0.5, cap_s=60.0, rng=s["rng"]
                )
                lim.hold(s["hold"] - clock.t)
                lim.drain()
        clock.t += step_s
        if clock.t - t0 > 3600:
            raise AssertionError("the simulation did not finish within an hour")
    return clock.t - t0
