"""Capture promises through the real `collector run` / `replay` subprocess, a real LSL outlet on
loopback, real screenshots under Xvfb and the real sandbox: pause, SIGKILL then `upload`, a single
Ctrl-C, replay pacing and time anchors, delivered evidence fields, the profile's spool bound and
rate cap, and the key never in the output.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks, rows_of, spool_items, start_collector
from recordings import MUSE, pyxdf_eeg

from collector import __version__
from collector.capture.pause import PauseControl
from collector.devices.player import XdfPlayer

pytestmark = [pytest.mark.slow, pytest.mark.lsl]
SFREQ = 256.0


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def samples_of(chunks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    samples = np.array([row for c in chunks for row in c["samples"]], dtype=float)
    times = np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"], dtype=float) for c in chunks])
    return samples, times


def assert_contiguous_stretch_of_the_recording(samples: np.ndarray) -> None:
    """The samples are one unbroken stretch of the Muse recording (read straight with pyxdf)."""
    expected, _ = pyxdf_eeg(MUSE, channels=4)
    hits = np.flatnonzero(np.all(np.abs(expected - samples[0]) < 2e-3, axis=1))
    assert hits.size, "the first delivered sample is not in the recording"
    start = int(hits[0])
    np.testing.assert_allclose(samples, expected[start : start + len(samples)], atol=2e-3)


def wait_until(predicate, timeout_s: float = 30.0, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the collector ended early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def spooled(spool, n: int):
    """A predicate: at least n items are in the spool (on disk)."""

    def check() -> bool:
        try:
            return len(spool_items(spool)) >= n
        except sqlite3.Error:  # not created yet
            return False

    return check


@pytest.fixture
def started():
    """start(args, env) -> Popen of the real CLI; any still running at teardown is killed."""
    procs = []

    def start(args, env):
        procs.append(start_collector(args, env))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# ---- pause on a real run, with real screenshots -------------------------------------------------


@pytest.mark.xvfb
def test_pause_on_a_real_run_stops_screenshots_while_eeg_goes_on(sandbox, tmp_path, started):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    from xserver import Painter, XlibPainter, Xvfb, have_tk

    server = Xvfb(800, 600)
    painter = Painter(server.display) if have_tk() else XlibPainter(server.display)
    name = uid("e2e-pause")
    env = cli_env(sandbox, display=server.display, XDG_RUNTIME_DIR=str(tmp_path))
    control = PauseControl(tmp_path / "openlesson-collector")
    try:
        painter("fill #204080")
        assert collector(["pause"], env).returncode == 0  # left on from before: the run starts paused
        first_pause = control.state()
        with XdfPlayer(MUSE, stream_name=name, source_id=name, speed=1.0):
            proc = started(
                ["run", "--workspace", sandbox.workspace_id, "--stream-name", name, "--screen", "on",
                 "--screen-interval", "1", "--duration", "15", "--chunk-seconds", "2",
                 "--spool", str(tmp_path / "spool"), "--log-format", "json"],
                env,
            )  # fmt: skip
            wait_until(lambda: control.running_pid() == proc.pid)
            time.sleep(3)
            assert collector(["resume"], env).returncode == 0
            first_pause = control.state()
            time.sleep(3.5)  # an unchanged screen: frames skipped
            painter("fill #c03020")
            time.sleep(1.5)
            assert collector(["pause"], env).returncode == 0
            time.sleep(3)
            assert collector(["resume"], env).returncode == 0
            second_pause = control.state()
            _, stderr = proc.communicate(timeout=90)
    finally:
        painter.stop()
        server.stop()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    starts_paused = [line for line in stderr.splitlines() if "Screen capture is paused" in line]
    assert len(starts_paused) == 1 and "collector resume" in starts_paused[0], stderr

    pauses = [(first_pause.since_ms, first_pause.until_ms), (second_pause.since_ms, second_pause.until_ms)]
    shots = sorted(rows_of(sandbox, "screen"), key=lambda r: r["chunk_index"])
    for row in shots:  # no screenshot inside a pause (0.3 s: a grab that began just before it)
        for since, until in pauses:
            inside = since + 300 < row["timestamp_ms"] < until - 300
            assert not inside, f"screenshot at {row['timestamp_ms']} inside a pause {since}..{until}"
    assert [r["chunk_index"] for r in shots] == list(range(len(shots))) and len(shots) >= 3
    assert any(pauses[0][1] <= r["timestamp_ms"] < pauses[1][0] for r in shots)  # between the pauses
    assert any(r["timestamp_ms"] >= pauses[1][1] for r in shots)  # and after the second

    # Screen evidence fields, as delivered.
    eeg_rows = rows_of(sandbox, "eeg")
    capture_id = eeg_rows[0]["metadata"]["capture_id"]
    assert is_uuid4(capture_id)
    for row in shots:
        meta = row["metadata"]
        assert meta["capture_id"] == capture_id and meta["collector_version"] == __version__
        assert meta["stream_id"] == f"screen:{meta['monitor']}" == "screen:1"
        assert meta["captured_size"] == [800, 600] == meta["sent_size"]
    after_first = next(r for r in shots if r["timestamp_ms"] >= pauses[0][1])
    assert [pauses[0][0], pauses[0][1]] in after_first["metadata"]["paused_periods"]
    after_second = next(r for r in shots if r["timestamp_ms"] >= pauses[1][1])
    assert after_second["metadata"]["paused_periods"] == [[pauses[1][0], pauses[1][1]]]
    # The repaint after 3.5 s of an unchanged screen: the frames skipped before it are counted.
    changed = next(r for r in shots if r["timestamp_ms"] > after_first["timestamp_ms"])
    assert 1 <= changed["metadata"]["skipped_before"] <= 5, changed["metadata"]
    assert all(r["metadata"]["paused_periods"] == [] for r in shots if r not in (after_first, after_second))

    # EEG went on through both pauses: one unbroken stretch of the recording, ~15 s of it.
    chunks = eeg_chunks(sandbox)
    samples, times = samples_of(chunks)
    assert not any(c["gaps"] for c in chunks)
    assert len(samples) >= 12 * SFREQ
    assert times[0] < pauses[1][0] and times[-1] > pauses[1][1]  # EEG covers the second pause
    assert_contiguous_stretch_of_the_recording(samples)
    for row in eeg_rows:
        assert row["metadata"]["capture_id"] == capture_id and row["device_name"] == name
        assert row["metadata"]["stream_id"] == f"eeg:{name}"
        assert row["metadata"]["collector_version"] == __version__


# ---- SIGKILL, then `collector upload` -----------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "replay"])
def test_sigkill_mid_capture_then_collector_upload_delivers_everything_spooled(
    sandbox_factory, tmp_path, started, command
):
    """A power cut: no flush, no summary. Every chunk that reached the spool is delivered later."""
    sb = sandbox_factory()
    spool = tmp_path / "spool"
    env = cli_env(sb)
    common = ["--workspace", sb.workspace_id, "--chunk-seconds", "1", "--spool", str(spool)]
    name = uid(f"e2e-kill-{command}")
    player = XdfPlayer(MUSE, stream_name=name, source_id=name, speed=1.0) if command == "run" else None
    if player is not None:
        player.start()
        args = ["run", "--stream-name", name, "--screen", "off", *common]
    else:
        args = ["replay", str(MUSE), "--speed", "2", *common]
    try:
        proc = started(args, env)
        wait_until(spooled(spool, 2), 60, proc)
        sb.set_faults(fail_503=1.0)  # the API goes down: part delivered, part pending at the kill
        wait_until(spooled(spool, 6), 60, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if player is not None:
            player.stop()
    assert proc.returncode == -signal.SIGKILL
    items = [i for i in spool_items(spool) if i["stream_id"].startswith("eeg:")]
    assert [i["chunk_index"] for i in items] == list(range(len(items)))
    assert {i["state"] for i in items} >= {"pending"}, "killed too late: nothing left to recover"

    sb.set_faults(fail_503=0.0)
    up = collector(["upload", "--spool", str(spool)], env)
    assert up.returncode == 0, up.stderr
    chunks = eeg_chunks(sb)
    assert [c["chunk_index"] for c in chunks] == [i["chunk_index"] for i in items]  # every one, once
    samples, _ = samples_of(chunks)
    assert_contiguous_stretch_of_the_recording(samples)
    assert {i["state"] for i in spool_items(spool)} == {"delivered"}


# ---- a single Ctrl-C ------------------------------------------------------------------------------


def test_a_single_ctrl_c_stops_flushes_everything_and_exits_0(sandbox_factory, tmp_path, started):
    sb = sandbox_factory(latency_ms=150)  # slow enough that items are still pending at the Ctrl-C
    spool = tmp_path / "spool"
    name = uid("e2e-ctrlc")
    with XdfPlayer(MUSE, stream_name=name, source_id=name, speed=1.0):
        proc = started(
            ["run", "--workspace", sb.workspace_id, "--stream-name", name, "--screen", "off",
             "--chunk-seconds", "0.5", "--spool", str(spool), "--log-format", "json"],
            cli_env(sb),
        )  # fmt: skip
        wait_until(spooled(spool, 6), 60, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    events = [json.loads(line).get("event") for line in stderr.splitlines() if line.startswith("{")]
    assert "stopping" in events, stderr
    assert "Traceback" not in stderr
    items = [i for i in spool_items(spool) if i["stream_id"].startswith("eeg:")]
    assert {i["state"] for i in spool_items(spool)} == {"delivered"}  # flushed, then exited
    chunks = eeg_chunks(sb)
    assert [c["chunk_index"] for c in chunks] == [i["chunk_index"] for i in items]
    samples, _ = samples_of(chunks)
    assert len(samples) >= 2 * SFREQ
    assert_contiguous_stretch_of_the_recording(samples)


# ---- replay pacing and anchors through the CLI ---------------------------------------------------


def test_replay_at_speed_1_is_paced_in_real_time_and_anchored_now(sandbox, tmp_path, started):
    """--speed 1, stopped with Ctrl-C: about as much recording as wall time went by, stamped from now."""
    spool = tmp_path / "spool"
    started_ms, t_start = time.time() * 1000, time.monotonic()
    proc = started(
        ["replay", str(MUSE), "--workspace", sandbox.workspace_id, "--speed", "1", "--start-time", "now",
         "--chunk-seconds", "1", "--spool", str(spool), "--log-format", "json"],
        cli_env(sandbox),
    )  # fmt: skip
    wait_until(spooled(spool, 1), 60, proc)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    stopped_ms, wall_s = time.time() * 1000, time.monotonic() - t_start
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    chunks = eeg_chunks(sandbox)
    samples, times = samples_of(chunks)
    expected, stamps = pyxdf_eeg(MUSE, channels=4)
    np.testing.assert_allclose(samples, expected[: len(samples)], atol=2e-3)  # from its first sample
    # At 1x, never more recording than wall time since the start (10x too fast would be 10x more),
    # and at least the 3 s waited after the first chunk. Wide on purpose: a loaded machine; the pace
    # itself is measured exactly with a fake clock in tests/unit/test_xdf_source.py.
    assert 3 * SFREQ <= len(samples) <= (wall_s + 1) * SFREQ, (len(samples), wall_s)
    assert started_ms <= times[0] <= stopped_ms  # anchored at the start of this replay
    np.testing.assert_allclose(np.diff(times), np.diff(stamps[: len(samples)]) * 1000, atol=0.01)


def test_replay_at_speed_n_takes_duration_over_n_and_keeps_an_iso_anchor(sandbox, tmp_path):
    anchor = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    common = ["--workspace", sandbox.workspace_id, "--chunk-seconds", "30", "--spool", str(tmp_path / "s")]
    started = time.monotonic()
    proc = collector(
        ["replay", str(MUSE), "--speed", "12", "--start-time", "2024-05-01T14:00:00+02:00", *common],
        cli_env(sandbox),
    )  # fmt: skip
    wall_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    # 120 s of recording at 12x: at least 10 s (never faster); start-up and delivery add the rest.
    assert 10.0 <= wall_s <= 60.0, wall_s
    chunks = eeg_chunks(sandbox)
    samples, times = samples_of(chunks)
    expected, stamps = pyxdf_eeg(MUSE, channels=4)
    np.testing.assert_allclose(samples, expected, atol=2e-3)  # every sample exactly once
    # The anchor holds the first sample; the rest keep the recording's own spacing (not / 12).
    assert chunks[0]["t0_ms"] == round(anchor.timestamp() * 1000)
    np.testing.assert_allclose(times - times[0], (stamps - stamps[0]) * 1000, atol=0.01)
    # A second replay is a new capture: a fresh UUID, every row of each run carrying its own.
    again = collector(["replay", str(MUSE), "--speed", "max", *common], cli_env(sandbox))
    assert again.returncode == 0, again.stderr
    ids = {r["metadata"]["capture_id"] for r in rows_of(sandbox)}
    assert len(ids) == 2 and all(is_uuid4(i) for i in ids)
    assert {r["metadata"]["collector_version"] for r in rows_of(sandbox)} == {__version__}
    assert {r["device_name"] for r in rows_of(sandbox, "eeg")} == {"Muse"}


# ---- the key never shows -------------------------------------------------------------------------


def test_key_never_in_the_output_of_run_replay_and_upload_at_verbose(sandbox_factory, tmp_path):
    sb = sandbox_factory(fail_503=0.3, seed=7)  # retries and errors are logged too
    env = cli_env(sb)
    key = sb.api_key
    spool = tmp_path / "spool"
    name = uid("e2e-key")
    with XdfPlayer(MUSE, stream_name=name, source_id=name, speed=1.0):
        run = collector(
            ["run", "--workspace", sb.workspace_id, "--stream-name", name, "--screen", "off",
             "--duration", "3", "--chunk-seconds", "1", "--spool", str(spool), "-v"],
            env,
        )  # fmt: skip
    replay = collector(
        ["replay", str(MUSE), "--workspace", sb.workspace_id, "--speed", "max", "--chunk-seconds", "30",
         "--offline", "--spool", str(spool), "-v"],
        env,
    )  # fmt: skip
    upload = collector(["upload", "--spool", str(spool), "-v"], env)
    assert (run.returncode, replay.returncode, upload.returncode) == (0, 0, 0), run.stderr + upload.stderr
    outputs = {"run": run, "replay": replay, "upload": upload}
    for what, proc in outputs.items():
        text = proc.stdout + proc.stderr
        assert key not in text and key[-10:] not in text, f"the key (or its tail) is in {what}'s output"
    assert "HTTP 201" in upload.stderr or "delivered" in upload.stderr  # -v really was verbose


# ---- the profile's [delivery] settings reach the pipeline ----------------------------------------


def test_profile_spool_bound_reaches_the_spool_and_refused_chunks_are_counted(sandbox, tmp_path):
    profile = tmp_path / "small.toml"
    profile.write_text('extends = "muse-2016"\n[delivery]\nspool_max_bytes = 300000\n')
    spool = tmp_path / "spool"
    proc = collector(
        ["replay", str(MUSE), "--workspace", sandbox.workspace_id, "--profile", str(profile),
         "--speed", "max", "--chunk-seconds", "5", "--offline", "--spool", str(spool)],
        cli_env(sandbox),
    )  # fmt: skip
    items = spool_items(spool)
    held = sum(i["size_bytes"] for i in items)
    assert 0 < held <= 300_000, f"the spool holds {held} bytes: not the profile's 300,000-byte bound"
    assert proc.returncode == 7 and "Traceback" not in proc.stderr, proc.stderr  # data lost
    status = json.loads(collector(["status", "--spool", str(spool), "--json"], cli_env(sandbox)).stdout)
    capture = next(c for c in status["captures"] if c["pending"])
    eeg_items = [i for i in items if i["stream_id"].startswith("eeg:")]
    # The capture went on to the end of the file: 120 s in 5 s chunks, each spooled or counted.
    # 30,732 samples in 1,280-sample chunks: 25, each either spooled or refused and counted.
    assert len(eeg_items) + capture["dropped"] == 25 and capture["dropped"] >= 10, (len(eeg_items), capture)
    stream_id = eeg_items[0]["stream_id"]
    closing = f"DATA LOST: {capture['dropped']} chunk(s) of {stream_id} not saved: the spool's byte bound"
    assert closing in proc.stderr, proc.stderr


@pytest.mark.parametrize(("rate", "ok"), [(120, True), (121, False), (1000, False)])
def test_profile_rate_per_min_is_capped_at_the_keys_120(sandbox, tmp_path, rate, ok):
    profile = tmp_path / "rate.toml"
    profile.write_text(f'extends = "muse-2016"\n[delivery]\nrate_per_min = {rate}\n')
    proc = collector(
        ["replay", str(MUSE), "--workspace", sandbox.workspace_id, "--profile", str(profile),
         "--speed", "max", "--chunk-seconds", "30", "--offline", "--spool", str(tmp_path / "spool")],
        cli_env(sandbox),
    )  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr  # offline: spooled, waiting for `collector upload`
    else:
        assert proc.returncode == 2, proc.stderr
        assert "rate_per_min" in proc.stderr and "120" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "spool" / "spool.db").exists()  # refused before anything was captured
