"""Durable delivery through the real sandbox server over loopback (uvicorn in a thread).

Faults (503, 429, lost replies), SIGKILL mid-upload then `collector upload`, the client-side rate
limit against a server that enforces its own, bad keys, and the key never reaching the spool.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from collector.api.client import OpenLessonClient
from collector.api.settings import ApiKey, ApiSettings
from collector.delivery.spool import Spool
from collector.delivery.uploader import Uploader
from collector.errors import RateLimitedError

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8ffff3f0005fe02fea7d6a4bd0000000049454e44ae426082"
)


def eeg_evidence(capture_id: str, stream_id: str, i: int, block_id: str | None = None) -> tuple[dict, bytes]:
    data = json.dumps({"chunk": i, "stream": stream_id, "samples": list(range(i, i + 32))}).encode()
    evidence = {
        "type": "eeg",
        "mime_type": "application/json",
        "chunk_index": i,
        "timestamp_ms": 1_700_000_000_000 + i * 1000,
        "metadata": {"capture_id": capture_id, "stream_id": stream_id, "collector_version": "test"},
        "band_powers": {"alpha": 0.2, "beta": 0.4},
        "device_name": "Synthetic",
        "sample_count": 32,
    }
    if block_id:
        evidence["block_id"] = block_id
    return evidence, data


def screen_evidence(capture_id: str, stream_id: str, i: int) -> tuple[dict, bytes]:
    evidence = {
        "type": "screen",
        "mime_type": "image/png",
        "chunk_index": i,
        "file_name": f"screen-{i}.png",
        "metadata": {"capture_id": capture_id, "stream_id": stream_id, "collector_version": "test"},
    }
    return evidence, PNG_1PX + i.to_bytes(4, "big")  # distinct bytes per chunk


def fill(spool: Spool, workspace_id: str, capture_id: str, n: int, block_id: str | None = None) -> dict:
    """n EEG and n screen chunks, interleaved as a capture makes them; returns identity -> bytes."""
    sent = {}
    for i in range(n):
        for evidence, data in (
            eeg_evidence(capture_id, "eeg:synthetic", i, block_id),
            screen_evidence(capture_id, "screen:1", i),
        ):
            spool.add(workspace_id=workspace_id, evidence=evidence, data=data)
            sent[(capture_id, evidence["metadata"]["stream_id"], i)] = data
    return sent


def identities(rows: list[dict]) -> list[tuple[str, str, int]]:
    return [(r["metadata"]["capture_id"], r["metadata"]["stream_id"], r["chunk_index"]) for r in rows]


def settings_for(sb, key: str | None = None) -> ApiSettings:
    return ApiSettings(base_url=sb.base_url, api_key=ApiKey(key or sb.api_key), timeout_s=10.0)


def cli(args: list[str], sb, key: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENLESSON_BASE_URL=sb.base_url, OPENLESSON_API_KEY=key or sb.api_key)
    env.pop("COLLECTOR_SPOOL_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_key_not_in(root: Path, key: str) -> None:
    needle = key.encode()
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing to check in {root}"
    for path in files:
        assert needle not in path.read_bytes(), f"the API key leaked into {path}"


def test_faults_everything_arrives_in_order_duplicates_only_on_lost_replies(
    sandbox_factory, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="collector.sandbox")
    sb = sandbox_factory(
        fail_503=0.20, fail_429=0.10, lose_reply=0.05, latency_ms=15, seed=4, rate_limit_per_min=100_000
    )
    capture_id = str(uuid.uuid4())
    events = []
    with Spool(tmp_path / "spool") as spool:
        sent = fill(spool, sb.workspace_id, capture_id, 25, block_id=sb.block_ids[0])
        uploader = Uploader(
            spool,
            settings_for(sb),
            rate_per_min=6000,
            backoff_base_s=0.05,
            backoff_cap_s=0.5,
            on_event=lambda e, **f: events.append((e, f)),
            verbose_events=True,
        )
        uploader.start()
        assert uploader.wait_idle(75), uploader.counters()
        assert uploader.stop(5) == 0
        counters = uploader.counters()
        assert spool.stored_bytes() == 0 and spool.failed_count() == 0

    rows = sb.evidence(sb.workspace_id)
    got = identities(rows)
    # All chunks arrived, with the bytes that were spooled.
    assert set(got) == set(sent)
    first_row = {}
    for row, ident in zip(rows, got, strict=True):
        first_row.setdefault(ident, row)
    for ident, row in first_row.items():
        assert sb.read_artifact(row["id"]) == sent[ident]
    # chunk_index contiguous and in order per stream: collapsing adjacent repeats gives 0..24.
    per_stream = defaultdict(list)
    for _cap, stream, idx in got:
        per_stream[stream].append(idx)
    for stream, seq in per_stream.items():
        collapsed = [x for k, x in enumerate(seq) if k == 0 or seq[k - 1] != x]
        assert collapsed == list(range(25)), stream
    # Duplicates only where a reply was lost after storing.
    lost = sum("dropped the reply" in r.getMessage() for r in caplog.records)
    injected_503 = sum("fault: 503" in r.getMessage() for r in caplog.records)
    injected_429 = sum("fault: 429" in r.getMessage() for r in caplog.records)
    duplicates = sum(n - 1 for n in Counter(got).values())
    assert duplicates <= lost
    network_retries = sum(1 for e, f in events if e == "retrying" and "HTTP 503" not in f["error"])
    assert network_retries >= lost  # each lost reply was noticed and retried
    assert injected_503 > 0 and injected_429 > 0  # the faults really happened
    assert counters["rate_limited"] == injected_429
    assert_key_not_in(tmp_path / "spool", sb.api_key)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from collector.api.settings import ApiKey, ApiSettings
    from collector.delivery.spool import Spool
    from collector.delivery.uploader import Uploader

    root, workspace_id, capture_id, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = ApiSettings(os.environ["OPENLESSON_BASE_URL"], ApiKey(os.environ["OPENLESSON_API_KEY"]))
    spool = Spool(root)
    uploader = Uploader(spool, settings, rate_per_min=6000)
    uploader.start()
    for i in range(n):
        for stream, ev_type, mime in (
            ("eeg:synthetic", "eeg", "application/json"), ("screen:1", "screen", "image/png")
        ):
            evidence = {"type": ev_type, "mime_type": mime, "chunk_index": i,
                        "metadata": {"capture_id": capture_id, "stream_id": stream}}
            spool.add(workspace_id=workspace_id, evidence=evidence, data=f"{stream}/{i}".encode())
            print("added", stream, i, flush=True)
        time.sleep(0.02)
    print("all added", flush=True)
    time.sleep(600)  # killed long before
    """
)


def test_sigkill_mid_upload_then_collector_upload_loses_nothing(sandbox_factory, tmp_path):
    sb = sandbox_factory(latency_ms=120, rate_limit_per_min=100_000)
    root = tmp_path / "spool"
    script = tmp_path / "capture_and_upload.py"
    script.write_text(KILL_SCRIPT)
    capture_id = str(uuid.uuid4())
    env = dict(
        os.environ, OPENLESSON_BASE_URL=sb.base_url, OPENLESSON_API_KEY=sb.api_key, PYTHONPATH=str(REPO)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), sb.workspace_id, capture_id, "40"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(sb.evidence(sb.workspace_id)) < 8:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the uploader in the subprocess delivered nothing"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    added = {
        (capture_id, line.split()[1], int(line.split()[2]))
        for line in out.splitlines()
        if line.startswith("added ")
    }
    delivered_before = set(identities(sb.evidence(sb.workspace_id)))
    assert len(added) > len(delivered_before), "killed too late: nothing left to recover"

    result = cli(["upload", "--spool", str(root), "--rate", "6000"], sb)
    assert result.returncode == 0, result.stderr
    got = identities(sb.evidence(sb.workspace_id))
    assert added <= set(got)  # every chunk the producer saw spooled reached the workspace
    # At most the requests that were on the wire at the kill (one per stream) were sent twice.
    assert sum(n - 1 for n in Counter(got).values()) <= 2
    with Spool(root) as spool:
        assert spool.pending_count() == 0
    assert_key_not_in(root, sb.api_key)


def test_backlog_drains_at_the_configured_rate_without_429(sandbox_factory, tmp_path):
    # Scaled down 12x in time: the server admits 20 per 5 s window (240/min), the client sends
    # 200/min with a burst of 2, so no 5 s window ever sees more than 2 + 16.7 requests.
    sb = sandbox_factory(rate_limit_per_min=20)
    sb.limiter.window_s = 5.0
    n_items = 48
    with Spool(tmp_path / "spool") as spool:
        fill(spool, sb.workspace_id, str(uuid.uuid4()), n_items // 2)
        uploader = Uploader(spool, settings_for(sb), rate_per_min=200, burst=2, workers=4)
        t0 = time.monotonic()
        uploader.start()
        assert uploader.wait_idle(60), uploader.counters()
        elapsed = time.monotonic() - t0
        counters = uploader.counters()
        assert uploader.stop(5) == 0
        attempts = spool._conn.execute("SELECT SUM(attempts) FROM items").fetchone()[0]
    assert counters["rate_limited"] == 0 and counters["retries"] == 0 and attempts == 0
    assert len(sb.evidence(sb.workspace_id)) == n_items
    expected_s = (n_items - 2) / (200 / 60)  # 13.8 s
    assert 0.8 * expected_s <= elapsed <= 1.6 * expected_s, elapsed
    # The server really enforces its limit: a client without a limiter is refused within the window.
    with OpenLessonClient(settings_for(sb)) as client, pytest.raises(RateLimitedError):
        for _ in range(25):
            client.list_blocks(sb.workspace_id)


@pytest.mark.parametrize("which", ["bogus", "revoked", "teams_required"])
def test_bad_key_exit_3_items_kept(sandbox_factory, tmp_path, which):
    sb = sandbox_factory()
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fill(spool, sb.workspace_id, str(uuid.uuid4()), 5)
    key = "sk_this_key_does_not_exist_4242" if which == "bogus" else sb.keys[which]
    result = cli(["upload", "--spool", str(root)], sb, key=key)
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("collector:")]
    assert len(lines) == 1, result.stderr  # told once, in one line
    expected_code = {"bogus": "unauthorized", "revoked": "key_revoked", "teams_required": "teams_required"}
    assert expected_code[which] in lines[0] and "10 item(s) are kept" in lines[0]
    assert key not in result.stderr + result.stdout
    assert sb.evidence(sb.workspace_id) == []
    with Spool(root) as spool:
        assert spool.pending_count() == 10
        assert spool.pause_reason() and expected_code[which] in spool.pause_reason()
    status = cli(["status", "--spool", str(root), "--json"], sb)
    report = json.loads(status.stdout)
    assert report["pending"] == 10 and expected_code[which] in report["pause_reason"]
    assert_key_not_in(root, key)
    if which == "revoked":  # with the right key, the same spool drains
        result = cli(["upload", "--spool", str(root), "--rate", "6000"], sb)
        assert result.returncode == 0, result.stderr
        assert len(sb.evidence(sb.workspace_id)) == 10


def test_missing_workspace_exit_4_items_kept(sandbox_factory, tmp_path):
    sb = sandbox_factory()
    root = tmp_path / "spool"
    gone = str(uuid.uuid4())
    with Spool(root) as spool:
        fill(spool, gone, "old-capture", 2)
        fill(spool, sb.workspace_id, "new-capture", 2)
    result = cli(["upload", "--spool", str(root)], sb)
    assert result.returncode == 4, result.stderr
    assert "workspace_not_found" in result.stderr and "4 item(s) are kept" in result.stderr
    assert len(sb.evidence(sb.workspace_id)) == 4  # the rest still flowed
    with Spool(root) as spool:
        assert spool.pending_count() == 4


def test_flush_timeout_leaves_items_exit_6(sandbox_factory, tmp_path):
    sb = sandbox_factory(fail_503=1.0)
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fill(spool, sb.workspace_id, "cap", 2)
    result = cli(["upload", "--spool", str(root), "--flush-timeout", "1.5"], sb)
    assert result.returncode == 6, result.stderr
    assert "4 item(s) are still waiting" in result.stderr and "HTTP 503" in result.stderr
    with Spool(root) as spool:
        assert spool.pending_count() == 4


def test_key_never_reaches_the_spool_files(sandbox_factory, tmp_path):
    sb = sandbox_factory(fail_503=0.3, lose_reply=0.1, seed=11, rate_limit_per_min=100_000)
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fill(spool, sb.workspace_id, "cap", 10)
    key_file = tmp_path / "key.txt"
    key_file.write_text(sb.api_key + "\n")
    os.chmod(key_file, 0o600)
    result = cli(
        ["upload", "--spool", str(root), "--api-key-file", str(key_file), "--rate", "6000"],
        sb,
        key="sk_unused",
    )
    assert result.returncode == 0, result.stderr
    # A failed attempt with the wrong key writes errors and a pause reason: still no key.
    with Spool(root) as spool:
        fill(spool, sb.workspace_id, "cap2", 2)
    bad = "sk_wrong_key_value_987654321"
    assert cli(["upload", "--spool", str(root)], sb, key=bad).returncode == 3
    assert_key_not_in(root, sb.api_key)
    assert_key_not_in(root, bad)


def test_failed_items_are_kept_and_sent_again_with_retry_failed(sandbox_factory, tmp_path):
    sb = sandbox_factory()
    root = tmp_path / "spool"
    with Spool(root) as spool:
        sent = fill(spool, sb.workspace_id, "cap-retry", 2)
        first = spool.next_pending()
        spool.mark_failed(first.id, "validation_error: pretend the server refused it")
    plain = cli(["upload", "--spool", str(root)], sb)
    assert plain.returncode == 0 and "--retry-failed" in plain.stderr
    assert len(sb.evidence(sb.workspace_id)) == len(sent) - 1  # the failed one is kept, not sent
    again = cli(["upload", "--spool", str(root), "--retry-failed"], sb)
    assert again.returncode == 0, again.stderr
    assert sorted(identities(sb.evidence(sb.workspace_id))) == sorted(sent)
