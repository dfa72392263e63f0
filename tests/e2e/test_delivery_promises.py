"""Delivery promises observed at the real sandbox over loopback, through the real `collector` CLI.

A server `validation_error` (the sandbox's `reject_chunk`) ends as a failed item that keeps the
server's message, then `collector upload --retry-failed` sends it; a server that stops answering
is given up on by the client's timeout and retried; a 429 holds the whole queue for Retry-After,
measured from the sandbox's own request log; earlier captures go first on the next start.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks, rows_of, spool_items
from recordings import MUSE, pyxdf_eeg

from collector.delivery.spool import Spool

pytestmark = pytest.mark.slow


def add_items(root, workspace_id: str, streams: int, per_stream: int, capture_id: str | None = None) -> set:
    """Small EEG-typed items, interleaved over `streams` streams; returns their identities."""
    capture_id = capture_id or str(uuid.uuid4())
    sent = set()
    with Spool(root) as spool:
        for i in range(per_stream):
            for s in range(streams):
                stream_id = f"eeg:test-{s}"
                spool.add(
                    workspace_id=workspace_id,
                    evidence={"type": "eeg", "mime_type": "application/json", "chunk_index": i,
                              "timestamp_ms": 1_700_000_000_000 + i * 1000, "sample_count": 1,
                              "metadata": {"capture_id": capture_id, "stream_id": stream_id,
                                           "collector_version": "test"}},
                    data=json.dumps({"stream": s, "chunk": i}).encode(),
                )  # fmt: skip
                sent.add((capture_id, stream_id, i))
    return sent


def identities(sandbox) -> list[tuple]:
    return [
        (r["metadata"]["capture_id"], r["metadata"]["stream_id"], r["chunk_index"]) for r in rows_of(sandbox)
    ]


def test_server_validation_error_is_kept_as_failed_with_its_message_then_retry_failed(
    sandbox_factory, tmp_path
):
    sb = sandbox_factory(reject_chunk=1)
    spool = tmp_path / "spool"
    env = cli_env(sb)
    proc = collector(
        ["replay", str(MUSE), "--workspace", sb.workspace_id, "--block", sb.block_ids[0], "--speed", "max",
         "--chunk-seconds", "30", "--spool", str(spool), "--log-format", "json"],
        env,
    )  # fmt: skip
    assert proc.returncode == 7 and "Traceback" not in proc.stderr, proc.stderr  # data lost (for now)
    items = [i for i in spool_items(spool) if i["stream_id"].startswith("eeg:")]  # the chunks
    assert [i["chunk_index"] for i in items] == list(range(5))  # 120 s in 30 s chunks (the last one short)
    failed = [i for i in items if i["state"] == "failed"]
    assert [i["chunk_index"] for i in failed] == [1], proc.stderr
    # The server's own words are kept with the item, for the user and for `status`.
    assert "evidence with chunk_index 1 is rejected by this sandbox" in failed[0]["last_error"]
    assert all(i["state"] == "delivered" for i in items if i["chunk_index"] != 1)
    assert sorted(r["chunk_index"] for r in rows_of(sb, "eeg")) == [0, 2, 3, 4]
    told = [line for line in proc.stderr.splitlines() if "chunk_index 1 is rejected" in line]
    assert told, proc.stderr  # the user is told which chunk and why

    status = json.loads(collector(["status", "--spool", str(spool), "--json"], env).stdout)
    assert status["failed"] == 1 and status["pending"] == 0
    assert "chunk_index 1 is rejected" in status["captures"][0]["last_error"]

    plain = collector(["upload", "--spool", str(spool)], env)  # failed items wait for --retry-failed
    assert plain.returncode == 0 and "--retry-failed" in plain.stderr, plain.stderr
    assert len(rows_of(sb, "eeg")) == 4

    sb.set_faults(reject_chunk=None)  # the cause is fixed
    again = collector(["upload", "--spool", str(spool), "--retry-failed"], env)
    assert again.returncode == 0, again.stderr
    assert "Moved 1 failed item(s) back to pending" in again.stderr
    chunks = eeg_chunks(sb)
    assert [c["chunk_index"] for c in chunks] == list(range(5))
    samples = np.array([row for c in chunks for row in c["samples"]], dtype=float)
    expected, _ = pyxdf_eeg(MUSE, channels=4)
    np.testing.assert_allclose(samples, expected, atol=2e-3)  # every sample, exactly once
    assert all(i["state"] == "delivered" for i in spool_items(spool))


def test_client_times_out_on_a_server_that_stops_answering_then_delivers(sandbox_factory, tmp_path):
    sb = sandbox_factory(latency_ms=6000)  # the server answers only after 6 s
    root = tmp_path / "spool"
    sent = add_items(root, sb.workspace_id, streams=1, per_stream=3)
    env = cli_env(sb)
    proc = collector(["upload", "--spool", str(root), "--timeout", "1", "--flush-timeout", "5"], env)
    assert proc.returncode == 6, proc.stderr
    assert "did not answer within 1 s" in proc.stderr and "Traceback" not in proc.stderr
    posts = [r for r in sb.requests() if r["method"] == "POST"]
    # One stream: one request in flight at a time. A second attempt arriving before the server's
    # 6 s answer shows the client gave up on the first one (1 s timeout, then a short backoff).
    assert len(posts) >= 2
    gaps = [b["t"] - a["t"] for a, b in zip(posts, posts[1:], strict=False)]
    assert all(0.9 <= gap < 5.0 for gap in gaps), gaps
    assert {i["state"] for i in spool_items(root)} == {"pending"}

    sb.set_faults(latency_ms=0)  # the server answers again
    up = collector(["upload", "--spool", str(root)], env)
    assert up.returncode == 0, up.stderr
    assert sent <= set(identities(sb))  # a late store of an abandoned attempt is a same-identity duplicate
    assert {i["state"] for i in spool_items(root)} == {"delivered"}


def test_a_429_holds_the_whole_queue_for_its_retry_after_seen_at_the_sandbox(sandbox_factory, tmp_path):
    sb = sandbox_factory(rate_limit_per_min=40)
    # The server admits 40 requests per 10 s per key; the client may send 6,000/min, so it meets the
    # limit at once and gets a Retry-After of about 10 s, far longer than its own pause after a 429
    # (one interval of its lowered rate, 2-4 s): a client ignoring Retry-After shows.
    sb.limiter.window_s = 10.0
    root = tmp_path / "spool"
    sent = add_items(root, sb.workspace_id, streams=3, per_stream=14)
    proc = collector(
        ["upload", "--spool", str(root), "--rate", "6000", "--flush-timeout", "90"], cli_env(sb), timeout=150
    )
    assert proc.returncode == 0, proc.stderr
    assert set(identities(sb)) == sent
    reqs = sb.requests()
    limited = [r for r in reqs if r["status"] == 429]
    assert limited, "the client never met the server's limit; the test proves nothing"
    for r in limited:
        assert r["retry_after"] >= 1
        # 0.5 s: a request already past its turn when the 429 reached the client (another worker, on
        # a loaded machine) may still arrive; Retry-After is at least 1 s, so the check keeps its bite.
        quiet_from, quiet_until = r["replied"] + 0.5, r["replied"] + r["retry_after"]
        early = [q for q in reqs if quiet_from < q["t"] < quiet_until]
        assert not early, f"requests {[(round(q['t'] - r['replied'], 2), q['status']) for q in early]} " \
            f"during a {r['retry_after']} s Retry-After"  # fmt: skip


def test_earlier_captures_are_delivered_first_on_the_next_start(sandbox_factory, tmp_path):
    # A slow server (0.3 s a request): the new capture is spooled long before the old one is sent.
    sb = sandbox_factory(latency_ms=300)
    spool = tmp_path / "spool"
    env = cli_env(sb)
    common = ["--workspace", sb.workspace_id, "--block", sb.block_ids[0], "--speed", "max",
              "--chunk-seconds", "30", "--spool", str(spool)]  # fmt: skip
    first = collector(["replay", str(MUSE), *common, "--offline"], env)  # e.g. the network was down
    assert first.returncode == 0 and "collector upload" in first.stderr, first.stderr
    waiting = spool_items(spool)
    earlier = {i["capture_id"] for i in waiting}
    assert len(earlier) == 1 and len(waiting) >= 5 and rows_of(sb) == []
    second = collector(["replay", str(MUSE), *common], env)
    assert second.returncode == 0, second.stderr
    order = [r["metadata"]["capture_id"] for r in rows_of(sb)]
    assert len(order) == 2 * len(waiting), order
    assert set(order[: len(waiting)]) == earlier, f"earlier captures' items were not delivered first: {order}"
