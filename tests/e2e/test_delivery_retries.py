"""What the uploader does with each answer, seen at a real HTTP server on loopback (issue 24, 6-8).

The uploader, its real client and a real spool deliver to tests/hostile.py's server, which answers
the API's own JSON error with the status a test asks for. Full jitter is drawn at its top
(`MaxRandom`), so each wait the uploader reports is its documented bound, exactly: the n-th retry
of an item min(cap, base x 2**(n-1)); the k-th 429 in a row min(cap, base x 2**k). Bases are
hundredths of a second so that a test takes well under one.
"""

from __future__ import annotations

import json
import random
import uuid

import pytest
from hostile import HostileServer

from collector.api.settings import ApiKey, ApiSettings
from collector.delivery.rate import TokenBucket
from collector.delivery.spool import Spool
from collector.delivery.uploader import Uploader

KEY = "sk_retries_" + uuid.uuid4().hex


class MaxRandom(random.Random):
    """Full jitter at its top: every draw is the bound itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


def deliver(tmp_path, server: HostileServer, items: int, *, base_s: float, cap_s: float):
    """Spool `items` chunks of one stream and let a real uploader deliver them; (events, spool states)."""
    events: list[tuple[str, dict]] = []
    with Spool(tmp_path / "spool") as spool:
        for i in range(items):
            spool.add(
                workspace_id=server.workspace_id,
                evidence={"type": "eeg", "mime_type": "application/json", "chunk_index": i,
                          "timestamp_ms": 1_700_000_000_000 + 5000 * i, "sample_count": 1,
                          "metadata": {"capture_id": "cap", "stream_id": "eeg:test",
                                       "collector_version": "t"}},
                data=json.dumps({"chunk": i}).encode(),
            )  # fmt: skip
        uploader = Uploader(
            spool,
            ApiSettings(base_url=server.base_url, api_key=ApiKey(KEY), timeout_s=5.0),
            limiter=TokenBucket(60_000, burst=10),  # pacing out of the way: only the back-off waits
            backoff_base_s=base_s,
            backoff_cap_s=cap_s,
            rng=MaxRandom(),
            on_event=lambda event, **fields: events.append((event, fields)),
            verbose_events=True,
        )
        uploader.start()
        try:
            assert uploader.wait_idle(20), "delivery did not settle"
        finally:
            uploader.stop(1)
        states = [state for (state,) in spool._conn.execute("SELECT state FROM items ORDER BY chunk_index")]
    return events, states


# ---- 6: the back-off grows with each failed attempt of an item, up to its cap --------------------------


def test_each_failed_attempt_of_an_item_doubles_its_back_off_up_to_the_cap(tmp_path):
    with HostileServer("ok") as server:
        server.script = ["json503"] * 6  # six answers of 503, then 201
        events, states = deliver(tmp_path, server, 1, base_s=0.02, cap_s=0.15)
        posts = [t for method, _, t in server.requests if method == "POST"]
    assert states == ["delivered"] and len(posts) == 7
    retries = [fields for event, fields in events if event == "retrying"]
    assert [r["attempt"] for r in retries] == [1, 2, 3, 4, 5, 6]
    # The documented bound of retry n: min(cap, base x 2**(n-1)): 0.02, 0.04, 0.08, then the cap.
    delays = [r["delay_s"] for r in retries]
    assert delays == [0.02, 0.04, 0.08, 0.15, 0.15, 0.15], f"waits {delays} s: not doubling up to the cap"
    # ...and the uploader did wait that long before each next request reached the server.
    gaps = [b - a for a, b in zip(posts, posts[1:], strict=False)]
    assert all(gap >= r["delay_s"] - 0.005 for gap, r in zip(gaps, retries, strict=True)), gaps


# ---- 7: exactly the documented answers fail an item for good; the rest are retried ---------------------

FINAL = ["json501", "json505", "validation", "json400", "json409", "json413", "json422"]
RETRIED = ["json500", "json502", "json503", "json504", "json599", "json408", "json425", "json429", "413"]


@pytest.mark.parametrize("answer", FINAL)
def test_a_documented_final_answer_keeps_the_item_as_failed_without_a_retry(tmp_path, answer):
    with HostileServer(answer, then_ok_after=1) as server:  # a retry would get a 201
        events, states = deliver(tmp_path, server, 1, base_s=0.01, cap_s=0.05)
        posts = server.posts()
    assert states == ["failed"], f"{answer}: the item is {states[0]}, not kept as failed for good"
    assert posts == 1, f"{answer}: sent {posts} times"
    assert [event for event, _ in events if event == "failed"] == ["failed"]


@pytest.mark.parametrize("answer", RETRIED)
def test_any_other_answer_is_retried_until_delivered(tmp_path, answer):
    with HostileServer(answer, then_ok_after=1) as server:
        events, states = deliver(tmp_path, server, 1, base_s=0.01, cap_s=0.05)
        posts = server.posts()
    assert states == ["delivered"], f"{answer}: the item is {states[0]}, not retried until delivered"
    assert posts == 2 and not [e for e, _ in events if e == "failed"]


# ---- 8: a 201 ends a run of 429s: the next 429 starts a new one ----------------------------------------


def test_after_a_201_the_next_429_holds_like_the_first_of_a_run(tmp_path):
    with HostileServer("ok") as server:
        # Chunk 0: five 429s in a row, then 201. Chunk 1: one 429, then 201.
        server.script = ["json429"] * 5 + ["ok", "json429"]
        events, states = deliver(tmp_path, server, 2, base_s=0.01, cap_s=10.0)
    assert states == ["delivered", "delivered"]
    holds = [fields["wait_s"] for event, fields in events if event == "rate_limited"]
    assert len(holds) == 6, events
    # Within the run the hold doubles (0.02, 0.04, ... s plus one interval of the limiter's rate)...
    assert holds[:5] == sorted(holds[:5]) and holds[4] > 8 * holds[0], holds
    # ...and the 429 after the 201 is the first of a new run, not the sixth of the old one.
    assert holds[5] == holds[0], f"the hold after a 201 is {holds[5]} s, not the first step's {holds[0]} s"
