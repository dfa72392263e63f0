"""Issue 20: a session that starts while the API is down, targets checked later, no account at all.

Every test drives the real `collector` CLI as a subprocess against the real sandbox on loopback;
"the API is down" is a port where nothing listens yet, on which the sandbox then starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import REPO, cli_env, collector, spool_items, start_collector

MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def down_sandbox(sandbox_factory, tmp_path, name="api"):
    """A sandbox made (keys, workspace) on a fixed port, not serving yet: the API is down."""
    return sandbox_factory(tmp_path / name, port=free_port(), start=False)


def replay_args(root: Path, *extra: str) -> list[str]:
    return ["replay", str(MUSE_XDF), "--speed", "max", "--chunk-seconds", "5", "--spool", str(root), *extra]


def wait_for(proc: subprocess.Popen, text: str, timeout_s: float = 30.0) -> list[str]:
    """Lines of the process's stderr up to (and with) the first one containing `text`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not seen; stderr so far:\n{''.join(lines)}")


def finish(proc: subprocess.Popen, timeout_s: float = 90.0) -> str:
    _out, err = proc.communicate(timeout=timeout_s)
    return err


def status(root: Path) -> dict:
    proc = collector(["status", "--json", "--spool", str(root)], cli_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def eeg_rows(server, block_id=None) -> list[dict]:
    rows = server.evidence(server.workspace_id)
    return [r for r in rows if block_id is None or r["block_id"] == block_id]


# ---- 1. the API is down at start, then comes up ---------------------------------------------------


def test_replay_started_while_the_api_is_down_is_delivered_to_its_block_once_it_answers(
    sandbox_factory, tmp_path
):
    server = down_sandbox(sandbox_factory, tmp_path)
    root = tmp_path / "spool"
    block = server.block_ids[1]
    proc = start_collector(replay_args(root, "-w", server.workspace_id, "-b", block), cli_env(server))
    seen = wait_for(proc, "does not answer")
    assert "Capturing anyway into the spool" in seen[-1] and "WARNING" in seen[-1]
    seen += wait_for(proc, "the recording is read")  # the whole file spooled, nothing sent
    assert len(spool_items(root)) >= 25, "the capture started and spooled while the API was down"
    server.start()
    err = "".join(seen) + finish(proc)
    assert proc.returncode == 0, err
    assert err.count("does not answer") == 1, err  # one warning, not one per retry
    assert err.count("answers again") == 1, err
    rows = eeg_rows(server)
    items = spool_items(root)
    assert rows and len(rows) == len(items)  # every item arrived...
    assert {r["block_id"] for r in rows} == {block}  # ...in the block asked for
    assert status(root)["pending"] == 0


def test_a_title_given_while_the_api_is_down_resolves_it_before_sending(sandbox_factory, tmp_path):
    server = down_sandbox(sandbox_factory, tmp_path)
    title = server.blocks()[2]["title"]
    root = tmp_path / "spool"
    proc = start_collector(replay_args(root, "-w", server.workspace_id, "-b", title.upper()), cli_env(server))
    seen = wait_for(proc, "does not answer")
    seen += wait_for(proc, "the recording is read")
    pending = [r for r in spool_items(root) if r["state"] == "pending"]
    assert pending, "items spooled under the title"
    server.start()
    err = "".join(seen) + finish(proc)
    assert proc.returncode == 0, err
    assert f"block {title!r} is {server.block_ids[2]}" in err, err
    rows = eeg_rows(server)
    assert rows and {r["block_id"] for r in rows} == {server.block_ids[2]}


def test_an_unknown_title_found_later_keeps_the_items_and_exits_4(sandbox_factory, tmp_path):
    server = down_sandbox(sandbox_factory, tmp_path)
    title = server.blocks()[1]["title"]
    root = tmp_path / "spool"
    proc = start_collector(replay_args(root, "-w", server.workspace_id, "-b", title + "x"), cli_env(server))
    seen = wait_for(proc, "does not answer")
    seen += wait_for(proc, "the recording is read")
    server.start()
    err = "".join(seen) + finish(proc)
    assert proc.returncode == 4, err
    assert f"Did you mean {title!r}?" in err, err
    assert "kept in the spool" in err
    assert server.evidence(server.workspace_id) == []  # nothing sent to a guessed block
    items = spool_items(root)
    assert items and all(r["state"] == "pending" for r in items)  # kept, never deleted
    # `collector upload` says the same, and keeps them too
    up = collector(["upload", "--spool", str(root)], cli_env(server))
    assert up.returncode == 4, up.stderr
    assert "Did you mean" in up.stderr
    assert len(spool_items(root)) == len(items)


def test_offline_replay_with_a_title_is_resolved_by_upload(sandbox, tmp_path):
    root = tmp_path / "spool"
    title = sandbox.blocks()[3]["title"]
    proc = collector(
        replay_args(root, "-w", sandbox.workspace_id, "-b", title, "--offline"), cli_env(sandbox)
    )
    assert proc.returncode == 0, proc.stderr
    assert sandbox.evidence(sandbox.workspace_id) == []
    up = collector(["upload", "--spool", str(root)], cli_env(sandbox))
    assert up.returncode == 0, up.stderr
    rows = eeg_rows(sandbox)
    assert rows and {r["block_id"] for r in rows} == {sandbox.block_ids[3]}


# ---- the key's scope -------------------------------------------------------------------------------


def test_a_read_only_key_exits_3_before_capturing_and_doctor_says_so(sandbox, tmp_path):
    root = tmp_path / "spool"
    env = cli_env(sandbox, key=sandbox.keys["read_only"])
    proc = collector(replay_args(root, "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0]), env)
    assert proc.returncode == 3, proc.stderr
    assert "workspaces:write" in proc.stderr
    assert not (root / "spool.db").exists() or not spool_items(root)  # nothing captured
    doc = collector(["doctor", "-w", sandbox.workspace_id], env)
    assert "workspaces:write" in doc.stdout + doc.stderr, doc.stdout
    assert doc.returncode == 3


# ---- the API dies mid-run and comes back -----------------------------------------------------------


@pytest.mark.slow  # ~60 s: a replay paced at 8x, an outage, the backlog
def test_an_api_that_dies_mid_run_and_comes_back_is_said_once_each_way(sandbox_factory, tmp_path):
    server = sandbox_factory(tmp_path / "api", port=free_port())
    root = tmp_path / "spool"
    proc = start_collector(
        ["replay", str(MUSE_XDF), "--speed", "8", "--chunk-seconds", "2", "--spool", str(root),
         "-w", server.workspace_id, "-b", server.block_ids[0]],
        cli_env(server),
    )  # fmt: skip
    seen = wait_for(proc, "capturing")
    deadline = time.monotonic() + 30
    while not server.evidence(server.workspace_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.evidence(server.workspace_id), "delivering before the outage"
    port, data = server.port, server.data_dir
    server.stop()  # the API dies
    seen += wait_for(proc, "does not answer", timeout_s=30)
    time.sleep(3.0)
    again = sandbox_factory(data, port=port)  # the same API comes back on the same port
    err = "".join(seen) + finish(proc, timeout_s=120)
    assert proc.returncode == 0, err
    assert err.count("does not answer") == 1, err
    assert err.count("answers again") == 1, err
    items = spool_items(root)
    assert len(again.evidence(again.workspace_id)) >= len(items)  # every item arrived
    assert status(root)["pending"] == 0


# ---- 2. no account: --local, spool drop / retarget, a read-only spool -------------------------------


def test_local_replay_keeps_the_capture_for_review_and_export_and_leaves_nothing_pending(tmp_path):
    root = tmp_path / "spool"
    env = cli_env()
    env.pop("OPENLESSON_API_KEY", None)
    proc = collector(replay_args(root, "--local"), env)
    assert proc.returncode == 0, proc.stderr
    assert "Kept on this machine only" in proc.stderr
    report = status(root)
    assert report["pending"] == 0 and report["captures"][0]["local"] > 0
    sessions = collector(["sessions", "--json", "--spool", str(root)], env)
    (session,) = json.loads(sessions.stdout)
    assert session["samples"] > 0 and session["pending"] == 0
    page = collector(["review", "--last", "--spool", str(root), "--out", str(tmp_path / "r.html")], env)
    assert page.returncode == 0, page.stderr
    out = tmp_path / "e.csv"
    exp = collector(["export", "--last", "--format", "csv", "--out", str(out), "--spool", str(root)], env)
    assert exp.returncode == 0, exp.stderr
    assert len(out.read_text().splitlines()) > 1000
    # --offline with no workspace is the same
    off = collector(replay_args(tmp_path / "spool2", "--offline"), env)
    assert off.returncode == 0, off.stderr
    assert status(tmp_path / "spool2")["pending"] == 0


def test_a_block_without_a_workspace_is_refused_not_dropped_unless_a_workspace_is_configured(
    sandbox, tmp_path
):
    env = cli_env(sandbox)
    env.pop("COLLECTOR_WORKSPACE", None)
    # --offline with no workspace is --local, which would drop the block: refused, as `--local -b` is
    for command in (
        replay_args(tmp_path / "r", "--offline", "-b", "Core"),
        ["run", "--offline", "-b", "Core", "--duration", "1", "--spool", str(tmp_path / "l")],
    ):
        proc = collector(command, env)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "--block Core needs a workspace" in line and "add --workspace" in line
        assert "drop --block" in line
        assert not (tmp_path / command[command.index("--spool") + 1] / "spool.db").exists()  # nothing kept
    # `run` without --offline refuses it too (no workspace to check the block in)
    live = collector(["run", "-b", "Core", "--duration", "1", "--spool", str(tmp_path / "l")], env)
    assert live.returncode == 2 and "No workspace: pass --workspace" in live.stderr, live.stderr
    # a workspace configured in the environment makes -b alone fine: spooled for it, block kept
    root = tmp_path / "spool"
    title = sandbox.blocks()[2]["title"]
    ok = collector(
        replay_args(root, "--offline", "-b", title), {**env, "COLLECTOR_WORKSPACE": sandbox.workspace_id}
    )
    assert ok.returncode == 0, ok.stderr
    assert status(root)["pending"] > 0
    up = collector(["upload", "--spool", str(root)], cli_env(sandbox))
    assert up.returncode == 0, up.stderr
    rows = eeg_rows(sandbox)
    assert rows and {r["block_id"] for r in rows} == {sandbox.block_ids[2]}


def test_spool_drop_and_retarget_through_the_cli(sandbox, tmp_path):
    root = tmp_path / "spool"
    made_up = "0b0e5d6f-2c7a-4f6e-9a51-6a3d2f1e7c10"
    env = cli_env(sandbox)
    for _ in range(2):
        proc = collector(replay_args(root, "-w", made_up, "--offline"), env)
        assert proc.returncode == 0, proc.stderr
    first, second = (c["capture_id"] for c in status(root)["captures"])
    n_first = status(root)["captures"][0]["pending"]
    # without a terminal and without --yes: refused, nothing changed
    refused = collector(["spool", "drop", first, "--spool", str(root)], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert status(root)["captures"][0]["pending"] == n_first
    dropped = collector(["spool", "drop", first[:8], "--yes", "--spool", str(root)], env)
    assert dropped.returncode == 0, dropped.stderr
    assert f"Dropped {n_first} item(s)" in dropped.stderr
    assert status(root)["captures"][0]["pending"] == 0
    # retarget: a wrong block title is refused with the did-you-mean line, nothing moves
    title = sandbox.blocks()[0]["title"]
    bad = collector(["spool", "retarget", second, "-w", sandbox.workspace_id, "-b", title + "!", "--spool",
                     str(root)], env)  # fmt: skip
    assert bad.returncode == 4 and "Did you mean" in bad.stderr, bad.stderr
    moved = collector(["spool", "retarget", second, "-w", sandbox.workspace_id, "-b", title, "--spool",
                       str(root)], env)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    up = collector(["upload", "--spool", str(root)], env)
    assert up.returncode == 0, up.stderr
    rows = eeg_rows(sandbox)
    assert rows and {r["block_id"] for r in rows} == {sandbox.block_ids[0]}
    assert status(root)["pending"] == 0
    ro = collector(["spool", "retarget", second, "-w", sandbox.workspace_id, "--spool", str(root)],
                   cli_env(sandbox, key=sandbox.keys["read_only"]))  # fmt: skip
    assert ro.returncode == 3, ro.stderr  # the new target is checked like the start-up check


def _read_only_bind(src: Path, dst: Path) -> bool:
    dst.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    if subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode:
        return False
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], capture_output=True).returncode:
        subprocess.run(["umount", str(dst)])
        return False
    return True


def test_a_read_only_spool_copy_is_read_by_status_sessions_review_and_export(sandbox, tmp_path):
    root = tmp_path / "spool"
    proc = collector(replay_args(root, "-w", sandbox.workspace_id, "--offline"), cli_env(sandbox))
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    mounted = tmp_path / "ro"
    if not _read_only_bind(copy, mounted):
        pytest.skip("no read-only bind mount here (needs root and mount)")
    try:
        with pytest.raises(OSError):
            (mounted / "x").write_text("x")  # really read-only, even for root
        env = cli_env()
        report = status(mounted)
        assert report["read_only"] is True and report["pending"] == status(root)["pending"] > 0
        text = collector(["status", "--spool", str(mounted)], env)
        assert text.returncode == 0 and "read-only spool" in text.stdout
        ses = collector(["sessions", "--json", "--spool", str(mounted)], env)
        assert ses.returncode == 0 and json.loads(ses.stdout)[0]["samples"] > 0, ses.stderr
        page = collector(
            ["review", "--last", "--spool", str(mounted), "--out", str(tmp_path / "p.html")], env
        )
        assert page.returncode == 0, page.stderr
        out = tmp_path / "x.edf"
        exp = collector(
            ["export", "--last", "--format", "edf", "--out", str(out), "--spool", str(mounted)], env
        )
        assert exp.returncode == 0 and out.stat().st_size > 1000, exp.stderr
    finally:
        subprocess.run(["umount", str(mounted)])


def test_a_spool_made_before_deferred_targets_gets_its_table_and_keeps_its_items(tmp_path):
    import sqlite3

    from collector.delivery.spool import Spool

    root = tmp_path / "old"
    with Spool(root) as spool:
        spool.add(
            workspace_id="0b0e5d6f-2c7a-4f6e-9a51-6a3d2f1e7c10",
            evidence={"type": "eeg", "mime_type": "application/json", "chunk_index": 0,
                      "metadata": {"capture_id": "c1", "stream_id": "eeg:x"}},
            data=b"{}",
        )  # fmt: skip
    conn = sqlite3.connect(root / "spool.db")
    conn.execute("DROP TABLE targets")  # as a spool made by an earlier collector
    conn.commit()
    conn.close()
    with Spool(root) as spool:
        assert spool.unchecked_target("c1") is None
        spool.note_unchecked_target("c1", "0b0e5d6f-2c7a-4f6e-9a51-6a3d2f1e7c10", "Core ideas")
        assert spool.unchecked_target("c1") == ("0b0e5d6f-2c7a-4f6e-9a51-6a3d2f1e7c10", "Core ideas")
        assert spool.pending_count() == 1
