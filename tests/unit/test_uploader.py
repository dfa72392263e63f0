"""Uploader logic against an in-process fake client: order, retries, pauses, parking, stop, limiter."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest

from collector.api.settings import ApiKey, ApiSettings
from collector.delivery.rate import TokenBucket, full_jitter
from collector.delivery.spool import Spool
from collector.delivery.uploader import Uploader
from collector.errors import (
    AuthError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    SpoolError,
    ValidationApiError,
)

WS = "0b7e2c1a-8f3d-4c5e-9a6b-1d2e3f4a5b6c"
WS2 = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
BLOCK = "1c8f3d2b-9a4e-4d6f-8b7c-2e3f4a5b6c7d"
SECRET = "sk_test_uploader_secret_0123456789"
SETTINGS = ApiSettings(base_url="http://fake.invalid", api_key=ApiKey(SECRET))


def eeg(i: int, stream: str = "eeg:muse", capture: str = "cap-1", block_id: str | None = None) -> dict:
    ev = {
        "type": "eeg",
        "mime_type": "application/json",
        "chunk_index": i,
        "metadata": {"capture_id": capture, "stream_id": stream},
        "band_powers": {"alpha": 0.5},
    }
    if block_id:
        ev["block_id"] = block_id
    return ev


@dataclass
class Created:
    id: str


class FakeClient:
    """Records every call; `script(call_no, workspace_id, evidence)` may raise or delay."""

    def __init__(self, script=None, delay_s: float = 0.0) -> None:
        self.script = script or (lambda n, ws, ev: None)
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str, str, int]] = []  # (t, workspace, stream, chunk_index)
        self.stored: list[tuple[str, str, int, bytes]] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight_per_stream = 0
        self.max_streams_in_flight = 0  # streams with a request in flight at the same moment
        self.closed = False

    def upload_evidence(self, workspace_id, evidence):
        stream = evidence.metadata["stream_id"]
        with self.lock:
            n = len(self.calls)
            self.calls.append((time.monotonic(), workspace_id, stream, evidence.chunk_index))
            self.in_flight[stream] += 1
            self.max_in_flight_per_stream = max(self.max_in_flight_per_stream, self.in_flight[stream])
            busy = sum(1 for n in self.in_flight.values() if n)
            self.max_streams_in_flight = max(self.max_streams_in_flight, busy)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.script(n, workspace_id, evidence)
            with self.lock:
                self.stored.append(
                    (workspace_id, stream, evidence.chunk_index, base64.b64decode(evidence.data))
                )
                return Created(id=f"ev-{len(self.stored)}")
        finally:
            with self.lock:
                self.in_flight[stream] -= 1

    def close(self):
        self.closed = True


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def make(spool, client, **kw):
    events: list[tuple[str, dict]] = []
    kw.setdefault("rate_per_min", 60_000)
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", 0.05)
    up = Uploader(
        spool, SETTINGS, client_factory=lambda s: client, on_event=lambda e, **f: events.append((e, f)), **kw
    )
    return up, events


def test_delivers_everything_in_order_one_in_flight_per_stream(spool):
    for i in range(15):
        for stream in ("eeg:a", "eeg:b", "screen:1"):
            spool.add(workspace_id=WS, evidence=eeg(i, stream), data=f"{stream}/{i}".encode())
    client = FakeClient(delay_s=0.005)
    up, _ = make(spool, client, workers=4)
    up.start()
    assert up.wait_idle(20)
    assert up.stop(5) == 0
    assert len(client.stored) == 45
    assert client.max_in_flight_per_stream == 1
    for stream in ("eeg:a", "eeg:b", "screen:1"):
        order = [c for _, s, c, _ in client.stored if s == stream]
        assert order == list(range(15)), stream
    assert all(data == f"{s}/{c}".encode() for _, s, c, data in client.stored)
    assert up.counters()["delivered"] == 45 and spool.stored_bytes() == 0
    assert client.closed


def test_streams_run_in_parallel(spool):
    for i in range(5):
        for stream in ("eeg:a", "screen:1"):
            spool.add(workspace_id=WS, evidence=eeg(i, stream), data=b"x")
    client = FakeClient(delay_s=0.1)
    up, _ = make(spool, client, workers=2)
    up.start()
    assert up.wait_idle(20)
    up.stop(1)
    # Measured at the client, not with a wall-clock bound: both streams had a request in flight at once.
    assert len(client.stored) == 10 and client.max_streams_in_flight == 2
    assert client.max_in_flight_per_stream == 1


def test_transient_errors_are_retried_until_delivered(spool):
    for i in range(6):
        spool.add(workspace_id=WS, evidence=eeg(i), data=b"x")

    def script(n, ws, ev):
        if n % 3 == 0:
            raise ServerError("HTTP 503", code="service_unavailable", status=503)
        if n % 3 == 1:
            raise NetworkError("connection dropped")

    client = FakeClient(script)
    up, events = make(spool, client, verbose_events=True)
    up.start()
    assert up.wait_idle(20)
    assert up.stop(1) == 0
    assert [c for _, _, c, _ in client.stored] == list(range(6))
    assert up.counters()["retries"] == 12
    assert sum(1 for e, _ in events if e == "retrying") == 12
    assert spool._conn.execute("SELECT SUM(attempts) FROM items").fetchone()[0] == 12


def test_retry_after_is_honoured_for_5xx(spool):
    spool.add(workspace_id=WS, evidence=eeg(0), data=b"x")

    def script(n, ws, ev):
        if n == 0:
            raise ServerError("HTTP 503", code="service_unavailable", status=503, retry_after_s=0.4)

    client = FakeClient(script)
    up, _ = make(spool, client)
    up.start()
    assert up.wait_idle(10)
    up.stop(1)
    (t0, *_), (t1, *_) = client.calls
    assert t1 - t0 >= 0.38


def test_429_holds_the_whole_queue(spool):
    for i in range(4):
        for stream in ("eeg:a", "eeg:b"):
            spool.add(workspace_id=WS, evidence=eeg(i, stream), data=b"x")

    def script(n, ws, ev):
        if n == 2:
            raise RateLimitedError("slow down", code="rate_limit_exceeded", status=429, retry_after_s=0.5)

    client = FakeClient(script, delay_s=0.01)
    up, events = make(spool, client, workers=2)
    up.start()
    assert up.wait_idle(20)
    up.stop(1)
    assert len(client.stored) == 8 and up.counters()["rate_limited"] == 1
    t429 = client.calls[2][0]
    after = [t for t, *_ in client.calls[3:]]
    # Any request the other stream had already on the wire started before the 429; nothing new
    # started inside the hold.
    assert not [t for t in after if t429 + 0.01 < t < t429 + 0.45]
    assert [e for e, _ in events].count("rate_limited") == 1


def test_validation_error_fails_the_item_and_the_rest_flows(spool):
    for i in range(3):
        spool.add(workspace_id=WS, evidence=eeg(i), data=b"x")

    def script(n, ws, ev):
        if ev.chunk_index == 1:
            raise ValidationApiError(
                "The API rejected the request (validation_error: band_powers.alpha: must be a number).",
                code="validation_error",
                status=400,
                server_message="band_powers.alpha: must be a number",
            )

    client = FakeClient(script)
    up, events = make(spool, client)
    up.start()
    assert up.wait_idle(10)
    assert up.stop(1) == 0
    assert [c for *_, c, _ in client.stored] == [0, 2]
    assert spool.failed_count() == 1
    [stats] = spool.stats()
    assert "band_powers.alpha: must be a number" in stats.last_error
    assert [e for e, _ in events] == ["failed"]
    assert len(client.calls) == 3  # not retried


def test_auth_error_pauses_once_and_keeps_everything(spool, caplog):
    caplog.set_level(logging.DEBUG)
    for i in range(5):
        for stream in ("eeg:a", "eeg:b"):
            spool.add(workspace_id=WS, evidence=eeg(i, stream), data=b"x")

    def script(n, ws, ev):
        raise AuthError(
            "The API key has been revoked (key_revoked). Create a new key.", code="key_revoked", status=401
        )

    client = FakeClient(script, delay_s=0.02)
    up, events = make(spool, client, workers=2)
    up.start()
    assert up.wait_idle(10)
    assert isinstance(up.paused_error, AuthError)
    time.sleep(0.2)  # paused: nothing more is tried
    calls = len(client.calls)
    assert calls <= 2
    time.sleep(0.3)
    assert len(client.calls) == calls
    assert up.stop(5) == 10  # every item still pending
    paused = [f for e, f in events if e == "paused"]
    assert len(paused) == 1
    assert "key_revoked" in paused[0]["message"] and "10 item(s)" in paused[0]["message"]
    assert "collector upload" in paused[0]["message"]
    assert spool.pause_reason() == paused[0]["message"]
    assert up.counters()["paused_reason"].startswith("The API key has been revoked")
    text = caplog.text + repr(events) + repr(up.counters()) + repr(up)
    assert SECRET not in text


def test_not_found_parks_the_workspace_and_the_rest_flows(spool):
    for i in range(3):
        spool.add(workspace_id=WS2, evidence=eeg(i, capture="old"), data=b"x")  # older capture
        spool.add(workspace_id=WS, evidence=eeg(i, capture="new"), data=b"x")

    def script(n, ws, ev):
        if ws == WS2:
            raise NotFoundError(f"Workspace {WS2} was not found", code="workspace_not_found", status=404)

    client = FakeClient(script)
    up, events = make(spool, client)
    up.start()
    assert up.wait_idle(10)
    assert up.stop(1) == 3
    assert sum(1 for _, ws, _, _ in client.calls if ws == WS2) == 1  # asked once, then parked
    assert [c for ws, _, c, _ in client.stored if ws == WS] == [0, 1, 2]
    parked = [f for e, f in events if e == "parked"]
    assert len(parked) == 1 and WS2 in parked[0]["message"]
    assert up.parked_errors and up.paused_error is None


def test_block_not_found_parks_only_that_block(spool):
    other_block = "2d9f4e3c-0b5f-4e70-9c8d-3f4a5b6c7d8e"
    spool.add(workspace_id=WS, evidence=eeg(0, block_id=BLOCK), data=b"x")
    spool.add(workspace_id=WS, evidence=eeg(1, block_id=BLOCK), data=b"x")
    spool.add(workspace_id=WS, evidence=eeg(2, block_id=other_block), data=b"x")

    def script(n, ws, ev):
        if ev.block_id == BLOCK:
            raise NotFoundError("Block not in workspace", code="block_not_found", status=404)

    client = FakeClient(script)
    up, _ = make(spool, client)
    up.start()
    assert up.wait_idle(10)
    assert up.stop(1) == 2
    assert [c for *_, c, _ in client.stored] == [2]
    assert len(client.calls) == 2


def test_stop_at_once_loses_nothing(spool):
    for i in range(20):
        spool.add(workspace_id=WS, evidence=eeg(i), data=b"x")
    client = FakeClient(delay_s=0.05)
    up, _ = make(spool, client)
    up.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    left = up.stop_now()
    # At once: no flush and no 2 s grace for requests on the wire (the bound leaves room for load).
    assert time.monotonic() - t0 < 1.5
    time.sleep(0.1)  # a request still on the wire may settle and be marked delivered
    delivered = len(client.stored)
    assert 0 < delivered < 20
    assert spool.pending_count() == 20 - delivered
    assert left in (20 - delivered, 20 - delivered + 1)


def test_stop_flushes_within_the_deadline_then_reports_pending(spool):
    for i in range(50):
        spool.add(workspace_id=WS, evidence=eeg(i), data=b"x")
    client = FakeClient(delay_s=0.03)
    up, _ = make(spool, client)
    up.start()
    t0 = time.monotonic()
    left = up.stop(0.5)
    elapsed = time.monotonic() - t0
    assert 0.45 < elapsed < 2.0
    assert left == spool.pending_count() > 0
    assert len(client.stored) + left == 50


def test_abort_event_cuts_the_flush(spool):
    for i in range(50):
        spool.add(workspace_id=WS, evidence=eeg(i), data=b"x")
    up, _ = make(spool, FakeClient(delay_s=0.03))
    up.start()
    abort = threading.Event()
    threading.Timer(0.2, abort.set).start()
    t0 = time.monotonic()
    left = up.stop(30, abort=abort)
    # Cut at 0.2 s; finishing the 50 items would take >= 1.5 s (and leave nothing): 1.3 s allows for load.
    assert time.monotonic() - t0 < 1.3 and left > 0


def test_items_added_while_running_are_picked_up_promptly(spool, monkeypatch):
    import collector.delivery.uploader as uploader_module

    monkeypatch.setattr(uploader_module, "_POLL_S", 30.0)  # only the spool's listener can wake it in time
    client = FakeClient()
    up, _ = make(spool, client)
    up.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    spool.add(workspace_id=WS, evidence=eeg(0), data=b"x")
    deadline = time.monotonic() + 5
    while not client.stored and time.monotonic() < deadline:
        time.sleep(0.005)
    assert client.stored and time.monotonic() - t0 < 3.0  # woken by the listener: the poll is 30 s


def test_items_another_process_adds_are_found_by_the_poll(spool, tmp_path, monkeypatch):
    import collector.delivery.uploader as uploader_module

    monkeypatch.setattr(uploader_module, "_POLL_S", 0.2)
    client = FakeClient()
    up, _ = make(spool, client, workers=4)
    up.start()
    other = Spool(tmp_path / "spool")  # its own connection and no listener: as another process's
    try:
        for i in range(3):
            other.add(workspace_id=WS, evidence=eeg(i, f"eeg:{i}"), data=b"x")
        deadline = time.monotonic() + 5
        while len(client.stored) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(s for _, s, _, _ in client.stored) == ["eeg:0", "eeg:1", "eeg:2"]
    finally:
        up.stop(5)
        other.close()


def test_idle_workers_do_not_query_the_spool(spool, monkeypatch):
    import collector.delivery.uploader as uploader_module

    monkeypatch.setattr(uploader_module, "_POLL_S", 0.05)
    looks = []
    real = spool.next_pending
    monkeypatch.setattr(spool, "next_pending", lambda **kw: looks.append(1) or real(**kw))
    up, _ = make(spool, FakeClient(), workers=4)
    up.start()
    time.sleep(0.2)
    looks.clear()
    time.sleep(1.0)
    up.stop(5)
    # One worker polls (about 20 looks in 1 s); four polling workers made about 80.
    assert 5 <= len(looks) <= 30
    up.stop(1)


def test_unexpected_client_failure_pauses_and_keeps_the_item(spool):
    spool.add(workspace_id=WS, evidence=eeg(0), data=b"x")

    def script(n, ws, ev):
        raise RuntimeError("bug in the client")

    up, events = make(spool, FakeClient(script))
    up.start()
    assert up.wait_idle(10)
    assert up.stop(1) == 1
    assert [e for e, _ in events] == ["worker_error"]
    assert "RuntimeError" in events[0][1]["error"]


def test_invalid_spooled_request_fails_locally(spool):
    bad = eeg(0)
    bad["mime_type"] = "image/png"  # does not match type eeg
    spool.add(workspace_id=WS, evidence=bad, data=b"x")
    client = FakeClient()
    up, _ = make(spool, client)
    up.start()
    assert up.wait_idle(10)
    up.stop(1)
    assert client.calls == [] and spool.failed_count() == 1
    assert "mime_type" in spool.stats()[0].last_error


def test_one_uploader_per_spool(tmp_path):
    a, b = Spool(tmp_path / "s"), Spool(tmp_path / "s")
    try:
        first, _ = make(a, FakeClient())
        first.start()
        second, _ = make(b, FakeClient())
        with pytest.raises(SpoolError, match="already delivering"):
            second.start()
        first.stop(1)
        second, _ = make(b, FakeClient())
        second.start()
        second.stop(1)
    finally:
        a.close()
        b.close()


def test_observed_rate_follows_the_limiter(spool):
    for i in range(30):
        spool.add(workspace_id=WS, evidence=eeg(i, f"eeg:{i % 3}"), data=b"x")
    client = FakeClient()
    up, _ = make(spool, client, rate_per_min=600, burst=2)  # 10/s
    up.start()
    time.sleep(1.5)
    n = len(client.calls)
    up.stop_now()
    assert 8 <= n <= 18  # 2 burst + ~15 paced, generous for a loaded machine
    assert up.counters()["limit_per_min"] == 600


def test_token_bucket_paces_and_drains():
    now = [0.0]
    bucket = TokenBucket(60, burst=2, clock=lambda: now[0])  # 1/s
    assert bucket.try_acquire() == 0.0 and bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(1.0)
    now[0] = 0.5
    assert bucket.try_acquire() == pytest.approx(0.5)
    now[0] = 1.0
    assert bucket.try_acquire() == 0.0
    now[0] = 100.0  # refill never exceeds the burst
    assert [bucket.try_acquire() for _ in range(3)][:2] == [0.0, 0.0]
    bucket.drain()
    assert bucket.try_acquire() > 0.0
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_full_jitter_is_bounded_and_grows():
    import random

    rng = random.Random(1)
    samples = [full_jitter(a, 0.5, 8.0, rng) for a in range(12) for _ in range(50)]
    assert all(0 <= s <= 8.0 for s in samples)
    early = max(full_jitter(0, 0.5, 8.0, rng) for _ in range(200))
    late = max(full_jitter(10, 0.5, 8.0, rng) for _ in range(200))
    assert early <= 0.5 and late > 4.0
