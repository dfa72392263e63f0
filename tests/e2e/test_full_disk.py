"""A disk that fills, a damaged spool: through the real commands, nothing saved is ever deleted.

The full disk is a real one: a small tmpfs mounted for the test (root only; skipped cleanly where
mounting is not permitted). The spool-bound case needs no root: see test_hostile_delivery.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from test_hostile_delivery import MUSE_XDF, collector, rows_all, spool_eeg, status_json

from collector.delivery.spool import RESERVE_NAME, Spool

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """`make(size)` mounts a tmpfs of that size and returns its path; unmounted at teardown."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode})")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """Write a filler file until the disk is full, then give `leave_bytes` back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\xff" * 4096):
            pass
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave_bytes))
    return filler


def integrity_ok(root: Path) -> bool:
    con = sqlite3.connect(root / "spool.db")
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_replay_onto_a_disk_that_fills_exits_7_and_status_keeps_every_refusal(sandbox, small_disk):
    disk = small_disk("900k")
    root = disk / "spool"
    proc = collector(
        ["replay", str(MUSE_XDF), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
         "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--offline"],
        sandbox.base_url, key=sandbox.api_key,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert "Traceback" not in proc.stderr
    lost = [line for line in proc.stderr.splitlines() if "DATA LOST" in line]
    assert len(lost) == 1 and "the disk was full" in lost[0]
    spooled = sum(stream.startswith("eeg:") for stream, _, _ in rows_all(root))
    refused = 25 - spooled
    assert refused >= 5 and f"{refused} chunk(s) of eeg:" in lost[0]
    # Later, the disk still full: status reads the spool and shows every refusal, not only the
    # first one that could be written at the time.
    report = status_json(root)
    eeg = [loss for loss in report["losses"] if loss["stream_id"].startswith("eeg:")]
    assert [(loss["reason"], loss["count"]) for loss in eeg] == [("disk_full", refused)]
    assert report["pending"] == len(rows_all(root))  # nothing saved was deleted
    assert integrity_ok(root)


def test_upload_on_a_disk_that_fills_stops_in_one_line_and_records_the_201(sandbox, small_disk):
    disk = small_disk("2m")
    root = disk / "spool"
    capture = "cap-" + uuid.uuid4().hex[:6]
    saved = spool_eeg(root, sandbox.workspace_id, 6, capture_id=capture, samples=4000)
    assert (root / RESERVE_NAME).exists()
    filler = fill(disk, leave_bytes=48 * 1024)  # room to open the spool, not to record deliveries
    proc = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    final = [line for line in proc.stderr.splitlines() if line.startswith("collector:")]
    assert len(final) == 1 and "DISK FULL" in final[0], proc.stderr
    sent = len(sandbox.evidence(sandbox.workspace_id))
    assert sent >= 1 and f"Delivered {sent} item(s), then stopped" in final[0]  # never "0" once one went
    # The record of what the server stored was written (with the reserve's space) at exit...
    states = {idx: state for stream, idx, state in rows_all(root)}
    assert sum(state == "delivered" for state in states.values()) == sent
    filler.unlink()
    # ...so once space is back, nothing is sent twice and everything arrives.
    again = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert again.returncode == 0, again.stderr
    rows = sandbox.evidence(sandbox.workspace_id)
    assert sorted(r["chunk_index"] for r in rows) == sorted(saved), "a chunk was sent twice or lost"
    assert integrity_ok(root)


def test_an_unreadable_item_is_set_aside_and_the_rest_of_its_stream_flows(sandbox, tmp_path):
    root = tmp_path / "spool"
    saved = spool_eeg(root, sandbox.workspace_id, 5)
    con = sqlite3.connect(root / "spool.db")
    ids = [r[0] for r in con.execute("SELECT id FROM items ORDER BY chunk_index")]
    con.execute("UPDATE items SET request_json = '{broken' WHERE id = ?", (ids[1],))  # a damaged row
    con.execute("UPDATE blobs SET data = 'not bytes' WHERE item_id = ?", (ids[3],))  # a damaged blob
    con.commit()
    con.close()
    proc = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert proc.returncode == 7, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 item(s) could not be read back" in proc.stderr.splitlines()[-1]
    delivered = sorted(r["chunk_index"] for r in sandbox.evidence(sandbox.workspace_id))
    assert delivered == [0, 2, 4]  # the stream went on past the bad ones
    states = {idx: state for _, idx, state in rows_all(root)}
    assert states == {0: "delivered", 1: "failed", 2: "delivered", 3: "failed", 4: "delivered"}
    report = status_json(root)  # the reason is shown
    (loss,) = [x for x in report["losses"] if x["reason"] == "unreadable"]
    assert loss["count"] == 2 and loss["chunks"] == [1, 3] and "unreadable in the spool" in loss["message"]
    text = collector(["status", "--spool", str(root)], "http://127.0.0.1:9")
    assert "unreadable in the spool" in text.stdout
    con = sqlite3.connect(root / "spool.db")  # set aside, not deleted
    kept = con.execute("SELECT COUNT(*) FROM blobs WHERE item_id IN (?, ?)", (ids[1], ids[3])).fetchone()[0]
    con.close()
    assert kept == 2 and len(saved) == 5


def test_doctor_says_the_spool_is_not_ok_when_its_database_cannot_be_opened(tmp_path):
    root = tmp_path / "spool"
    root.mkdir(mode=0o700)
    (root / "spool.db").write_bytes(b"this is not an SQLite database, it was damaged" * 100)
    proc = collector(["doctor", "--json", "--lsl-wait", "0.3", "--spool", str(root)], "http://127.0.0.1:9")
    assert "Traceback" not in proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["spool"]["status"] == "fail", checks["spool"]
    assert "cannot be opened" in checks["spool"]["detail"] and "mv " in checks["spool"]["fix"]
    assert proc.returncode != 0
    assert (root / "spool.db").read_bytes().startswith(b"this is not")  # left as it was


def test_status_says_delivery_paused_once(sandbox, tmp_path):
    root = tmp_path / "spool"
    spool_eeg(root, sandbox.workspace_id, 2)
    bad = collector(["upload", "--spool", str(root)], sandbox.base_url, key="sk_wrong_" + uuid.uuid4().hex)
    assert bad.returncode == 3, bad.stderr
    with Spool(root) as spool:
        assert spool.pause_reason().startswith("Delivery paused")
    text = collector(["status", "--spool", str(root)], "http://127.0.0.1:9").stdout
    assert "Delivery paused" in text and "Delivery paused: Delivery paused" not in text


def test_delivery_resumes_by_itself_once_space_returns(sandbox, small_disk):
    """In a long run the uploader waits for space, writes the held record, then goes on."""
    import time

    from collector.api.settings import ApiKey, ApiSettings
    from collector.delivery.uploader import Uploader
    from collector.errors import SpoolFullError

    disk = small_disk("2m")
    root = disk / "spool"
    saved = spool_eeg(root, sandbox.workspace_id, 6, samples=4000)
    filler = fill(disk, leave_bytes=48 * 1024)
    settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key), timeout_s=10)
    with Spool(root) as spool:
        uploader = Uploader(spool, settings, rate_per_min=6000)
        uploader.start()
        try:
            deadline = time.monotonic() + 30
            while not isinstance(uploader.paused_error, SpoolFullError):
                assert time.monotonic() < deadline, "the full disk never stopped delivery"
                time.sleep(0.1)
            stopped_at = uploader.counters()["delivered"]
            assert stopped_at >= 1 and spool.pending_count() == 6 - stopped_at
            filler.unlink()  # space comes back
            deadline = time.monotonic() + 60
            while spool.pending_count() or uploader.paused_error is not None:
                assert time.monotonic() < deadline, uploader.counters()
                time.sleep(0.1)
        finally:
            uploader.stop(5)
        assert spool.held == 0
    rows = sandbox.evidence(sandbox.workspace_id)
    assert sorted(r["chunk_index"] for r in rows) == sorted(saved)  # each once: none sent twice
    assert {state for _, _, state in rows_all(root)} == {"delivered"}
