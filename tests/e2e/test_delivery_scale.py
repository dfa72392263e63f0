"""Delivery at scale: collectors sharing one key adapt to its limit; a lone one keeps its ceiling.

Real `python -m collector replay` processes against the real sandbox over loopback, which enforces
120 requests per minute per key over a sliding 60 s window, like the API, and counts refused
requests against the key. These tests take minutes of wall time by nature (the limit is per
minute); they are the fewest and shortest that show the promise.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cli_runs import REPO, cli_env, is_summary, start_collector

sys.path.insert(0, str(REPO / "scripts"))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402

pytestmark = pytest.mark.slow


def recording(tmp_path: Path, name: str, seconds: float, seed: int) -> Path:
    path = tmp_path / f"{name}.xdf"
    write_xdf(
        path,
        [synthetic_eeg(seconds, seed=seed), synthetic_markers(seconds)],
        start=datetime(2024, 5, 1, 10, tzinfo=timezone.utc),
    )
    return path


def replay_args(path: Path, sandbox, spool: Path) -> list[str]:
    # 5 s chunks (the live size) make many requests out of a short, cheap recording. No
    # --flush-timeout: a replay delivers everything before it exits.
    return ["replay", str(path), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
            "--speed", "max", "--chunk-seconds", "5", "--spool", str(spool),
            "--log-format", "json"]  # fmt: skip


def evidence_posts(sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/evidence")]


@pytest.mark.timeout(600)
def test_four_collectors_on_one_key_share_it_evenly_with_few_refusals(sandbox_factory, tmp_path):
    """An `upload` of a backlog beside three replays (the review's mixed case), all on one key."""
    from cli_runs import collector

    sandbox = sandbox_factory()  # 120/min per key, 60 s sliding window, refusals counted
    n, seconds = 4, 300.0  # 4 x 60 chunks of 5 s
    backlog = tmp_path / "spool0"
    offline = collector([*replay_args(recording(tmp_path, "lab0", seconds, seed=0), sandbox, backlog),
                         "--offline"], cli_env(sandbox), timeout=120)  # fmt: skip
    assert offline.returncode == 0, offline.stderr[-3000:]
    t0 = time.monotonic()
    procs = [start_collector(["upload", "--spool", str(backlog)], cli_env(sandbox))]
    for i in range(1, n):
        path = recording(tmp_path, f"lab{i}", seconds, seed=i)
        procs.append(start_collector(replay_args(path, sandbox, tmp_path / f"spool{i}"), cli_env(sandbox)))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]

    rows = sandbox.evidence(sandbox.workspace_id)
    per_capture: dict[str, list[int]] = {}
    for r in rows:
        if r["type"] == "eeg" and not is_summary(r):
            per_capture.setdefault(r["metadata"]["capture_id"], []).append(r["chunk_index"])
    assert len(per_capture) == n
    for indices in per_capture.values():  # every chunk arrives (a duplicate only after a lost reply)
        assert sorted(set(indices)) == list(range(int(seconds / 5)))

    requests = sandbox.requests()
    refused = [r for r in requests if r["status"] == 429]
    accepted = [r for r in requests if r["status"] is not None and r["status"] < 400]
    assert len(refused) <= 0.05 * len(requests), (len(refused), len(requests))
    # Ideal: every accepted request at 120/min from the first answer (the four processes' start-up,
    # slow on a loaded CI machine, is not delivery); the sliding window lets the first minute's 120
    # go at once, so a good client pool can even beat it.
    ideal_s = 60.0 * len(accepted) / 120.0
    first = min(r["replied"] for r in accepted)
    assert first - t0 < 60.0, first - t0  # the collectors did start
    total_s = max(r["replied"] for r in accepted) - first
    # Each collector's share of the key while all four deliver (the upload is not favoured).
    caps = [r["metadata"]["capture_id"] for r in rows]  # in the order the server stored them
    until = min(max(i for i, c in enumerate(caps) if c == cap) for cap in per_capture)
    shares = [caps[: until + 1].count(cap) for cap in per_capture]
    print(f"\n4 collectors (1 upload, 3 replays): {len(accepted)} accepted, {len(refused)} refused "
          f"({100 * len(refused) / len(requests):.1f} %), {total_s:.0f} s (ideal {ideal_s:.0f} s), "
          f"chunks each until the first ended: {shares}")  # fmt: skip
    assert total_s <= ideal_s + 30.0, (total_s, ideal_s)
    # The upload starts a few seconds before the replays (no file to read) and keeps some lead.
    assert max(shares) <= 1.5 * min(shares), shares


@pytest.mark.timeout(400)
def test_four_replays_against_a_server_without_retry_after_wait_out_the_window(sandbox_factory, tmp_path):
    """Issue 23's row: four replays of 4 minutes in 5 s chunks (196 items) at once on one key; the
    server counts every request, refused ones too, and its 429 says nothing of when to come back
    (the API reference promises no Retry-After). 120 go at once and the rest when the window
    frees, so the ideal is 60 s; before the collectors kept their own windows, 9 % were refused
    and the last 201 came after 106-118 s."""
    sandbox = sandbox_factory(rate_retry_after=False)  # 120 per sliding 60 s, refusals counted
    paths = [recording(tmp_path, f"r{i}", 240.0, seed=20 + i) for i in range(4)]
    t0 = time.monotonic()
    procs = [
        start_collector(replay_args(path, sandbox, tmp_path / f"spool{i}"), cli_env(sandbox))
        for i, path in enumerate(paths)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    requests = sandbox.requests()
    assert not [r for r in requests if "retry_after" in r]  # the server really sent none
    refused = [r for r in requests if r["status"] == 429]
    stored = [r for r in evidence_posts(sandbox) if r["status"] == 201]
    assert len(stored) == 4 * 49  # 48 chunks and the session summary each
    last_s = max(r["replied"] for r in stored) - t0
    share = f"{len(refused)} of {len(requests)} refused"
    print(f"\nfour replays, no Retry-After: {share}, last 201 after {last_s:.0f} s")
    assert len(refused) <= 0.05 * len(requests), (len(refused), len(requests))
    assert last_s <= 100.0  # goal 90 s, with room for a loaded test machine


@pytest.mark.timeout(300)
def test_a_lone_collector_with_a_backlog_sustains_its_ceiling_without_429(sandbox_factory, tmp_path):
    sandbox = sandbox_factory()
    path = recording(tmp_path, "backlog", 500.0, seed=9)  # 100 chunks of 5 s: a minute of delivery
    proc = start_collector(replay_args(path, sandbox, tmp_path / "spool"), cli_env(sandbox))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    posts = evidence_posts(sandbox)
    assert [r for r in sandbox.requests() if r["status"] == 429] == []
    assert len([p for p in posts if p["status"] == 201]) >= 100
    times = sorted(p["t"] for p in posts)
    span_s = times[-1] - times[0]
    rate = 60.0 * (len(times) - 1) / span_s
    print(f"\nlone collector: {len(times)} requests in {span_s:.1f} s = {rate:.1f}/min")
    assert span_s >= 55.0  # sustained over a minute of delivery, not a burst
    assert rate >= 95.0


@pytest.mark.timeout(300)
def test_ctrl_c_while_a_replay_delivers_stops_at_once_and_keeps_the_rest(sandbox_factory, tmp_path):
    import signal

    from cli_runs import collector

    sandbox = sandbox_factory()
    path = recording(tmp_path, "long", 300.0, seed=3)  # 60 chunks: about 35 s of delivery
    spool = tmp_path / "spool"
    proc = start_collector(replay_args(path, sandbox, spool), cli_env(sandbox))
    deadline = time.monotonic() + 60
    while len(evidence_posts(sandbox)) < 15 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the replay must still be delivering"
    proc.send_signal(signal.SIGINT)
    t = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < 5.0, "one Ctrl-C while delivering a backlog stops at once"
    assert proc.returncode != 0 and "Traceback" not in err
    stored = [r for r in sandbox.evidence(sandbox.workspace_id) if not is_summary(r)]
    assert 10 <= len(stored) < 60
    up = collector(["upload", "--spool", str(spool)], cli_env(sandbox), timeout=120)
    assert up.returncode == 0, up.stderr
    indices = sorted({r["chunk_index"] for r in sandbox.evidence(sandbox.workspace_id) if not is_summary(r)})
    assert indices == list(range(60))  # nothing lost: the rest was in the spool
