"""Delivery under hostile conditions, through the real `python -m collector` commands.

A small misbehaving server on loopback (tests/hostile.py) plays the captive portal, the proxy,
the server that asks for 99999999999 s, the trickled reply and the one that echoes the key;
the real sandbox plays the API. In every test nothing that was saved is ever deleted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hostile import HostileServer

from collector.delivery.spool import Spool

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MUSE_XDF = (
    REPO / "collector" / "data" / "muse-p300-subject1.xdf"
)  # 120 s, 25 chunks of 5 s (the last one short) with --chunk-seconds 5 (replay's default is 60 s)
KEY = "sk_hostile_" + uuid.uuid4().hex  # never to be seen in any output or file


def collector(args: list[str], base_url: str, key: str = KEY, timeout: float = 120):
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "COLLECTOR_SPOOL_DIR")
    }
    env.update(OPENLESSON_API_KEY=key, OPENLESSON_BASE_URL=base_url)
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spool_eeg(
    root: Path, workspace_id: str, n: int, capture_id: str = "cap", samples: int = 16
) -> dict[int, bytes]:
    """n EEG chunks of one stream in the spool; returns chunk_index -> bytes."""
    saved = {}
    with Spool(root) as spool:
        for i in range(n):
            data = json.dumps({"chunk": i, "samples": list(range(i, i + samples))}).encode()
            spool.add(
                workspace_id=workspace_id,
                evidence={
                    "type": "eeg", "mime_type": "application/json", "chunk_index": i,
                    "timestamp_ms": 1_700_000_000_000 + 5000 * i, "sample_count": samples,
                    "metadata": {"capture_id": capture_id, "stream_id": "eeg:test", "collector_version": "t"},
                },
                data=data,
            )  # fmt: skip
            saved[i] = data
    return saved


def rows(root: Path) -> dict[int, tuple[str, bytes | None]]:
    """chunk_index -> (state, bytes or None once delivered), read straight from the database."""
    con = sqlite3.connect(root / "spool.db")
    try:
        return {
            idx: (state, data)
            for idx, state, data in con.execute(
                "SELECT i.chunk_index, i.state, b.data FROM items i LEFT JOIN blobs b ON b.item_id = i.id"
            )
        }
    finally:
        con.close()


def rows_all(root: Path) -> list[tuple[str, int, str]]:
    con = sqlite3.connect(root / "spool.db")
    try:
        return con.execute("SELECT stream_id, chunk_index, state FROM items").fetchall()
    finally:
        con.close()


def eeg_items(root: Path) -> int:
    return sum(stream.startswith("eeg:") for stream, _, _ in rows_all(root))


def assert_nothing_lost(root: Path, saved: dict[int, bytes]) -> None:
    """Every saved chunk is still in the spool with its bytes, or was delivered (201)."""
    now = rows(root)
    for idx, data in saved.items():
        state, kept = now[idx]
        assert state == "delivered" or kept == data, f"chunk {idx} lost its bytes ({state})"


def assert_no_key(text: str) -> None:
    assert KEY not in text and KEY[3:] not in text, "the API key was printed"


def assert_key_not_in_files(root: Path) -> None:
    for path in (p for p in root.rglob("*") if p.is_file()):
        assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def status_json(root: Path) -> dict:
    proc = collector(["status", "--spool", str(root), "--json"], "http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---- answers that are not the API's own JSON: retried, never failed ------------------------------------


@pytest.mark.parametrize("mode", ["portal", "413", "400plain"])
def test_portal_redirect_proxy_413_and_plain_400_are_retried_never_failed(tmp_path, mode):
    root = tmp_path / "spool"
    with HostileServer(mode) as server:
        saved = spool_eeg(root, server.workspace_id, 3)
        stuck = collector(["upload", "--spool", str(root), "--flush-timeout", "3"], server.base_url)
        assert stuck.returncode == 6, stuck.stderr  # waiting, not "delivered 0, nothing pending"
        assert "Traceback" not in stuck.stderr and "Delivered 0" not in stuck.stderr
        assert "3 item(s) are still waiting" in stuck.stderr
        assert server.posts() >= 2, "the answer was not retried"
        assert {state for state, _ in rows(root).values()} == {"pending"}  # nothing marked failed
        assert_nothing_lost(root, saved)
        server.mode = "ok"  # the user signs in to the Wi-Fi / the proxy is fixed
        done = collector(["upload", "--spool", str(root)], server.base_url)
        assert done.returncode == 0, done.stderr
        assert sorted(r["chunk_index"] for r in server.stored) == [0, 1, 2]
    assert_nothing_lost(root, saved)


def test_only_the_apis_json_error_fails_an_item_and_upload_exits_7(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("validation") as server:
        saved = spool_eeg(root, server.workspace_id, 2)
        proc = collector(["upload", "--spool", str(root)], server.base_url)
    assert proc.returncode == 7, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "DATA LOST" in last and "2 chunk(s) of eeg:test (chunk 0, 1)" in last and "--retry-failed" in last
    assert {state for state, _ in rows(root).values()} == {"failed"}
    assert_nothing_lost(root, saved)  # failed items keep their bytes
    report = status_json(root)
    assert report["failed"] == 2 and report["captures"][0]["failed"] == 2


# ---- Retry-After -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["429huge", "503huge"])
def test_huge_retry_after_is_capped_and_never_crashes(tmp_path, mode):
    root = tmp_path / "spool"
    with HostileServer(mode) as server:
        saved = spool_eeg(root, server.workspace_id, 2)
        t0 = time.monotonic()
        proc = collector(["upload", "--spool", str(root), "--flush-timeout", "3"], server.base_url)
        took = time.monotonic() - t0
        posts = server.posts()
    assert proc.returncode == 6, proc.stderr
    assert "OverflowError" not in proc.stderr and "Traceback" not in proc.stderr
    assert "uploader stopped" not in proc.stderr  # the worker did not die
    # Honoured: after the answer, nobody hammers the server for the rest of the 3 s...
    assert posts <= 2, f"{posts} requests despite Retry-After"
    assert took < 20
    assert_nothing_lost(root, saved)


# ---- --timeout bounds the whole request ------------------------------------------------------------------


def test_trickled_reply_is_cut_at_the_timeout_and_retried(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("trickle") as server:
        saved = spool_eeg(root, server.workspace_id, 1)
        proc = collector(
            ["upload", "--spool", str(root), "--timeout", "2", "--flush-timeout", "8"], server.base_url
        )
        times = [t for m, _, t in server.requests if m == "POST"]
    assert proc.returncode == 6, proc.stderr
    assert "did not answer within 2 s" in proc.stderr
    assert len(times) >= 2, "the trickled request was never cut"
    # Cut at 2 s, then a backoff of at most a second or two before the retry.
    assert times[1] - times[0] < 5.0, f"the first request ran {times[1] - times[0]:.1f} s"
    assert_nothing_lost(root, saved)


# ---- the key is never printed nor stored ---------------------------------------------------------------


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_key_echoed_in_headers_is_never_printed(tmp_path, verbosity):
    root = tmp_path / "spool"
    with HostileServer("echo") as server:
        spool_eeg(root, server.workspace_id, 2)
        proc = collector(["upload", "--spool", str(root), verbosity], server.base_url)
    assert proc.returncode == 0, proc.stderr
    assert_no_key(proc.stderr + proc.stdout)
    if verbosity == "-vv":  # the HTTP library's debug lines are on, and masked
        assert "receive_response_headers" in proc.stderr and "X-Echo-Authorization" in proc.stderr
        assert "Bearer …" in proc.stderr
    else:  # off at -v
        assert "receive_response_headers" not in proc.stderr
    assert_key_not_in_files(root)


def test_replay_json_lab_log_at_vv_never_prints_the_key(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("echo") as server:
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", server.workspace_id, "--block", server.block_id,
             "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--log-format", "json", "-vv"],
            server.base_url,
        )  # fmt: skip
        stored = sum(r["metadata"]["stream_id"].startswith("eeg:") for r in server.stored)
    assert proc.returncode == 0, proc.stderr
    assert stored == 25
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any("X-Echo-Authorization" in json.dumps(line) for line in lines)  # debug lines are there
    assert_no_key(proc.stderr + proc.stdout)
    assert_key_not_in_files(root)


def test_key_returned_as_evidence_id_is_not_stored(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("key_as_id") as server:
        saved = spool_eeg(root, server.workspace_id, 2)
        proc = collector(["upload", "--spool", str(root)], server.base_url)
    assert proc.returncode == 0, proc.stderr
    assert_key_not_in_files(root)
    con = sqlite3.connect(root / "spool.db")
    ids = [r[0] for r in con.execute("SELECT evidence_id FROM items")]
    con.close()
    assert ids == ["sk_…", "sk_…"]
    assert_nothing_lost(root, saved)


# ---- run/replay: exit 7 for lost data, 0 for --offline, start-up check retried ----------------------------


def test_replay_with_items_rejected_for_good_exits_7_and_status_counts_them(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("validation") as server:
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", server.workspace_id, "--block", server.block_id,
             "--speed", "max", "--chunk-seconds", "5", "--spool", str(root)],
            server.base_url,
        )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lost = [line for line in proc.stderr.splitlines() if "DATA LOST" in line]
    assert len(lost) == 1 and "25 chunk(s) of eeg:" in lost[0] and "rejected for good" in lost[0]
    assert "metadata is too large" in lost[0]  # the server's reason
    report = status_json(root)
    eeg = [loss for loss in report["losses"] if loss["stream_id"].startswith("eeg:")]
    assert [(loss["reason"], loss["count"]) for loss in eeg] == [("failed", 25)]
    assert report["failed"] == sum(loss["count"] for loss in report["losses"])  # + the session summary


def test_spool_bound_replay_exits_7_and_status_shows_the_same_count(sandbox, tmp_path):
    root = tmp_path / "spool"
    profile = tmp_path / "tiny.toml"
    profile.write_text("[delivery]\nspool_max_bytes = 300000\n")
    proc = collector(
        ["replay", str(MUSE_XDF), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
         "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--profile", str(profile),
         "--offline"],
        sandbox.base_url, key=sandbox.api_key,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr  # --offline, but data was lost: 7 wins over 0
    lost = [line for line in proc.stderr.splitlines() if "DATA LOST" in line]
    assert len(lost) == 1, proc.stderr
    spooled = eeg_items(root)
    refused = 25 - spooled
    assert spooled >= 1 and refused >= 10
    assert f"{refused} chunk(s) of eeg:" in lost[0] and "byte bound" in lost[0]
    report = status_json(root)
    eeg = [loss for loss in report["losses"] if loss["stream_id"].startswith("eeg:")]
    assert [(loss["reason"], loss["count"]) for loss in eeg] == [("spool_full", refused)]
    assert report["captures"][0]["dropped"] == sum(loss["count"] for loss in report["losses"])
    assert report["captures"][0]["pending"] == len(rows_all(root))  # nothing saved was deleted


def test_offline_replay_that_spooled_everything_exits_0_and_names_upload(sandbox, tmp_path):
    root = tmp_path / "spool"
    proc = collector(
        ["replay", str(MUSE_XDF), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
         "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--offline"],
        sandbox.base_url, key=sandbox.api_key,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert eeg_items(root) == 25
    assert f"{len(rows_all(root))} item(s)" in last and f"collector upload --spool {root}" in last
    assert sandbox.evidence(sandbox.workspace_id) == []


def test_startup_check_that_gets_no_answer_captures_anyway_then_delivers(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("ok") as server:
        server.blocks_fail = 2  # both start-up tries meet a gateway's error page; the third check passes
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", server.workspace_id, "--block", server.block_id,
             "--speed", "max", "--chunk-seconds", "5", "--spool", str(root)],
            server.base_url,
        )  # fmt: skip
        stored = sum(r["metadata"]["stream_id"].startswith("eeg:") for r in server.stored)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("target check failed") == 1  # 1 try + 1 retry, then the capture starts
    assert proc.stderr.count("does not answer") == 1 and proc.stderr.count("answers again") == 1
    assert stored == 25


def test_startup_check_with_the_api_down_starts_the_capture_spooled(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    root = tmp_path / "spool"
    t0 = time.monotonic()
    proc = collector(
        ["replay", str(MUSE_XDF), "--workspace", str(uuid.uuid4()), "--block", str(uuid.uuid4()),
         "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--flush-timeout", "2"],
        f"http://127.0.0.1:{port}",
    )  # fmt: skip
    took = time.monotonic() - t0
    assert proc.returncode == 6, proc.stderr  # captured, waiting in the spool
    assert proc.stderr.count("retrying in") == 1 and proc.stderr.count("does not answer") == 1
    assert "nothing was captured" not in proc.stderr
    assert len(rows_all(root)) == 26  # 25 EEG chunks and the session summary, all pending
    assert took < 60
    assert "Traceback" not in proc.stderr


@pytest.mark.lsl
def test_live_run_whose_chunks_are_rejected_for_good_exits_7_and_names_them(tmp_path):
    from collector.devices.player import XdfPlayer

    root = tmp_path / "spool"
    name = f"hostile-run-{uuid.uuid4().hex[:8]}"
    with HostileServer("validation") as server, XdfPlayer(MUSE_XDF, stream_name=name, source_id=name):
        proc = collector(
            ["run", "--workspace", server.workspace_id, "--block", server.block_id, "--stream-name", name,
             "--duration", "5", "--chunk-seconds", "2", "--screen", "off", "--spool", str(root)],
            server.base_url,
        )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lost = [line for line in proc.stderr.splitlines() if "DATA LOST" in line]
    assert len(lost) == 1 and f"of eeg:{name}" in lost[0] and "rejected for good" in lost[0], proc.stderr
    eeg = [x for x in status_json(root)["losses"] if x["stream_id"] == f"eeg:{name}"]
    assert len(eeg) == 1 and eeg[0]["reason"] == "failed" and eeg[0]["count"] >= 2
    assert f"{eeg[0]['count']} chunk(s) of eeg:{name}" in lost[0]  # the same count in both places
