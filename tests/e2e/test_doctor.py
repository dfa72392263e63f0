"""`collector doctor` run as users run it (a subprocess) against the real sandbox server, and the lab
service files: the install script's dry run and the systemd unit (checked by systemd-analyze).

LSL discovery is isolated per test with a private liblsl SessionID (LSLAPICFG), so streams that
other tests or engineers publish on this machine never leak into the doctor's view.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from collector.errors import EXIT_AUTH, EXIT_NO_SOURCE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-lab-service.sh"
UNIT = REPO / "scripts" / "collector@.service"
HAS_BLUETOOTH = any(Path("/sys/class/bluetooth").glob("hci*"))


@pytest.fixture
def lsl_cfg(tmp_path) -> Path:
    cfg = tmp_path / "lsl_api.cfg"
    cfg.write_text(f"[lab]\nSessionID = doctor-{uuid.uuid4().hex}\n")
    return cfg


@pytest.fixture
def base_env(lsl_cfg, tmp_path) -> dict[str, str]:
    """No display, no key, no collector settings; a private LSL session and spool."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "XAUTHORITY")
        and not k.startswith(("OPENLESSON_", "COLLECTOR_"))
    }
    env["LSLAPICFG"] = str(lsl_cfg)
    env["COLLECTOR_SPOOL_DIR"] = str(tmp_path / "spool")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def doctor(env: dict[str, str], *args: str, secrets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "doctor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for secret in secrets:  # every run: neither the key nor its distinctive tail shows, whatever happened
        for needle in (secret, secret[-10:]):
            assert needle not in proc.stdout and needle not in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def checks_of(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    report = json.loads(proc.stdout)
    assert report["exit_code"] == proc.returncode
    return {c["name"]: c for c in report["checks"]}


def with_key(env: dict[str, str], server, key: str) -> dict[str, str]:
    return {**env, "OPENLESSON_API_KEY": key, "OPENLESSON_BASE_URL": server.base_url}


# ---- API: key, workspace, block ------------------------------------------------------------------


def test_valid_key_workspace_and_block_title(sandbox, base_env):
    from collector.api.client import OpenLessonClient
    from collector.api.settings import ApiKey, ApiSettings

    with OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey(sandbox.api_key))) as client:
        title = client.list_blocks(sandbox.workspace_id)[1].title
    env = with_key(base_env, sandbox, sandbox.api_key)
    proc = doctor(env, "--json", "--lsl-wait", "0.5", "--workspace", sandbox.workspace_id, "--block", title,
                  secrets=(sandbox.api_key,))  # fmt: skip
    checks = checks_of(proc)
    assert checks["api"]["status"] == "ok"
    assert checks["key"]["status"] == "ok"
    assert sandbox.api_key[:3] in checks["key"]["detail"]  # the prefix, at most
    assert checks["workspace"]["status"] == "ok"
    assert checks["block"]["status"] == "ok" and sandbox.block_ids[1] in checks["block"]["detail"]
    assert checks["spool"]["status"] == "ok"
    # Everything else follows the machine: here no LSL stream (private session) and no display.
    assert checks["display"]["status"] == "warn"
    if HAS_BLUETOOTH:
        assert proc.returncode == EXIT_OK and checks["sources"]["status"] == "ok"
    else:
        assert checks["sources"]["status"] == "fail"
        assert proc.returncode == EXIT_NO_SOURCE


@pytest.mark.parametrize("which", ["revoked", "wrong"])
def test_refused_key_exits_3_without_showing_it(sandbox, base_env, which):
    key = sandbox.keys["revoked"] if which == "revoked" else "sk_" + uuid.uuid4().hex * 2
    env = with_key(base_env, sandbox, key)
    proc = doctor(env, "--json", "--lsl-wait", "0.5", "--workspace", sandbox.workspace_id, secrets=(key,))
    checks = checks_of(proc)
    assert proc.returncode == EXIT_AUTH
    assert checks["api"]["status"] == "ok"  # the server answered; it refused the key
    assert checks["key"]["status"] == "fail" and checks["key"]["exit_code"] == EXIT_AUTH
    assert checks["key"]["fix"]
    text = doctor(env, "--lsl-wait", "0.5", secrets=(key,))
    assert text.returncode == EXIT_AUTH
    assert "fail  key" in text.stdout


def test_no_key_still_checks_that_the_api_answers(sandbox, base_env):
    env = {**base_env, "OPENLESSON_BASE_URL": sandbox.base_url}
    checks = checks_of(proc := doctor(env, "--json", "--lsl-wait", "0.5"))
    assert proc.returncode == EXIT_AUTH
    assert checks["api"]["status"] == "ok"
    assert checks["key"]["status"] == "fail" and "OPENLESSON_API_KEY" in checks["key"]["detail"]


def test_unknown_workspace_exits_4(sandbox, base_env):
    env = with_key(base_env, sandbox, sandbox.api_key)
    unknown = str(uuid.uuid4())
    proc = doctor(env, "--json", "--lsl-wait", "0.5", "--workspace", unknown, secrets=(sandbox.api_key,))
    checks = checks_of(proc)
    assert proc.returncode == EXIT_NOT_FOUND  # ahead of "no source" (5): fix the target first
    assert checks["key"]["status"] == "ok"
    assert checks["workspace"]["status"] == "fail" and "workspace_not_found" in checks["workspace"]["detail"]


def test_unknown_block_exits_4(sandbox, base_env):
    env = with_key(base_env, sandbox, sandbox.api_key)
    proc = doctor(env, "--json", "--lsl-wait", "0.5", "--workspace", sandbox.workspace_id,
                  "--block", "No such block title", secrets=(sandbox.api_key,))  # fmt: skip
    checks = checks_of(proc)
    assert proc.returncode == EXIT_NOT_FOUND
    assert checks["workspace"]["status"] == "ok"
    assert checks["block"]["status"] == "fail" and "collector blocks" in checks["block"]["fix"]


def test_malformed_workspace_is_bad_usage_before_any_check(base_env):
    proc = doctor(base_env, "--json", "--workspace", "not-a-uuid")
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == "" and "not a valid id" in proc.stderr


def test_unreachable_api_is_reported_fast(base_env):
    # A port nobody listens on (we bound it, then closed it): connection refused.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **base_env,
        "OPENLESSON_API_KEY": "sk_" + "a" * 40,
        "OPENLESSON_BASE_URL": f"http://127.0.0.1:{port}",
    }
    started = time.monotonic()
    proc = doctor(env, "--json", secrets=("a" * 40,))
    elapsed = time.monotonic() - started
    checks = checks_of(proc)
    assert checks["api"]["status"] == "fail" and str(port) in checks["api"]["detail"]
    assert checks["key"]["status"] == "warn"  # not checked, not failed
    assert proc.returncode != EXIT_OK
    assert elapsed < 10, f"doctor took {elapsed:.1f} s"


# ---- spool ---------------------------------------------------------------------------------------


def _spool_fail_line(stdout: str) -> tuple[str, str]:
    lines = stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("fail") and line.split()[1] == "spool")
    return lines[i], lines[i + 1].strip()


def test_spool_blocked_by_a_file(sandbox, base_env, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    env = with_key(base_env, sandbox, sandbox.api_key)
    proc = doctor(env, "--lsl-wait", "0.5", "--spool", str(blocker / "spool"), secrets=(sandbox.api_key,))
    assert proc.returncode != EXIT_OK
    line, fix = _spool_fail_line(proc.stdout)
    assert str(blocker) in line
    assert fix.startswith("fix:") and "--spool" in fix


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through 0500")
def test_spool_without_write_permission(sandbox, base_env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        env = with_key(base_env, sandbox, sandbox.api_key)
        proc = doctor(env, "--lsl-wait", "0.5", "--spool", str(locked / "spool"), secrets=(sandbox.api_key,))
    finally:
        locked.chmod(0o700)
    line, fix = _spool_fail_line(proc.stdout)
    assert "Permission denied" in line and fix.startswith("fix:")
    assert proc.returncode != EXIT_OK


def test_spool_is_created_private(base_env, tmp_path):
    spool = tmp_path / "new" / "spool"
    checks = checks_of(doctor(base_env, "--json", "--lsl-wait", "0.5", "--spool", str(spool)))
    assert checks["spool"]["status"] == "ok" and "free" in checks["spool"]["detail"]
    assert spool.is_dir() and spool.stat().st_mode & 0o777 == 0o700
    assert list(spool.iterdir()) == []  # the probe file is gone


# ---- display ---------------------------------------------------------------------------------------


def test_no_display_is_a_warning_with_the_reason(base_env):
    checks = checks_of(doctor(base_env, "--json", "--lsl-wait", "0.5"))
    display = checks["display"]
    assert display["status"] == "warn" and display["exit_code"] == EXIT_OK
    assert "DISPLAY is not set" in display["detail"]
    assert "--screen auto" in display["fix"]


def test_wayland_without_xwayland_is_named(base_env):
    checks = checks_of(doctor({**base_env, "WAYLAND_DISPLAY": "wayland-0"}, "--json", "--lsl-wait", "0.5"))
    assert checks["display"]["status"] == "warn" and "Wayland" in checks["display"]["detail"]


def test_profile_asking_for_screens_makes_no_display_a_failure(base_env, tmp_path):
    profile = tmp_path / "screens.toml"
    profile.write_text('[screen]\nmode = "on"\n')
    proc = doctor(base_env, "--json", "--lsl-wait", "0.5", "--profile", str(profile))
    checks = checks_of(proc)
    assert checks["profile"]["status"] == "ok"
    assert checks["display"]["status"] == "fail" and checks["display"]["exit_code"] == EXIT_NO_SOURCE


@pytest.mark.xvfb
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")
def test_display_ok_on_a_real_x_server(base_env):
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "320x200x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        assert number, "Xvfb did not start"
        env = {**base_env, "DISPLAY": f":{number}"}
        checks = checks_of(doctor(env, "--json", "--lsl-wait", "0.5"))
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert checks["display"]["status"] == "ok", checks["display"]
    assert "320x200" in checks["display"]["detail"]
    assert checks["sources"]["status"] == "ok" and "screenshots" in checks["sources"]["detail"]


# ---- LSL ---------------------------------------------------------------------------------------------


OUTLET = textwrap.dedent(
    """
    import sys, time, pylsl
    info = pylsl.StreamInfo("DoctorTestEEG", "EEG", 4, 256, "float32", "doctor-test")
    outlet = pylsl.StreamOutlet(info)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes stdin
    """
)


@pytest.mark.lsl
def test_visible_lsl_stream_is_a_data_source(sandbox, base_env):
    player = subprocess.Popen([sys.executable, "-c", OUTLET], env=base_env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert player.stdout.readline().strip() == "ready"
        env = with_key(base_env, sandbox, sandbox.api_key)
        proc = doctor(env, "--json", "--workspace", sandbox.workspace_id, secrets=(sandbox.api_key,))
    finally:
        player.stdin.close()
        player.wait(timeout=10)
        player.stdout.close()
    checks = checks_of(proc)
    assert checks["liblsl"]["status"] == "ok"
    assert checks["lsl"]["status"] == "ok" and "DoctorTestEEG" in checks["lsl"]["detail"]
    assert checks["sources"]["status"] == "ok"
    assert proc.returncode == EXIT_OK, checks


# ---- exit code ranking (in-process, fast) -----------------------------------------------------------


def test_most_serious_failure_wins_and_warnings_do_not_fail():
    from collector.commands.doctor import Check, overall_exit_code

    warn = Check("display", "warn", "no display")
    assert overall_exit_code([Check("python", "ok", ""), warn]) == EXIT_OK
    spool = Check.failed("spool", "cannot write")
    source = Check.failed("sources", "nothing", exit_code=EXIT_NO_SOURCE)
    key = Check.failed("key", "refused", exit_code=EXIT_AUTH)
    ws = Check.failed("workspace", "missing", exit_code=EXIT_NOT_FOUND)
    assert overall_exit_code([spool, warn]) == 1
    assert overall_exit_code([spool, source]) == EXIT_NO_SOURCE
    assert overall_exit_code([source, ws, spool]) == EXIT_NOT_FOUND
    assert overall_exit_code([ws, key, source]) == EXIT_AUTH


# ---- lab service files -----------------------------------------------------------------------------


@pytest.fixture
def recording_path(tmp_path) -> tuple[dict[str, str], Path]:
    """PATH where every command that changes the system only records that it was called."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    for name in ("systemctl", "useradd", "usermod", "install", "pip", "cp", "mv", "chmod", "chown", "mkdir"):
        tool = bindir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, log


def test_install_script_dry_run_plans_everything_and_touches_nothing(recording_path, tmp_path):
    env, log = recording_path
    prefix = tmp_path / "opt" / "openlesson-collector"
    key_file = tmp_path / "key.txt"
    secret = "sk_" + uuid.uuid4().hex
    key_file.write_text(secret + "\n")
    etc_existed = Path("/etc/openlesson-collector").exists()
    unit_existed = Path("/etc/systemd/system/collector@.service").exists()
    user_exists = subprocess.run(["id", "-u", "openlesson"], capture_output=True).returncode == 0
    ws = str(uuid.uuid4())
    proc = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--dry-run", "--profile", "lab1", "--prefix", str(prefix),
         "--workspace", ws, "--block", "Warm up", "--key-file", str(key_file)],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for planned in (
        f"{prefix}/venv",
        "pip install",
        "useradd" if not user_exists else "user exists",
        "/etc/openlesson-collector/lab1.key (mode 0600",
        "/etc/openlesson-collector/lab1.env",
        f"COLLECTOR_WORKSPACE={ws}",
        'COLLECTOR_BLOCK="Warm up"',
        "/etc/systemd/system/collector@.service",
        "systemctl daemon-reload",
        "systemctl enable collector@lab1.service",
        "systemctl restart collector@lab1.service",
        "collector doctor",
    ):
        assert planned in out, f"{planned!r} missing from the plan:\n{out}"
    assert secret not in out and secret not in proc.stderr
    assert not log.exists(), f"dry run ran commands: {log.read_text()}"
    assert not prefix.exists()
    assert Path("/etc/openlesson-collector").exists() == etc_existed
    assert Path("/etc/systemd/system/collector@.service").exists() == unit_existed


def test_install_script_rejects_bad_input(recording_path):
    env, log = recording_path
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT), "--dry-run", "--workspace", "nope"],
                          env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2 and "not a valid id" in proc.stderr
    assert not log.exists()


def test_unit_runs_the_profile_headless_with_a_credential():
    unit = UNIT.read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    for part in ("collector run", "--profile ${COLLECTOR_PROFILE}", "--log-format json",
                 "--api-key-file %d/api-key"):  # fmt: skip
        assert part in exec_start
    assert "--screen" not in exec_start  # the profile's [screen] mode (e.g. "off" for privacy) decides
    lines = unit.splitlines()
    for directive in (
        "Environment=COLLECTOR_PROFILE=%i",
        "LoadCredential=api-key:/etc/openlesson-collector/%i.key",
        "EnvironmentFile=-/etc/openlesson-collector/%i.env",
        "StateDirectory=openlesson-collector/%i",
        "Environment=COLLECTOR_SPOOL_DIR=%S/openlesson-collector/%i",
        "Restart=on-failure",
        "After=network-online.target",
        "Wants=network-online.target",
        "User=openlesson",
    ):
        assert any(line.startswith(directive) for line in lines), directive
    active = [line for line in unit.splitlines() if not line.startswith("#")]
    for breaks_capture in ("PrivateNetwork=yes", "IPAddressDeny=", "MemoryDenyWriteExecute=yes"):
        assert not any(line.startswith(breaks_capture) for line in active)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    fake = tmp_path / "collector"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = UNIT.read_text().replace("/opt/openlesson-collector/venv/bin/collector", str(fake))
    instance = tmp_path / "collector@lab.service"
    instance.write_text(unit)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if "collector@" in line or "Unknown" in line]
    assert proc.returncode == 0 and not problems, proc.stderr
