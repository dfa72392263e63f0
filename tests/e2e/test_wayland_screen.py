"""Screen capture on a real headless Wayland session (sway + XWayland + xdg-desktop-portal, see
tests/wayland.py): each backend's image shows the painted windows' colours at their places; `run
--screen auto` delivers real screenshots and says through which backend; under XWayland only,
black frames are detected, counted and never sent; `doctor` names every backend's outcome.

Skipped (with the reason) where sway and friends are not installed or not root; .ci/run installs
them. All tests share one session (module fixture; a file lock keeps sessions one at a time).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import uuid

import pytest
from cli_runs import cli_env
from PIL import Image
from wayland import BACKGROUND, GEOMETRY, REPO, SIZE, WaylandSession, missing

from collector.devices.player import XdfPlayer

MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
RED, GREEN = (255, 0, 0), (0, 255, 0)


@pytest.fixture(scope="module")
def wl():
    why = missing()
    if why:
        pytest.skip(why)
    session = WaylandSession().up()
    try:
        # First: the probe windows' script is in this tree, which may sit in a 0700 folder (mktemp -d).
        session.python = session.grant_python()
        session.window("wayland", "{:02x}{:02x}{:02x}".format(*RED))
        session.window("x11", "{:02x}{:02x}{:02x}".format(*GREEN))
        session.portal_warmup_s = session.warm_portal()
        yield session
    finally:
        session.down()


def near(got, want, tol: int) -> bool:
    return all(abs(g - w) <= tol for g, w in zip(got, want, strict=True))


def assert_painted(img: Image.Image, tol: int = 0) -> None:
    """Background, the Wayland window (red) and the X11 window (green) where sway put them; `tol`
    per channel for a lossy (WebP) image, sampled away from the edges."""
    img = img.convert("RGB")
    assert img.size == SIZE
    x, y, w, h = GEOMETRY["wayland"]
    pad = 2 if tol == 0 else 12
    for point, want in (
        ((5 + pad, 5 + pad), BACKGROUND),
        ((x + pad, y + pad), RED),
        ((x + w - 1 - pad, y + h - 1 - pad), RED),
        ((x + w + pad, y + pad), BACKGROUND),  # the window ends where it should
        ((x - pad - 1, y + h // 2), BACKGROUND),
        ((GEOMETRY["x11"][0] + 150, GEOMETRY["x11"][1] + 100), GREEN),
    ):
        assert near(img.getpixel(point), want, tol), (point, img.getpixel(point), want)


def root_env(wl, **extra: str) -> dict[str, str]:
    """The session's variables for a root process (grim works as root; the portal refuses root)."""
    env = cli_env(**extra)
    env.update({k: wl.env[k] for k in ("WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DISPLAY")})
    env.update(XDG_SESSION_TYPE="wayland", DBUS_SESSION_BUS_ADDRESS=wl.env["DBUS_SESSION_BUS_ADDRESS"])
    return env


ONE_FRAME = textwrap.dedent(
    """
    import sys
    from collector.devices.screen.settings import ScreenSettings
    from collector.devices.screen.source import ScreenSource
    src = ScreenSource(ScreenSettings(backend=sys.argv[1], image_format="png"))
    src.open()
    frame = src.capture()
    src.close()
    open(sys.argv[2], "wb").write(frame.image)
    print(src.backend, frame.extra["backend"], frame.extra["black_frames"])
    """
)


@pytest.mark.parametrize("backend", ["grim", "portal"])
def test_each_wayland_backend_delivers_the_painted_screen(wl, backend, tmp_path):
    out = wl.user_dir("out") / "frame.png"
    proc = wl.run([wl.python, "-c", ONE_FRAME, backend, str(out)], {"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [backend, backend, "0"]
    assert_painted(Image.open(out))


def test_grim_works_as_root_and_the_portal_refuses_root_in_one_line(wl, tmp_path):
    env = root_env(wl)
    out = tmp_path / "root.png"
    proc = subprocess.run(
        [sys.executable, "-c", ONE_FRAME, "grim", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert_painted(Image.open(out))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "run",
            "--offline",
            "--workspace",
            str(uuid.uuid4()),
            "--no-eeg",
            "--screen",
            "on",
            "--screen-backend",
            "portal",
            "--duration",
            "1",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 5, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "portal refused" in lines[0] and "desktop user" in lines[0], proc.stderr


def _screen_rows(sandbox) -> list[dict]:
    return sorted(
        (r for r in sandbox.evidence(sandbox.workspace_id) if r["type"] == "screen"),
        key=lambda r: r["chunk_index"],
    )


@pytest.mark.slow
def test_run_auto_on_sway_delivers_real_screenshots_through_the_portal(wl, sandbox, tmp_path):
    spool = wl.user_dir("spool")
    env = {
        "PYTHONPATH": str(REPO),
        "OPENLESSON_API_KEY": sandbox.api_key,
        "OPENLESSON_BASE_URL": sandbox.base_url,
    }
    proc = wl.run(
        [
            wl.python,
            "-m",
            "collector",
            "run",
            "--workspace",
            sandbox.workspace_id,
            "--no-eeg",
            "--screen",
            "auto",
            "--screen-interval",
            "0.5",
            "--screen-keepalive",
            "1",
            "--duration",
            "3",
            "--spool",
            str(spool),
            "--log-format",
            "json",
        ],
        env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    said = [json.loads(line) for line in proc.stderr.splitlines() if '"screen_backend"' in line]
    assert said and said[0]["backend"] == "portal", proc.stderr
    rows = _screen_rows(sandbox)
    assert len(rows) >= 2, proc.stderr
    for row in rows:
        assert row["metadata"]["backend"] == "portal" and row["metadata"]["black_frames"] == 0
        assert "black" not in row["metadata"]
        assert_painted(Image.open(io.BytesIO(sandbox.read_artifact(row["id"]))), tol=8)


def test_run_auto_as_root_falls_to_grim_and_says_so(wl, sandbox, tmp_path):
    env = root_env(wl, OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "run",
            "--workspace",
            sandbox.workspace_id,
            "--no-eeg",
            "--screen",
            "on",
            "--screen-interval",
            "0.5",
            "--duration",
            "2",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "screenshots through grim" in proc.stderr
    rows = _screen_rows(sandbox)
    assert rows and all(r["metadata"]["backend"] == "grim" for r in rows)
    assert_painted(Image.open(io.BytesIO(sandbox.read_artifact(rows[0]["id"]))), tol=8)
    for fmt in ([], ["--json"]):  # `status` says the backend too (issue 21)
        status = subprocess.run(
            [sys.executable, "-m", "collector", "status", "--spool", str(tmp_path / "spool"), *fmt],
            env=env, capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        if fmt:
            assert [c["screen_backend"] for c in json.loads(status.stdout)["captures"]] == ["grim"]
        else:
            header, row = status.stdout.splitlines()[1:3]
            end = header.index("SCREEN") + len("SCREEN")  # cells are right-aligned under their name
            assert "SCREEN" in header and row[:end].endswith(" grim"), status.stdout


def xwayland_only_env(wl, **extra: str) -> dict[str, str]:
    """A Wayland session where only XWayland is reachable: no Wayland socket, no session bus."""
    env = cli_env(**extra)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.update(DISPLAY=wl.env["DISPLAY"], XDG_SESSION_TYPE="wayland", XDG_RUNTIME_DIR=str(wl.runtime))
    return env


@pytest.mark.slow
def test_xwayland_only_black_frames_are_counted_and_never_sent(wl, sandbox, tmp_path):
    name = f"wl-black-{uuid.uuid4().hex[:8]}"
    env = xwayland_only_env(wl, OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    spool = tmp_path / "spool"
    with XdfPlayer(MUSE_XDF, stream_name=name, source_id=name, speed=1.0):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "collector",
                "run",
                "--workspace",
                sandbox.workspace_id,
                "--stream-name",
                name,
                "--screen",
                "auto",
                "--screen-interval",
                "0.3",
                "--screen-keepalive",
                "0.5",
                "--duration",
                "4",
                "--chunk-seconds",
                "2",
                "--spool",
                str(spool),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    assert proc.returncode == 0, proc.stderr
    assert _screen_rows(sandbox) == []  # not one black frame sent, not even as a keep-alive
    said = [line for line in proc.stderr.splitlines() if "screenshots are not possible" in line]
    assert len(said) == 1 and "XWayland" in said[0], proc.stderr
    assert "3 black held back" in proc.stderr
    summary = next(
        r for r in sandbox.evidence(sandbox.workspace_id) if r["metadata"].get("kind") == "session-summary"
    )
    totals = json.loads(sandbox.read_artifact(summary["id"]))["totals"]
    assert totals["black_frames"] == 3 and totals["screenshots"] == 0
    sessions = subprocess.run(
        [sys.executable, "-m", "collector", "sessions", "--spool", str(spool)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    header, row = sessions.stdout.splitlines()[:2]
    at = header.index("BLACK")  # columns are padded to the header: the cell starts under its name
    assert row[at:].split()[0] == "3", sessions.stdout


def test_xwayland_only_with_screen_on_exits_5_naming_the_black_frames(wl, tmp_path):
    env = xwayland_only_env(wl)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "run",
            "--offline",
            "--workspace",
            str(uuid.uuid4()),
            "--no-eeg",
            "--screen",
            "on",
            "--duration",
            "1",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 5, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "x11 gives only black frames" in lines[0] and "XWayland" in lines[0], (
        proc.stderr
    )


def test_doctor_names_each_backend_and_the_one_with_a_real_frame(wl):
    proc = wl.run(
        [wl.python, "-m", "collector", "doctor", "--json", "--lsl-wait", "0.2"],
        {"PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    display = checks["display"]
    assert display["status"] == "ok", display
    detail = display["detail"]
    assert detail.startswith("screenshots work through portal (1280x720)"), detail
    assert "grim real frame 1280x720" in detail and "x11 only a black frame (XWayland" in detail, detail
