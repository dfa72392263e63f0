"""Adaptive client rate (collector/rate.py): pure logic on a fake clock.

The behaviour against a real server (four collectors on one key, a lone collector at its
ceiling) is tested through the real CLI and sandbox in tests/test_delivery_scale.py.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from collector.rate import AdaptiveRateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def send(limiter: AdaptiveRateLimiter, clock: Clock, n: int) -> None:
    """n requests, each as soon as the bucket allows (the clock jumps to the due time)."""
    for _ in range(n):
        while (wait := limiter.try_acquire()) > 0:
            clock.t += wait
        limiter.on_success()


def test_a_lone_client_keeps_its_ceiling_and_is_paced_by_it():
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    start = clock.t
    send(limiter, clock, 205)
    assert limiter.rate_per_min == 100
    # 5 tokens of burst, then 100/min: 200 more requests take 120 s.
    assert clock.t - start == pytest.approx(120.0, rel=1e-6)


def test_throttle_lowers_the_rate_once_per_burst_of_refusals():
    clock = Clock()
    changes = []
    limiter = AdaptiveRateLimiter(100, clock=clock, on_change=lambda r, why: changes.append((r, why)))
    send(limiter, clock, 30)  # ~15 s at 100/min
    sent_at = clock.t
    assert limiter.on_throttle(sent_at) == pytest.approx(70.0)  # beta 0.7 of the achieved 100/min
    # Other requests that left before the decrease are refused too: they do not lower it again.
    assert limiter.on_throttle(sent_at) == pytest.approx(70.0)
    assert limiter.throttles == 1 and changes == [(pytest.approx(70.0), "throttled")]
    clock.t += 1.0
    before = limiter.rate_per_min  # grown a little since (CUBIC climbs fastest right after)
    assert 70.0 < before < 75.0
    assert limiter.on_throttle(clock.t) == pytest.approx(0.7 * before)  # a new refusal does lower it
    assert limiter.try_acquire() > 0  # the bucket was emptied: the restart is paced


def test_decrease_starts_from_the_measured_rate_when_the_client_sent_less():
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    for _ in range(20):  # a live run: one request every 3 s = 20/min, far under the allowed 100
        assert limiter.try_acquire() == 0.0
        limiter.on_success()
        clock.t += 3.0
    assert limiter.on_throttle(clock.t) == pytest.approx(0.7 * 20, rel=0.06)


def test_growth_follows_cubic_back_to_w_max_then_probes_up_to_the_ceiling():
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock, recovery_s=45.0, beta=0.5)
    limiter.on_throttle()
    assert limiter.rate_per_min == pytest.approx(50.0)
    clock.t += 22.5  # half-way to K: w_max * (1 - 0.5 * 0.5**3)
    assert limiter.rate_per_min == pytest.approx(100 * (1 - 0.5 * 0.125))
    limiter.on_throttle()  # now w_max = 93.75
    w_max = 100 * (1 - 0.5 * 0.125)
    clock.t += 45.0
    assert limiter.rate_per_min == pytest.approx(w_max)  # flat at the last level at t = K
    clock.t += 45.0
    assert limiter.rate_per_min == 100.0  # probing above it, capped at the ceiling


def test_rate_never_falls_below_the_floor():
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock, floor_per_min=2.0)
    for _ in range(30):
        clock.t += 0.1
        limiter.on_throttle(clock.t)
    assert limiter.rate_per_min == 2.0


def test_rate_changes_are_logged_at_debug_level(caplog):
    caplog.set_level(logging.DEBUG, logger="collector.rate")
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    limiter.on_throttle()
    clock.t += 60.0
    limiter.on_success()
    lines = [r for r in caplog.records if r.name == "collector.rate"]
    assert all(r.levelno == logging.DEBUG for r in lines)
    assert "100.0 -> 70.0/min (429" in lines[0].getMessage()
    assert "(requests accepted)" in lines[-1].getMessage()


def test_acquire_returns_false_when_cancelled():
    limiter = AdaptiveRateLimiter(1, burst=1)
    cancel = threading.Event()
    assert limiter.acquire(cancel)
    cancel.set()
    assert not limiter.acquire(cancel)


@pytest.mark.parametrize("kwargs", [{"ceiling_per_min": 0}, {"ceiling_per_min": 60, "beta": 1.0},
                                    {"ceiling_per_min": 60, "burst": 0}])  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(**kwargs)


def test_lab_profile_keeps_a_machine_at_4_requests_per_minute_or_less():
    from collector.rate import steady_load_per_min
    from collector.settings import builtin_profiles, load_profile

    lab = load_profile("lab")
    assert steady_load_per_min(lab.analysis.chunk_s, lab.screen.interval_s) <= 4.0
    assert lab.screen.keepalive_s >= lab.screen.interval_s  # keepalive never adds requests
    # The README's table gives each shipped profile's figure and the machines per key.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in builtin_profiles():
        p = load_profile(name)
        load = steady_load_per_min(p.analysis.chunk_s, p.screen.interval_s)
        cells = [f"`{name}`", f"{p.analysis.chunk_s:g} s", f"{p.screen.interval_s:g} s", f"{load:g}"]
        row = "| " + " | ".join([*cells, str(int(120 // load))]) + " |"
        assert row in readme, row


def test_collector_status_shows_the_rate_of_the_process_delivering(sandbox, tmp_path):
    import json

    from cli_runs import cli_env, collector

    from collector.config import ApiKey, ApiSettings
    from collector.spool import Spool
    from collector.uploader import Uploader

    root = tmp_path / "spool"
    with Spool(root) as spool:
        for i in range(20):
            spool.add(
                workspace_id=sandbox.workspace_id,
                evidence={"type": "tool", "mime_type": "text/plain", "chunk_index": i,
                          "metadata": {"capture_id": "c", "stream_id": "tool:t"}},
                data=b"x",
            )  # fmt: skip
        settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key))
        uploader = Uploader(spool, settings, rate_per_min=30, burst=1)  # 2 s per request
        uploader.start()
        try:
            deadline = time.monotonic() + 20
            while uploader.counters()["delivered"] < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert uploader.counters()["rate_per_min"] == 30.0
            proc = collector(["status", "--json", "--spool", str(root)], cli_env(sandbox))
            text = collector(["status", "--spool", str(root)], cli_env(sandbox)).stdout
        finally:
            uploader.stop(0)
        after = collector(["status", "--json", "--spool", str(root)], cli_env(sandbox))
    rate = json.loads(proc.stdout)["delivery_rate"]
    assert rate["rate_per_min"] == 30.0 and rate["ceiling_per_min"] == 30.0
    assert "Delivering now at 30 requests/min" in text
    assert json.loads(after.stdout)["delivery_rate"] is None  # nobody delivers any more
