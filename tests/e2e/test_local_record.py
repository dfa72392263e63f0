"""The local record of each capture (collector/delivery/local_record.py) in the real spool, and `sessions`."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from collector.delivery.local_record import CaptureInfo
from collector.delivery.spool import Spool

WS = "a3090000-0000-4000-8000-000000000001"
ROOT = Path(__file__).resolve().parents[2]
MUSE_XDF = ROOT / "collector" / "data" / "muse-p300-subject1.xdf"


def eeg(capture: str, i: int, stream: str = "eeg:muse") -> dict:
    return {"type": "eeg", "mime_type": "application/json", "chunk_index": i, "timestamp_ms": 1000 * i,
            "metadata": {"capture_id": capture, "stream_id": stream, "collector_version": "t"}}  # fmt: skip


def shot(capture: str, i: int) -> dict:
    return {"type": "screen", "mime_type": "image/png", "chunk_index": i, "timestamp_ms": 1000 * i,
            "metadata": {"capture_id": capture, "stream_id": "screen:1", "collector_version": "t",
                         "paused_periods": [[1, 2]]}}  # fmt: skip


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def begin(spool: Spool, capture: str, retention_days: float = 30) -> None:
    spool.record.begin_capture(CaptureInfo(capture_id=capture, kind="run", started_ms=1, workspace_id=WS,
                                           block_id=None, retention_days=retention_days))  # fmt: skip


def deliver_all(spool: Spool) -> None:
    while (item := spool.next_pending()) is not None:
        spool.mark_delivered(item.id, f"ev-{item.id}")


def test_delivered_items_are_kept_eeg_as_sent_screenshots_reduced(tmp_path):
    with Spool(tmp_path / "s") as spool:
        begin(spool, "c1")
        payload = json.dumps({"samples": [[1.5, 2.5]] * 100}).encode()
        spool.add(workspace_id=WS, evidence=eeg("c1", 0), data=payload)
        spool.add(workspace_id=WS, evidence=shot("c1", 0), data=png(1920, 1080))
        deliver_all(spool)
        assert spool.stored_bytes() == 0  # delivered: the spool's own bytes are purged
        kept = {a.type: a for a in spool.record.artifacts("c1")}
        assert kept["eeg"].data == payload and kept["eeg"].delivered
        img = Image.open(io.BytesIO(kept["screen"].data))
        assert img.size == (400, 225) and kept["screen"].mime_type == "image/webp"
        assert kept["screen"].metadata["paused_periods"] == [[1, 2]]
        assert 0 < spool.record.record_bytes() < len(payload) + 30_000
    root = tmp_path / "s"
    for name in os.listdir(root):  # the record lives in the spool's owner-only files
        assert stat.S_IMODE(os.stat(root / name).st_mode) == 0o600


def kept_eeg(root: Path, n: int) -> bytes:
    """A spool at `root` with n EEG chunks of capture c1 spooled and delivered (so kept); their
    shared payload."""
    payload = json.dumps({"samples": [[1.5, 2.5]] * 1000}).encode()
    with Spool(root) as spool:
        begin(spool, "c1")
        for i in range(n):
            spool.add(workspace_id=WS, evidence=eeg("c1", i), data=payload)
        deliver_all(spool)
    return payload


def test_eeg_is_kept_as_zstandard_and_a_copy_kept_as_zlib_before_it_still_reads(tmp_path):
    """Kept EEG copies are Zstandard frames with a checksum (issue 23); records kept earlier hold
    zlib copies, which still read back; a damaged copy of either kind is reported, not raised."""
    import sqlite3
    import zlib

    payload = kept_eeg(tmp_path / "s", 4)
    conn = sqlite3.connect(tmp_path / "s" / "spool.db")
    rows = conn.execute("SELECT item_id, encoding, data FROM record ORDER BY chunk_index").fetchall()
    assert [r[1] for r in rows] == ["zstd"] * 4 and rows[0][2][:4] == b"\x28\xb5\x2f\xfd"  # zstd magic
    with conn:
        conn.execute(
            "UPDATE record SET encoding = 'zlib', data = ? WHERE item_id = ?",
            (zlib.compress(payload), rows[1][0]),
        )
        conn.execute("UPDATE record SET data = ? WHERE item_id = ?", (rows[2][2][:-3] + b"abc", rows[2][0]))
        conn.execute("UPDATE record SET encoding = 'zlib', data = ? WHERE item_id = ?", (b"junk", rows[3][0]))
    conn.close()
    with Spool(tmp_path / "s") as spool:
        kept = list(spool.record.artifacts("c1"))
    assert [a.data == payload for a in kept] == [True, True, False, False]
    assert [bool(a.damaged) for a in kept] == [False, False, True, True]


def _claiming_size(frame: bytes, size: int) -> bytes:
    """The Zstandard `frame` with its header's content size field rewritten as 8 bytes holding `size`
    (RFC 8878 3.1.1.1: descriptor, optional window byte, dictionary id, content size)."""
    fhd = frame[4]
    single_segment, dict_len = (fhd >> 5) & 1, (0, 1, 2, 4)[fhd & 3]
    start = 5 + (0 if single_segment else 1) + dict_len
    old_len = ((1 if single_segment else 0), 2, 4, 8)[fhd >> 6]
    return (
        frame[:4]
        + bytes([fhd | 0xC0])
        + frame[5:start]
        + size.to_bytes(8, "little")
        + frame[start + old_len :]
    )


def test_a_kept_copy_whose_header_claims_a_huge_size_is_damaged_not_a_memory_error(tmp_path):
    """A damaged Zstandard header can claim any content size, which python-zstandard allocates at
    once (MemoryError for 1 TiB): that copy is reported damaged and the others still read, as a
    damaged zlib copy always was (`collector review`/`export` once failed whole on it)."""
    import sqlite3

    payload = kept_eeg(tmp_path / "s", 3)
    conn = sqlite3.connect(tmp_path / "s" / "spool.db")
    rows = conn.execute("SELECT item_id, data FROM record ORDER BY chunk_index").fetchall()
    with conn:
        conn.execute(
            "UPDATE record SET data = ? WHERE item_id = ?", (_claiming_size(rows[1][1], 1 << 40), rows[1][0])
        )
    conn.close()
    with Spool(tmp_path / "s") as spool:
        kept = list(spool.record.artifacts("c1"))
    assert [a.data == payload for a in kept] == [True, False, True]
    assert [bool(a.damaged) for a in kept] == [False, True, False]


def test_a_screenshot_spooled_with_its_small_copy_keeps_that_copy_and_counts_it(tmp_path):
    from collector.core.screen_copy import copy_of_image

    big = png(1920, 1080)
    made = copy_of_image(Image.new("RGB", (1920, 1080), (20, 160, 60)))  # not the png's colour
    with Spool(tmp_path / "s") as spool:
        begin(spool, "c1")
        spool.add(workspace_id=WS, evidence=shot("c1", 0), data=big, local_copy=made)
        assert spool.stored_bytes() == len(big) + len(made)  # the copy counts in the bound
        (waiting,) = spool.record.artifacts("c1")  # not delivered yet: read as that copy too
        assert not waiting.delivered and waiting.data == made and waiting.mime_type == "image/webp"
        deliver_all(spool)
        assert spool.stored_bytes() == 0
        (kept,) = spool.record.artifacts("c1")
        # The copy made at capture is kept as it is: the delivered bytes were not decoded again.
        assert kept.data == made and kept.mime_type == "image/webp"
        assert Image.open(io.BytesIO(kept.data)).getpixel((10, 10))[1] > 120


def test_a_spool_made_before_small_copies_gets_the_column_and_its_items_still_reduce(tmp_path):
    import sqlite3

    root = tmp_path / "s"
    with Spool(root) as spool:
        begin(spool, "c1")
        spool.add(workspace_id=WS, evidence=shot("c1", 0), data=png(800, 450))
    conn = sqlite3.connect(root / "spool.db")
    conn.execute("ALTER TABLE blobs DROP COLUMN local_copy")  # as an older collector made it
    conn.commit()
    conn.close()
    with Spool(root) as spool:
        deliver_all(spool)
        (kept,) = spool.record.artifacts("c1")
        assert Image.open(io.BytesIO(kept.data)).size == (400, 225)  # made from the bytes instead


def test_retention_zero_keeps_nothing(tmp_path):
    with Spool(tmp_path / "s") as spool:
        begin(spool, "private", retention_days=0)
        spool.add(workspace_id=WS, evidence=eeg("private", 0), data=b"{}")
        spool.add(workspace_id=WS, evidence=shot("private", 0), data=png(64, 64))
        deliver_all(spool)
        assert list(spool.record.artifacts("private")) == []
        assert spool.record.record_bytes() == 0
        blobs = spool._conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
        assert blobs == 0


def test_prune_drops_items_older_than_their_capture_retention(tmp_path):
    with Spool(tmp_path / "s") as spool:
        begin(spool, "short", retention_days=1)
        begin(spool, "long", retention_days=30)
        for cap in ("short", "long"):
            spool.add(workspace_id=WS, evidence=eeg(cap, 0), data=b"x" * 100)
        deliver_all(spool)
        now = spool._conn.execute("SELECT MAX(kept_ms) FROM record").fetchone()[0]
        assert spool.record.prune(now + 2 * 86_400_000) == 1
        assert [a.capture_id for a in spool.record.artifacts("long")] == ["long"]
        assert list(spool.record.artifacts("short")) == []
        [(size,)] = spool._conn.execute("SELECT size_bytes FROM record").fetchall()
        assert spool.record.record_bytes() == size


def test_record_counts_in_the_bound_and_goes_first(tmp_path):
    with Spool(tmp_path / "s", max_bytes=100_000) as spool:
        begin(spool, "old")
        for i in range(8):  # incompressible, so the record holds ~80 kB
            spool.add(workspace_id=WS, evidence=eeg("old", i), data=os.urandom(10_000))
        deliver_all(spool)
        held = spool.record.record_bytes()
        assert held > 70_000
        # 40 kB of new pending evidence: the record makes room instead of the spool refusing.
        for i in range(4):
            spool.add(workspace_id=WS, evidence=eeg("new", i), data=os.urandom(10_000))
        assert spool.pending_count() == 4
        assert spool.record.record_bytes() + spool.stored_bytes() <= 100_000
        kept = [a.chunk_index for a in spool.record.artifacts("old")]
        assert kept and kept == list(range(8 - len(kept), 8))  # the oldest went first
        assert spool.stats()[-1].dropped == 0


def test_session_summary_waits_until_the_rest_of_its_capture_is_settled(tmp_path):
    with Spool(tmp_path / "s") as spool:
        spool.add(workspace_id=WS, evidence=eeg("c", 0), data=b"{}")
        spool.add(workspace_id=WS, evidence=eeg("c", 0, stream="session-summary"), data=b"{}")
        spool.add(workspace_id=WS, evidence=eeg("c", 1), data=b"{}")  # a late chunk, spooled after it
        first = spool.next_pending()
        assert first.stream_id == "eeg:muse"
        # Another worker, with eeg:muse in flight, must not take the summary yet.
        assert spool.next_pending(exclude_streams=[("c", "eeg:muse")]) is None
        spool.mark_delivered(first.id, "e0")
        second = spool.next_pending()
        assert (second.stream_id, second.chunk_index) == ("eeg:muse", 1)
        spool.mark_failed(second.id, "validation_error")  # settled: the summary may go now
        assert spool.next_pending().stream_id == "session-summary"


def collector(args: list[str], env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], env=env or dict(os.environ), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_sessions_lists_a_replay_and_retention_zero_keeps_nothing(sandbox, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    spool = tmp_path / "spool"
    private = tmp_path / "private.toml"
    private.write_text("[delivery]\nretention_days = 0\n")
    for profile in (None, str(private)):
        proc = collector(
            ["replay", str(MUSE_XDF), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
             "--speed", "max", "--spool", str(spool)] + (["--profile", profile] if profile else []),
            env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    listing = collector(["sessions", "--json", "--spool", str(spool)], env)
    assert listing.returncode == 0, listing.stderr
    kept, private_run = json.loads(listing.stdout)
    rows = sandbox.evidence(sandbox.workspace_id)
    rows = [r for r in rows if r["metadata"]["capture_id"] == kept["capture_id"]]
    assert kept["kind"] == "replay" and kept["source"] == "file muse-p300-subject1.xdf"
    assert kept["workspace_id"] == sandbox.workspace_id and kept["block_id"] == sandbox.block_ids[0]
    assert kept["delivered"] == len(rows) and kept["pending"] == 0 and kept["failed"] == 0
    assert kept["samples"] == 30732 and kept["markers"] == 197 and kept["screenshots"] == 0
    started = datetime.fromisoformat(kept["started_at"])
    assert started.utcoffset() is not None  # local time, with its offset
    assert abs(started.timestamp() * 1000 - rows[0]["timestamp_ms"]) < 1000  # the recording's own time
    assert kept["duration_s"] == pytest.approx(120.0, abs=1.0)
    assert kept["kept_items"] == len(rows)  # every delivered item, summary included
    assert private_run["retention_days"] == 0 and private_run["kept_items"] == 0
    assert private_run["delivered"] == kept["delivered"]
    table = collector(["sessions", "--spool", str(spool)], env)
    assert kept["capture_id"] in table.stdout and "replay" in table.stdout
    # Nothing of the private capture can be read back, and the message says why and what to change.
    for args in (
        ["review", private_run["capture_id"][:8]],
        ["export", private_run["capture_id"], "--format", "csv", "--out", str(tmp_path / "p.csv")],
    ):
        proc = collector([*args, "--spool", str(spool)], env)
        assert proc.returncode == 2 and "retention_days = 0" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "p.csv").exists()


def test_sessions_on_an_empty_spool(tmp_path):
    proc = collector(["sessions", "--json", "--spool", str(tmp_path / "none")])
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    proc = collector(["sessions", "--spool", str(tmp_path / "none")])
    assert proc.returncode == 0 and "No captures" in proc.stdout


def test_a_full_disk_takes_the_record_before_refusing_evidence(tmp_path):
    with Spool(tmp_path / "s") as spool:
        begin(spool, "old")
        for i in range(6):
            spool.add(workspace_id=WS, evidence=eeg("old", i), data=os.urandom(20_000))
        deliver_all(spool)
        assert spool.record.record_bytes() > 100_000
        # SQLite's page cap makes writes fail with SQLITE_FULL, exactly as a full disk does.
        pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
        spool._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        for i in range(4):  # 80 kB more than the file can grow: the record's pages are reused
            spool.add(workspace_id=WS, evidence=eeg("new", i), data=os.urandom(20_000))
        assert spool.pending_count() == 4
        assert spool.record.record_bytes() == 0
        assert all(s.dropped == 0 for s in spool.stats())


def test_sessions_show_what_was_lost(tmp_path):
    with Spool(tmp_path / "s") as spool:
        begin(spool, "lossy")
        spool.add(workspace_id=WS, evidence=eeg("lossy", 0), data=b"{}")
        spool.record_drop("lossy", "screen:1", "spool_full_screens_paused")
        spool.record.end_capture("lossy", 2, {"samples": 10})
    proc = collector(["sessions", "--json", "--spool", str(tmp_path / "s")])
    [row] = json.loads(proc.stdout)
    assert row["lost"] == [{"stream_id": "screen:1", "reason": "spool_full_screens_paused", "count": 1}]
    assert row["pending"] == 1 and row["samples"] == 10 and row["finished"]
    table = collector(["sessions", "--spool", str(tmp_path / "s")]).stdout
    assert "1 chunk(s) of screen:1 not saved: the spool was over 90 %" in table


def test_review_reads_items_still_in_the_spool_at_the_record_size(tmp_path):
    from collector.review.page import load_review

    with Spool(tmp_path / "s") as spool:
        begin(spool, "waiting")
        spool.add(workspace_id=WS, evidence=shot("waiting", 0), data=png(1920, 1080))
        data = load_review(spool, {"capture_id": "waiting"})
        [(t, mime, image)] = data.shots
        assert t == 0 and mime == "image/webp" and Image.open(io.BytesIO(image)).size == (400, 225)
        assert data.paused == [(1, 2)] and spool.pending_count() == 1  # reading changes nothing
