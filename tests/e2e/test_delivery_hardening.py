# ruff: noqa: F811  (small_disk is a fixture imported from test_full_disk)
"""Review of issue 15 (delivery under hostile conditions), through the real commands.

Each test reproduces one finding of the review: a full disk (a real tmpfs, remounted bigger when
space "returns"), a damaged spool, the misbehaving server of tests/hostile.py, the sandbox.
Nothing saved is ever deleted; nothing delivered is ever sent twice.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from docs_text import docs_text
from test_full_disk import integrity_ok, small_disk  # noqa: F401 (fixture)
from test_hostile_delivery import KEY, MUSE_XDF, REPO, collector, rows_all, status_json

pytestmark = pytest.mark.slow


def grow(disk: Path, size: str) -> None:
    """Space comes back: the tmpfs is remounted bigger (nothing on it is touched)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True, capture_output=True)


def replay_onto_full_disk(sandbox, root: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = collector(
        ["replay", str(MUSE_XDF), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
         "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), "--offline", *extra],
        sandbox.base_url, key=sandbox.api_key,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    return proc


def sent_twice(sandbox) -> list[tuple[str, int]]:
    seen = collections.Counter(
        (r["metadata"]["stream_id"], r["chunk_index"]) for r in sandbox.evidence(sandbox.workspace_id)
    )
    return [key for key, n in seen.items() if n > 1]


# ---- 1. the record of a 201 is never lost: nothing is sent twice after a full disk ---------------------


def test_upload_on_a_disk_still_full_after_a_replay_never_sends_a_chunk_twice(sandbox, small_disk):
    disk = small_disk("900k")
    root = disk / "spool"
    replay_onto_full_disk(sandbox, root)  # the disk fills; its counts took the reserve's space at exit
    first = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    final = [line for line in first.stderr.splitlines() if line.startswith("collector:")]
    assert len(final) == 1 and "DISK FULL" in final[0], first.stderr
    sent = len(sandbox.evidence(sandbox.workspace_id))
    recorded = sum(state == "delivered" for _, _, state in rows_all(root))
    assert recorded == sent, "the server stored an item whose delivery the spool does not know"
    assert f"Delivered {sent} item(s), then stopped" in final[0]
    assert sum(c["delivered"] for c in status_json(root)["captures"]) == sent
    grow(disk, "8m")
    again = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert again.returncode == 0, again.stderr
    assert sent_twice(sandbox) == []
    assert len(sandbox.evidence(sandbox.workspace_id)) == len(rows_all(root))  # every item, once
    assert integrity_ok(root)


# ---- 4. doctor on a full disk: the fix is free disk space, not chown -----------------------------------


def test_doctor_on_a_full_disk_says_free_disk_space(sandbox, small_disk):
    from test_full_disk import fill
    from test_hostile_delivery import spool_eeg

    disk = small_disk("1m")
    root = disk / "spool"
    spool_eeg(root, sandbox.workspace_id, 2)
    fill(disk)
    proc = collector(["doctor", "--json", "--lsl-wait", "0.3", "--spool", str(root)], "http://127.0.0.1:9")
    assert "Traceback" not in proc.stderr
    (check,) = [c for c in json.loads(proc.stdout)["checks"] if c["name"] == "spool"]
    assert check["status"] == "fail" and "No space left" in check["detail"], check
    assert "Free disk space" in check["fix"] and "chown" not in check["fix"], check


# ---- 6. a damaged spool.db: every command exits 2 with the doctor's advice -------------------------------


@pytest.mark.parametrize("command", ["status", "upload", "sessions", "replay"])
def test_every_command_on_a_damaged_spool_exits_2_with_the_doctors_advice(tmp_path, command):
    root = tmp_path / "spool"
    root.mkdir(mode=0o700)
    junk = os.urandom(50_000)
    (root / "spool.db").write_bytes(junk)
    args = [command, "--spool", str(root)]
    if command == "replay":
        args += [str(MUSE_XDF), "--workspace", str(uuid.uuid4()), "--block", str(uuid.uuid4()), "--offline"]
    proc = collector(args, "http://127.0.0.1:9")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "is damaged" in last and f"mv {root} {root}.damaged" in last, last
    assert f"sqlite3 {root}.damaged/spool.db .recover" in last and "writable by you" not in last, last
    doctor = collector(["doctor", "--json", "--lsl-wait", "0.3", "--spool", str(root)], "http://127.0.0.1:9")
    (check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "spool"]
    assert check["status"] == "fail" and check["fix"] in last  # the same advice everywhere
    assert (root / "spool.db").read_bytes() == junk  # left as it was


# ---- 7. damaged bytes are caught by their checksum; set-aside items are not called rejected -----------


def test_a_blob_overwritten_with_junk_is_set_aside_not_sent(sandbox, tmp_path):
    import sqlite3

    from test_hostile_delivery import spool_eeg

    root = tmp_path / "spool"
    spool_eeg(root, sandbox.workspace_id, 4)
    con = sqlite3.connect(root / "spool.db")
    (item_id,) = con.execute("SELECT id FROM items WHERE chunk_index = 2").fetchone()
    con.execute("UPDATE blobs SET data = ? WHERE item_id = ?", (b"\x00\xff\x13", item_id))  # 3 junk bytes
    con.commit()
    con.close()
    proc = collector(["upload", "--spool", str(root)], sandbox.base_url, key=sandbox.api_key)
    assert proc.returncode == 7, proc.stderr
    assert "1 item(s) could not be read back" in proc.stderr.splitlines()[-1]
    assert sorted(r["chunk_index"] for r in sandbox.evidence(sandbox.workspace_id)) == [0, 1, 3]
    (loss,) = status_json(root)["losses"]
    assert loss["reason"] == "unreadable" and loss["chunks"] == [2] and "SHA-256" in loss["message"]
    text = collector(["status", "--spool", str(root)], "http://127.0.0.1:9").stdout
    assert "unreadable in the spool, set aside" in text and "rejected" not in text, text
    con = sqlite3.connect(root / "spool.db")  # kept, as it is, not deleted
    assert (
        con.execute("SELECT data FROM blobs WHERE item_id = ?", (item_id,)).fetchone()[0] == b"\x00\xff\x13"
    )
    con.close()


# ---- 2. a capture on a disk that filled still has its local record closed ------------------------------


def test_a_capture_whose_disk_filled_is_closed_in_sessions(sandbox, small_disk):
    disk = small_disk("900k")
    root = disk / "spool"
    proc = replay_onto_full_disk(sandbox, root)
    assert "local record not closed" not in proc.stderr
    ended = re.search(r"Replay ended: .*?([\d,]+) EEG samples in \d+ chunks \((\d+) markers\)", proc.stderr)
    samples, markers = int(ended[1].replace(",", "")), int(ended[2])
    assert samples > 20_000 and markers > 0  # the whole recording was read, though most was refused
    listed = collector(["sessions", "--spool", str(root), "--json"], "http://127.0.0.1:9")
    assert listed.returncode == 0, listed.stderr
    (session,) = json.loads(listed.stdout)
    assert session["state"] == "finished" and session["finished"] is True, session
    assert session["samples"] == samples and session["markers"] >= markers, session
    assert 115 <= session["duration_s"] <= 125, session  # the recording's 120 s, not the wall time
    assert session["started_at"] != session["captured_at"]  # the recording's start, not the replay's


# ---- 5. the start-up check with no answer: 2 tries 1-1.5 s apart, then the capture starts anyway ------


def test_startup_check_with_no_answer_starts_the_capture_after_2_tries(tmp_path):
    from hostile import HostileServer

    with HostileServer("ok") as server:
        server.blocks_fail = 100  # every target check meets a gateway's HTML page
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", server.workspace_id, "--block", server.block_id,
             "--speed", "max", "--spool", str(tmp_path / "spool"), "--flush-timeout", "1"],
            server.base_url,
        )  # fmt: skip
        gets = [t for method, _, t in server.requests if method == "GET"]
        posts = [t for method, _, t in server.requests if method == "POST"]
    assert proc.returncode == 6, proc.stderr  # captured, kept in the spool, nothing sent unchecked
    assert "Traceback" not in proc.stderr and not posts
    warned = [line for line in proc.stderr.splitlines() if "does not answer" in line]
    assert len(warned) == 1 and "HTTP 503" in warned[0] and "Capturing anyway" in warned[0]
    assert proc.stderr.count("retrying in") == 1  # 1 try + 1 retry at start-up
    assert 1.0 <= gets[1] - gets[0] <= 1.6  # a wait of 1 s plus jitter (README)
    readme = docs_text()
    assert "tried twice" in readme and "1–1.5 s" in readme


# ---- 8. smaller: the flush deadline holds, chunk indexes of refusals, agreeing counts, wording ----------


@pytest.mark.parametrize("mode", ["trickle", "429huge"])
def test_upload_flush_timeout_holds_within_a_second(tmp_path, mode):
    import time

    from hostile import HostileServer
    from test_hostile_delivery import spool_eeg

    root = tmp_path / "spool"
    spool_eeg(root, "00000000-0000-4000-8000-000000000000", 3)
    with HostileServer(mode) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "upload", "--spool", str(root), "--flush-timeout", "3",
             "--timeout", "30"],
            env={**os.environ, "OPENLESSON_API_KEY": KEY, "OPENLESSON_BASE_URL": server.base_url},
            cwd=REPO, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, err = proc.communicate(timeout=60)
        ended = time.monotonic()
        first_post = min(t for method, _, t in server.requests if method == "POST")
    assert proc.returncode == 6, err
    assert "the --flush-timeout was reached" in err
    assert ended - first_post <= 3 + 1.5, f"the 3 s flush took {ended - first_post:.1f} s"


def test_a_disk_full_replay_names_the_refused_chunks_and_its_counts_agree(sandbox, small_disk):
    disk = small_disk("900k")
    root = disk / "spool"
    proc = replay_onto_full_disk(sandbox, root)
    spooled = {idx for stream, idx, _ in rows_all(root) if stream.startswith("eeg:")}
    losses = status_json(root)["losses"]
    (eeg,) = [x for x in losses if x["stream_id"].startswith("eeg:")]
    assert eeg["reason"] == "disk_full" and eeg["chunks"] == sorted(set(range(25)) - spooled), eeg
    assert all(len(x["chunks"]) == x["count"] for x in losses), losses  # the summary's index too
    total = sum(x["count"] for x in losses)
    lost_line = next(line for line in proc.stderr.splitlines() if "DATA LOST" in line)
    said = sum(int(n) for n in re.findall(r"(\d+) chunk\(s\) of", lost_line))
    ended = next(line for line in proc.stderr.splitlines() if "Replay ended" in line)
    assert said == total and f"{total} item(s) NOT SAVED (disk full)" in ended, ended
    assert f"dropped={total} " in ended


def test_rejections_are_errors_in_one_sentence_and_v_names_each_delivered_chunk(tmp_path):
    from hostile import HostileServer

    with HostileServer("validation", then_ok_after=2) as server:
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", server.workspace_id, "--block", server.block_id,
             "--speed", "max", "--chunk-seconds", "5", "--spool", str(tmp_path / "spool"), "-v"],
            server.base_url,
        )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lines = proc.stderr.splitlines()
    rejected = [line for line in lines if "was rejected and kept in the spool" in line]
    assert len(rejected) == 2 and all(" ERROR " in line for line in rejected), rejected
    (lost,) = [line for line in lines if "DATA LOST" in line]
    assert "metadata is too large" in lost and ".." not in lost, lost
    delivered = [line for line in lines if " delivered: " in line]
    assert len(delivered) >= 20, proc.stderr
    named = re.compile(r"delivered: chunk \d+ of \S+ \(evidence ev-")
    assert all(named.search(line) for line in delivered), delivered
