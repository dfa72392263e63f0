"""The README's exit-code table, through the real `collector` CLI: one line, no traceback, no key."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from cli_runs import REPO, cli_env, collector, start_collector
from hostile import HostileServer
from recordings import MUSE
from test_hostile_delivery import KEY, spool_eeg

from collector.errors import EXIT_FAILURE, EXIT_USAGE


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("collector:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "content",
    [b"", b"XDF:" + bytes(range(256)) * 4, MUSE.read_bytes()[:1500]],  # truncated: no whole sample chunk
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_recording_exits_2_before_any_request(sandbox, tmp_path, content):
    path = tmp_path / "bad.xdf"
    path.write_bytes(content)
    proc = collector(
        ["replay", str(path), "--workspace", sandbox.workspace_id, "--speed", "max",
         "--spool", str(tmp_path / "spool")],
        cli_env(sandbox),
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "bad.xdf" in one_line(proc)
    assert sandbox.requests() == [] and sandbox.evidence(sandbox.workspace_id) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[delivery\nrate_per_min = 10\n", "not valid TOML"),
        ('extends = "muse-2016"\n[screen]\ninterval_s = -1\n', "screen.interval_s"),
        ('extends = "muse-2016"\n[analysis]\nwindow_seconds = 2\n', "analysis.window_seconds"),
        ('extends = "no-such-profile"\n', "Unknown profile"),
    ],
    ids=["toml-syntax", "bad-value", "unknown-key", "unknown-base"],
)
def test_invalid_profile_exits_2_naming_the_setting(sandbox, tmp_path, text, words):
    profile = tmp_path / "lab.toml"
    profile.write_text(text)
    proc = collector(
        ["run", "--workspace", sandbox.workspace_id, "--profile", str(profile), "--duration", "1",
         "--spool", str(tmp_path / "spool")],
        cli_env(sandbox),
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert words in one_line(proc)
    assert sandbox.requests() == []  # refused before the key or the target were checked


def test_unexpected_failure_exits_1_with_one_line_and_no_key(sandbox, tmp_path):
    """A bug (here: a command that raises an error the collector does not expect) is exit 1."""
    code = (
        "import sys\n"
        "import collector.commands.status as status\n"
        "def broken(args):\n"
        "    raise ZeroDivisionError('division by zero in a pretend bug')\n"
        "status.run = broken\n"
        "from collector.cli import main\n"
        "sys.exit(main(['status', '--spool', sys.argv[1]]))\n"
    )
    env = cli_env(sandbox)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "spool")], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == EXIT_FAILURE, proc.stderr
    line = one_line(proc)
    assert "unexpected failure" in line and "ZeroDivisionError" in line and "--verbose" in line
    assert sandbox.api_key not in proc.stderr + proc.stdout


def test_ctrl_c_while_waiting_on_the_api_exits_130(sandbox_factory, tmp_path):
    sb = sandbox_factory(latency_ms=30_000)  # the API takes 30 s to answer
    proc = start_collector(["blocks", "--workspace", sb.workspace_id], cli_env(sb))
    try:
        deadline = time.monotonic() + 30
        while not sb.requests():  # the request is on its way: the command is waiting on it
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "collector: interrupted."


# ---- 7 (data lost) wins over 6 (items pending) when both hold (issue 24.12) ------------------------


def test_replay_that_lost_chunks_and_left_items_pending_exits_7_not_6(tmp_path):
    profile = tmp_path / "small.toml"
    profile.write_text('extends = "muse-2016"\n[delivery]\nspool_max_bytes = 300000\n')  # chunks refused
    with HostileServer("json503") as server:  # the target checks out; every chunk gets a 503: pending
        proc = collector(
            ["replay", str(MUSE), "--workspace", server.workspace_id, "--profile", str(profile),
             "--speed", "max", "--chunk-seconds", "5", "--flush-timeout", "1",
             "--spool", str(tmp_path / "s")],
            cli_env(OPENLESSON_API_KEY=KEY, OPENLESSON_BASE_URL=server.base_url),
        )  # fmt: skip
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert any("DATA LOST" in line for line in lines), proc.stderr  # both hold...
    assert any("still in the spool" in line for line in lines), proc.stderr
    assert proc.returncode == 7, f"exit {proc.returncode} with chunks lost and items pending: {proc.stderr}"


def test_upload_that_had_an_item_rejected_and_left_others_pending_exits_7_not_6(tmp_path):
    root = tmp_path / "spool"
    with HostileServer("json503") as server:  # the first item is rejected for good, the rest wait
        server.script = ["validation"]
        spool_eeg(root, server.workspace_id, 3)
        env = cli_env(OPENLESSON_API_KEY=KEY, OPENLESSON_BASE_URL=server.base_url)
        proc = collector(["upload", "--spool", str(root), "--flush-timeout", "1"], env)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "DATA LOST" in last and "2 other item(s) are still waiting" in last, proc.stderr  # both hold...
    assert proc.returncode == 7, f"exit {proc.returncode} with an item lost and two pending: {last}"
