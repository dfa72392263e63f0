"""The terminal view in a real terminal (tmux): rich's live block, and `m` to mark the moment."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.lsl,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt install tmux)"),
]


class Tmux:
    """One tmux server of our own (-L), so no other session on the machine is touched."""

    def __init__(self, command: str, width: int = 120, height: int = 40) -> None:
        self.socket = f"collector-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_m_in_the_live_view_marks_the_moment_it_was_pressed(sandbox, tmp_path):
    from collector.devices.player import play_sine_to_lsl

    name = f"mkey-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "PYTHONPATH": str(REPO), "XDG_RUNTIME_DIR": str(runtime), "OPENLESSON_API_KEY": sandbox.api_key,
        "OPENLESSON_BASE_URL": sandbox.base_url, "COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"),
        "PATH": os.environ.get("PATH", ""), "TERM": "xterm-256color",
        # This test process's private liblsl session (tests/conftest.py), or the player is not seen.
        **({"LSLAPICFG": os.environ["LSLAPICFG"]} if os.environ.get("LSLAPICFG") else {}),
    }  # fmt: skip
    run = [sys.executable, "-m", "collector", "run", "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0],
           "--stream-name", name, "--screen", "off", "--duration", "10", "--chunk-seconds", "2",
           # Not other tests' marker streams: liblsl writes its own errors about them (a stream
           # that went away) straight to the terminal, past rich, and shifts the block.
           "--markers", "off"]  # fmt: skip
    done = tmp_path / "exit-code"
    command = (
        " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        + f" {shlex.join(run)}; echo $? > {shlex.quote(str(done))}; sleep 60"
    )
    term = Tmux(f"env -i {command}")
    try:
        term.wait_for("m to mark · Ctrl-C to stop")  # rich's live block, with the key's hint
        term.wait_for("alpha")
        pressed = time.time() * 1000
        term.keys("m")
        term.wait_for("Enter saves, Esc cancels")
        term.keys("-l", "phone rang")
        term.wait_for("phone rang▏")
        term.keys("Enter")
        term.wait_for("marked 'phone rang'")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        final = term.screen()
    finally:
        term.kill()
        stop.set()
        player.join(10)
    assert done.read_text().strip() == "0", final
    assert final.count("m to mark · Ctrl-C to stop") == 1, final  # one block, drawn in place
    assert "Session ended after" in final
    events = []
    for row in sandbox.evidence(sandbox.workspace_id):
        artifact = json.loads(sandbox.read_artifact(row["id"])) if row["type"] == "eeg" else {}
        events += [e for e in artifact.get("events", []) if e["value"] == "phone rang"]
    assert len(events) == 1
    assert 0 <= events[0]["time_ms"] - pressed <= 500  # tmux delivers the key a moment after send-keys


@pytest.mark.parametrize("typed", ["é key", "chat 🐈‍⬛ 👍🏽 ok"])
def test_the_m_prompt_keeps_non_ascii_text_exactly_as_typed(sandbox, tmp_path, typed):
    """issue 20 #3: the prompt decoded each byte on its own, so `é key` arrived as `\ufffd\ufffd key`.
    Emoji with a zero-width joiner and a skin tone are several code points; each must be kept."""
    from collector.devices.player import play_sine_to_lsl

    name = f"mtext-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "PYTHONPATH": str(REPO), "XDG_RUNTIME_DIR": str(runtime), "OPENLESSON_API_KEY": sandbox.api_key,
        "OPENLESSON_BASE_URL": sandbox.base_url, "COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"),
        "PATH": os.environ.get("PATH", ""), "TERM": "xterm-256color", "LANG": "C.UTF-8",
        **({"LSLAPICFG": os.environ["LSLAPICFG"]} if os.environ.get("LSLAPICFG") else {}),
    }  # fmt: skip
    run = [sys.executable, "-m", "collector", "run", "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0],
           "--stream-name", name, "--screen", "off", "--duration", "6", "--chunk-seconds", "2",
           "--markers", "off"]  # fmt: skip
    done = tmp_path / "exit-code"
    command = (
        " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        + f" {shlex.join(run)}; echo $? > {shlex.quote(str(done))}; sleep 60"
    )
    term = Tmux(f"env -i {command}")
    try:
        term.wait_for("m to mark · Ctrl-C to stop")
        term.keys("m")
        term.wait_for("Enter saves, Esc cancels")
        term.keys("-l", typed)
        term.wait_for(typed.split()[-1] + "▏")
        term.keys("Enter")
        term.wait_for("marked ")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        final = term.screen()
    finally:
        term.kill()
        stop.set()
        player.join(10)
    assert done.read_text().strip() == "0", final
    events = []
    for row in sandbox.evidence(sandbox.workspace_id):
        artifact = json.loads(sandbox.read_artifact(row["id"])) if row["type"] == "eeg" else {}
        events += artifact.get("events", [])
    assert [e["value"] for e in events] == [typed], final


def test_upload_in_a_terminal_draws_a_progress_bar(sandbox, tmp_path):
    muse = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    keep = {
        "PYTHONPATH": str(REPO),
        "OPENLESSON_API_KEY": sandbox.api_key,
        "OPENLESSON_BASE_URL": sandbox.base_url,
        "COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"),
    }
    env = {**base, **keep}
    spooled = subprocess.run(
        [sys.executable, "-m", "collector", "replay", str(muse), "-w", sandbox.workspace_id,
         "-b", sandbox.block_ids[0], "--speed", "max", "--offline", "--chunk-seconds", "10"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert spooled.returncode == 0, spooled.stderr
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "collector", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
    )
    pending = status["pending"]
    assert pending >= 10
    done = tmp_path / "exit-code"
    keep = {
        k: env[k] for k in ("PYTHONPATH", "OPENLESSON_API_KEY", "OPENLESSON_BASE_URL", "COLLECTOR_SPOOL_DIR")
    }
    command = (
        "env -i "
        + " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items())
        + f" PATH={shlex.quote(os.environ.get('PATH', ''))} TERM=xterm-256color "
        + shlex.join([sys.executable, "-m", "collector", "upload", "--rate", "110"])
        + f"; echo $? > {shlex.quote(str(done))}; sleep 60"
    )
    term = Tmux(command)
    try:
        term.wait_for(f"/{pending}")  # the bar's M/N column, drawn while it delivers
        deadline = time.monotonic() + 90
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        final = term.screen()
    finally:
        term.kill()
    assert done.read_text().strip() == "0", final
    bar = next(line for line in final.splitlines() if line.startswith("delivering"))
    assert f"{pending}/{pending}" in bar and "━" in bar
    assert f"Delivered {pending} item(s); nothing is pending" in final
    assert len([r for r in sandbox.evidence(sandbox.workspace_id)]) == pending


def test_the_live_view_shows_a_pause_and_counts_skips_as_they_happen(tmp_path):
    """review13 #3, #4: a static Xvfb screen, one frame a second: the view's skip count grows while
    no frame is sent, and `collector pause` shows as "paused since …" (not "capturing")."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from xserver import Xvfb

    xvfb = Xvfb(640, 480)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "PYTHONPATH": str(REPO), "XDG_RUNTIME_DIR": str(runtime), "DISPLAY": xvfb.display,
        "COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "PATH": os.environ.get("PATH", ""),
        "TERM": "xterm-256color",
    }  # fmt: skip
    run = [sys.executable, "-m", "collector", "run", "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()),
           "--offline", "--no-eeg", "--screen-interval", "1", "--duration", "40"]  # fmt: skip
    command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + f" {shlex.join(run)}; sleep 60"
    term = Tmux(f"env -i {command}")
    try:
        # before the fix: "0 skipped" until the end
        term.wait_for("screen  capturing via x11: 1 sent, 3 skipped")
        pause = subprocess.run(
            [sys.executable, "-m", "collector", "pause"], env=env, capture_output=True, text=True, timeout=60
        )
        assert pause.returncode == 0, pause.stderr
        term.wait_for("screen  paused since")
        resume = subprocess.run(
            [sys.executable, "-m", "collector", "resume"], env=env, capture_output=True, text=True, timeout=60
        )
        assert resume.returncode == 0, resume.stderr
        term.wait_for("screen  capturing via x11: 2 sent")  # the screen is shown again right after a pause
    finally:
        term.kill()
        xvfb.stop()
