"""The durable spool: persistence across reopen, identity, byte bound, drops, disk full, modes."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest

from collector.delivery.spool import DuplicateChunkError, Spool
from collector.errors import SpoolError, SpoolFullError

WS = "0b7e2c1a-8f3d-4c5e-9a6b-1d2e3f4a5b6c"
BLOCK = "1c8f3d2b-9a4e-4d6f-8b7c-2e3f4a5b6c7d"


def eeg(i: int, capture: str = "cap-1", stream: str = "eeg:muse", **extra) -> dict:
    return {
        "type": "eeg",
        "mime_type": "application/json",
        "chunk_index": i,
        "timestamp_ms": 1_700_000_000_000 + i * 1000,
        "block_id": BLOCK,
        "metadata": {"capture_id": capture, "stream_id": stream, "collector_version": "test"},
        "band_powers": {"alpha": 0.25, "beta": 0.5},
        "device_name": "Muse",
        "sample_count": 256,
        **extra,
    }


def screen(i: int, capture: str = "cap-1", stream: str = "screen:1") -> dict:
    return {
        "type": "screen",
        "mime_type": "image/png",
        "chunk_index": i,
        "file_name": f"screen-{i}.png",
        "metadata": {"capture_id": capture, "stream_id": stream, "collector_version": "test"},
    }


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def test_item_carries_full_request_across_reopen(tmp_path):
    root = tmp_path / "spool"
    request = eeg(0)
    with Spool(root) as s:
        item_id = s.add(workspace_id=WS, evidence=request, data=b'{"samples": [1, 2, 3]}')
    with Spool(root) as s:  # a new process would see the same
        item = s.next_pending()
        assert item is not None and item.id == item_id
        assert item.request == request
        assert item.data == b'{"samples": [1, 2, 3]}'
        assert item.workspace_id == WS and item.block_id == BLOCK
        assert item.stream == ("cap-1", "eeg:muse") and item.chunk_index == 0
        assert s.pending_count() == 1


def test_oldest_first_and_stream_filters(spool):
    ids = [
        spool.add(workspace_id=WS, evidence=eeg(0), data=b"a"),
        spool.add(workspace_id=WS, evidence=screen(0), data=b"b"),
        spool.add(workspace_id=WS, evidence=eeg(1), data=b"c"),
        spool.add(workspace_id=WS, evidence=eeg(0, capture="cap-2"), data=b"d"),
    ]
    assert spool.next_pending().id == ids[0]
    assert spool.next_pending(exclude_streams={("cap-1", "eeg:muse")}).id == ids[1]
    assert spool.next_pending(exclude_streams={("cap-1", "eeg:muse"), ("cap-1", "screen:1")}).id == ids[3]
    assert spool.next_pending(stream=("cap-2", "eeg:muse")).id == ids[3]
    assert spool.next_pending(exclude_workspaces={WS}) is None
    assert spool.next_pending(exclude_blocks={BLOCK}).id == ids[1]  # the screenshot has no block
    spool.mark_delivered(ids[0], "ev-0")
    assert spool.next_pending().id == ids[1]


def test_backlog_bound_limits_the_search_to_what_was_waiting(spool):
    """`max_pending_id` marks what waits now; `up_to_id` keeps later items out (earlier captures first)."""
    assert spool.max_pending_id() == 0
    old = [spool.add(workspace_id=WS, evidence=eeg(i, capture="old"), data=b"o") for i in range(2)]
    backlog = spool.max_pending_id()
    assert backlog == old[-1]
    new = spool.add(workspace_id=WS, evidence=eeg(0, capture="new"), data=b"n")
    in_flight = {("old", "eeg:muse")}
    assert spool.next_pending(exclude_streams=in_flight).id == new  # without the bound: the new one
    assert spool.next_pending(exclude_streams=in_flight, up_to_id=backlog) is None  # with it: wait
    for item_id in old:
        spool.mark_delivered(item_id, f"ev-{item_id}")
    assert spool.next_pending(up_to_id=backlog) is None and spool.max_pending_id() == new


def test_delivered_keeps_a_small_record_and_purges_bytes(spool):
    item_id = spool.add(workspace_id=WS, evidence=eeg(0), data=b"x" * 5000)
    assert spool.stored_bytes() == 5000
    spool.mark_delivered(item_id, "ev-123")
    assert spool.stored_bytes() == 0
    assert spool.pending_count() == 0
    item = spool.get(item_id)
    assert item is not None and item.data == b""  # bytes purged
    row = spool._conn.execute("SELECT state, evidence_id FROM items WHERE id = ?", (item_id,)).fetchone()
    assert row == ("delivered", "ev-123")
    assert spool._conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0
    spool.mark_delivered(item_id, "ev-123")  # twice is harmless, counted once
    assert spool.stored_bytes() == 0
    [stats] = spool.stats()
    assert (stats.delivered, stats.pending, stats.bytes) == (1, 0, 0)


def test_failed_keeps_bytes_and_message_and_can_be_retried(spool):
    item_id = spool.add(workspace_id=WS, evidence=eeg(0), data=b"x" * 100)
    spool.record_attempt(item_id, "HTTP 503")
    spool.mark_failed(item_id, "validation_error: band_powers must be numbers")
    assert spool.pending_count() == 0 and spool.failed_count() == 1
    assert spool.stored_bytes() == 100  # nothing deleted
    [stats] = spool.stats()
    assert stats.failed == 1 and stats.last_error == "validation_error: band_powers must be numbers"
    assert spool.retry_failed() == 1
    assert spool.next_pending().id == item_id


def test_identity_is_unique_and_required(spool):
    spool.add(workspace_id=WS, evidence=eeg(3), data=b"a")
    with pytest.raises(DuplicateChunkError, match="chunk 3|Chunk 3"):
        spool.add(workspace_id=WS, evidence=eeg(3), data=b"b")
    spool.add(workspace_id=WS, evidence=eeg(3, capture="cap-2"), data=b"b")  # other capture: fine
    no_capture = eeg(4)
    no_capture["metadata"] = {"stream_id": "eeg:muse"}
    with pytest.raises(ValueError, match="capture_id"):
        spool.add(workspace_id=WS, evidence=no_capture, data=b"c")
    with pytest.raises(ValueError, match="chunk_index"):
        spool.add(workspace_id=WS, evidence={**eeg(0), "chunk_index": None}, data=b"c")
    with pytest.raises(ValueError, match="data"):
        spool.add(workspace_id=WS, evidence={**eeg(5), "data": "eA=="}, data=b"c")
    assert spool.pending_count() == 2


def test_screenshots_refused_first_eeg_until_the_bound(tmp_path):
    with Spool(tmp_path / "s", max_bytes=10_000) as s:
        for i in range(8):
            s.add(workspace_id=WS, evidence=screen(i), data=b"p" * 1000)
        s.add(workspace_id=WS, evidence=eeg(0), data=b"e" * 1000)  # 9000 of 10000
        with pytest.raises(SpoolFullError, match="SPOOL FULL.*screen chunk 8 of screen:1 was NOT saved"):
            s.add(workspace_id=WS, evidence=screen(8), data=b"p" * 1000)  # above 90%
        s.add(workspace_id=WS, evidence=eeg(1), data=b"e" * 1000)  # EEG still accepted: 10000
        with pytest.raises(SpoolFullError, match="EEG chunk 2 of eeg:muse was NOT saved"):
            s.add(workspace_id=WS, evidence=eeg(2), data=b"e")
        with pytest.raises(SpoolFullError, match="2 refused so far"):
            s.add(workspace_id=WS, evidence=screen(9), data=b"p")
        [stats] = s.stats()
        assert stats.dropped == 3 and stats.pending == 10 and stats.bytes == 10_000
        # Delivering frees room again.
        first = s.next_pending()
        s.mark_delivered(first.id, "ev")
        s.add(workspace_id=WS, evidence=eeg(2), data=b"e" * 1000)


def test_refusals_are_counted_per_capture_and_stream_and_persist(tmp_path):
    root = tmp_path / "s"
    with Spool(root, max_bytes=100) as s:
        for i in range(3):
            with pytest.raises(SpoolFullError):
                s.add(workspace_id=WS, evidence=screen(i, capture="cap-9"), data=b"p" * 500)
        s.record_drop("cap-9", "eeg:muse", "capture fell behind")
    with Spool(root, max_bytes=100) as s:
        [stats] = s.stats()
        assert stats.capture_id == "cap-9" and stats.dropped == 4 and stats.pending == 0
        assert stats.streams == ("eeg:muse", "screen:1")
        rows = s._conn.execute("SELECT stream_id, reason, count FROM drops ORDER BY stream_id").fetchall()
        assert rows == [("eeg:muse", "capture fell behind", 1), ("screen:1", "spool_full_screens_paused", 3)]


def test_full_disk_is_reported_loudly_and_counted(spool):
    spool.add(workspace_id=WS, evidence=eeg(0), data=b"e" * 100)
    # SQLite's page cap makes writes fail with SQLITE_FULL, exactly as a full disk does.
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(SpoolFullError, match="DISK FULL: chunk .* of eeg:muse was NOT saved"):
        for i in range(1, 50):
            spool.add(workspace_id=WS, evidence=eeg(i), data=os.urandom(8000))
    [stats] = spool.stats()
    assert stats.dropped >= 1
    assert spool.pending_count() == stats.pending  # nothing half-written
    for _ in range(stats.pending):
        item = spool.next_pending()
        assert len(item.data) in (100, 8000)
        spool.mark_delivered(item.id, "ev")


def test_files_are_private(tmp_path):
    root = tmp_path / "private"
    with Spool(root) as s:
        s.add(workspace_id=WS, evidence=screen(0), data=b"secret pixels")
        s.try_lock_delivery()
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        names = sorted(os.listdir(root))
        assert "spool.db" in names and "spool.db-wal" in names
        for name in names:
            assert stat.S_IMODE(os.stat(root / name).st_mode) == 0o600, name


def test_wal_mode_and_sync(spool):
    assert spool._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_delivery_lock_is_exclusive_across_openers(tmp_path):
    a, b = Spool(tmp_path / "s"), Spool(tmp_path / "s")
    try:
        assert a.try_lock_delivery()
        assert not b.try_lock_delivery()
        a.unlock_delivery()
        assert b.try_lock_delivery()
    finally:
        a.close()
        b.close()


def test_another_process_sees_items_while_open(tmp_path):
    root = tmp_path / "s"
    with Spool(root) as writer:
        writer.add(workspace_id=WS, evidence=eeg(0), data=b"a")
        conn = sqlite3.connect(root / "spool.db")
        try:
            assert conn.execute("SELECT COUNT(*) FROM items WHERE state = 'pending'").fetchone()[0] == 1
        finally:
            conn.close()


def test_concurrent_producers_and_consumer(spool):
    errors: list[BaseException] = []

    def produce(stream: str) -> None:
        try:
            for i in range(50):
                spool.add(workspace_id=WS, evidence=eeg(i, stream=stream), data=b"z" * 100)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(f"eeg:{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    delivered = 0
    while any(t.is_alive() for t in threads) or spool.pending_count():
        item = spool.next_pending()
        if item is not None:
            spool.mark_delivered(item.id, f"ev-{item.id}")
            delivered += 1
    for t in threads:
        t.join()
    assert not errors and delivered == 150 and spool.stored_bytes() == 0


def test_listener_called_after_add(spool):
    calls = []
    spool.add_listener(lambda: calls.append(spool.pending_count()))
    spool.add(workspace_id=WS, evidence=eeg(0), data=b"a")
    assert calls == [1]


def test_stats_per_capture(spool, monkeypatch):
    import collector.delivery.spool.store as spool_module

    now = [1_800_000_000_000]  # Unix ms, moved by hand: ages are exact
    monkeypatch.setattr(spool_module, "_now_ms", lambda: now[0])
    a0 = spool.add(workspace_id=WS, evidence=eeg(0, capture="old"), data=b"a" * 10)
    now[0] += 5_000
    spool.add(workspace_id=WS, evidence=eeg(1, capture="old"), data=b"a" * 20)
    now[0] += 10_000
    spool.add(workspace_id=WS, evidence=screen(0, capture="new"), data=b"a" * 30)
    spool.mark_delivered(a0, "ev")
    spool.record_attempt(a0 + 1, "HTTP 503: try later")
    now[0] += 42_500
    old, new = spool.stats()
    assert (old.capture_id, old.delivered, old.pending, old.bytes) == ("old", 1, 1, 20)
    # The oldest PENDING item's age (the delivered one is older and does not count).
    assert old.last_error == "HTTP 503: try later" and old.oldest_pending_age_s == pytest.approx(52.5)
    assert (new.capture_id, new.pending, new.bytes, new.last_error) == ("new", 1, 30, None)
    assert new.oldest_pending_age_s == pytest.approx(42.5)
    assert old.as_dict()["streams"] == ["eeg:muse"]


def test_closed_spool_refuses(tmp_path):
    s = Spool(tmp_path / "s")
    s.close()
    with pytest.raises(SpoolError, match="closed"):
        s.add(workspace_id=WS, evidence=eeg(0), data=b"a")
    s.close()  # idempotent


def test_unwritable_location_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match="Cannot open the spool"):
        Spool(blocker / "spool")


def test_compact_gives_space_back_and_prune_forgets_old_records(tmp_path):
    with Spool(tmp_path / "s") as s:
        ids = [s.add(workspace_id=WS, evidence=screen(i), data=os.urandom(100_000)) for i in range(20)]
        files = [tmp_path / "s" / "spool.db", tmp_path / "s" / "spool.db-wal"]
        big = sum(os.path.getsize(f) for f in files)
        for item_id in ids:
            s.mark_delivered(item_id, f"ev-{item_id}")
        s.compact()
        small = os.path.getsize(tmp_path / "s" / "spool.db") + os.path.getsize(
            tmp_path / "s" / "spool.db-wal"
        )
        assert small < big / 5
        assert s.prune_delivered(older_than_s=3600) == 0  # recent records are kept
        assert s.prune_delivered(older_than_s=-1) == 20
        assert s.stats() == []


def test_status_command_table_and_json(tmp_path, capsys):
    import json

    from collector.cli import main

    root = tmp_path / "s"
    with Spool(root, max_bytes=2500) as s:
        first = s.add(workspace_id=WS, evidence=eeg(0, capture="cap-a"), data=b"e" * 1000)
        s.add(workspace_id=WS, evidence=eeg(1, capture="cap-a"), data=b"e" * 1000)
        s.mark_delivered(first, "ev-1")
        s.record_attempt(first + 1, "HTTP 503: try later")
        with pytest.raises(SpoolFullError):
            s.add(workspace_id=WS, evidence=screen(0, capture="cap-a"), data=b"p" * 2000)
        s.set_pause_reason("Delivery paused: key_revoked")
    assert main(["status", "--spool", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 pending, 0 failed, 1.0 KB held" in out and "Delivery paused: key_revoked" in out
    row = next(line for line in out.splitlines() if line.startswith("cap-a"))
    assert row.split()[1:6] == ["1", "1", "0", "1", "1.0"] and row.endswith("HTTP 503: try later")
    assert f"collector upload --spool {root}" in out
    assert main(["status", "--spool", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [cap] = report["captures"]
    assert (cap["delivered"], cap["pending"], cap["dropped"], cap["bytes"]) == (1, 1, 1, 1000)
    assert main(["status", "--spool", str(tmp_path / "none")]) == 0
    assert "nothing captured yet" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
