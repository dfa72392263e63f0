"""A real headless Wayland session for screen tests: sway (wlroots, headless, pixman renderer) with
XWayland, PipeWire + WirePlumber and xdg-desktop-portal (-wlr, -gtk) on a private session D-Bus,
all run as an unprivileged user; GTK probe windows painted in known colours at known places.

    session = WaylandSession().up()         # as root (CI is root); ~0.3-0.8 s
    session.window("wayland", "ff0000")     # a native Wayland window, 300x200 at (100, 100)
    session.window("x11", "00ff00")         # an X11 window through XWayland, 300x200 at (600, 300)
    session.run([...], as_user=True)        # a process of the session (its user, its env)
    session.down()

Debian 12 packages (.ci/run installs them): sway grim xwayland dbus dbus-user-session
xdg-desktop-portal xdg-desktop-portal-wlr xdg-desktop-portal-gtk pipewire wireplumber
python3-gi gir1.2-gtk-3.0 x11-xserver-utils. Why -gtk: xdg-desktop-portal 1.16 exports the
Screenshot portal only when some backend implements impl.portal.Access, which -wlr does not.

Only one session runs at a time on a machine (a file lock): xdg-desktop-portal-wlr writes every
portal screenshot to the fixed path /tmp/out.png. The collector as the session user needs to run
the project's Python: `grant_python()` gives the user traverse-only (o+x) access to the folders
above it (a pyenv under /root is mode 700), and `down()` takes it back.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROBE = HERE / "wayland_probe.py"
USER = os.environ.get("COLLECTOR_TEST_WAYLAND_USER", "wlcap")
SIZE = (1280, 720)
BACKGROUND = (0x20, 0x40, 0x80)
# Where the probe windows land (the for_window rules of the sway config below): x, y, w, h.
GEOMETRY = {"wayland": (100, 100, 300, 200), "x11": (600, 300, 300, 200)}
LOCK = "/tmp/collector-wayland-tests.lock"
NEEDED = ("sway", "grim", "Xwayland", "runuser", "dbus-run-session", "pipewire", "wireplumber")
PORTALS = ("/usr/libexec/xdg-desktop-portal", "/usr/libexec/xdg-desktop-portal-wlr")

SWAY_CONFIG = """\
output * resolution {w}x{h} position 0 0 bg #{bg} solid_color
xwayland force
default_border none
default_floating_border none
focus_follows_mouse no
for_window [title="^probe-wl$"] floating enable, resize set 300 200, move absolute position 100 100
for_window [title="^probe-x11$"] floating enable, resize set 300 200, move absolute position 600 300
exec {runtime}/ready.sh
"""
# Run by sway once it is up: the display variables into the D-Bus activation environment (the
# portals are D-Bus activated), root let into XWayland, and the variables published.
READY = """\
#!/bin/sh
dbus-update-activation-environment WAYLAND_DISPLAY DISPLAY SWAYSOCK XDG_CURRENT_DESKTOP=sway \\
    XDG_SESSION_TYPE=wayland NO_AT_BRIDGE=1
command -v xhost >/dev/null && xhost +si:localuser:root >/dev/null
{ echo "WAYLAND_DISPLAY=$WAYLAND_DISPLAY"; echo "DISPLAY=$DISPLAY"; echo "SWAYSOCK=$SWAYSOCK"
  echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"; echo "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
} > "$XDG_RUNTIME_DIR/session.env.tmp" && mv "$XDG_RUNTIME_DIR/session.env.tmp" "$XDG_RUNTIME_DIR/session.env"
"""
XDPW_CONFIG = "[screencast]\nchooser_type=none\noutput_name=HEADLESS-1\n"
# Debian's session bus plus root may connect (a session bus admits its own uid only by default).
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/session.conf</include>
  <policy context="default"><allow user="root"/></policy>
</busconfig>
"""


def missing() -> str | None:
    """Why the session cannot run here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "a Wayland session needs Linux"
    if os.geteuid() != 0:
        return "the Wayland session tests start sway as another user: run them as root (CI does)"
    absent = [b for b in NEEDED if shutil.which(b) is None] + [p for p in PORTALS if not os.path.exists(p)]
    if absent:
        return f"not installed: {', '.join(absent)} (Debian: see tests/wayland.py; .ci/run installs them)"
    probe = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk",
        ],
        capture_output=True,
    )
    if probe.returncode != 0:
        return "the probe windows need python3-gi and gir1.2-gtk-3.0 (Debian packages)"
    return None


def _chown(path: Path, uid: int, gid: int, mode: int | None = None) -> None:
    os.chown(path, uid, gid)
    if mode is not None:
        os.chmod(path, mode)


class WaylandSession:
    def __init__(self, user: str = USER) -> None:
        self.user = user
        self.runtime = Path(f"/tmp/collector-wl-{os.getpid()}")
        self.env: dict[str, str] = {}
        self.leader: subprocess.Popen | None = None
        self.windows: list[subprocess.Popen] = []
        self.granted: list[tuple[str, int]] = []  # (folder, mode before) for down()
        self._lock = None

    # ---- up / down -------------------------------------------------------------------------------

    def up(self, timeout: float = 30.0) -> WaylandSession:
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held until down()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._up(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, timeout: float) -> None:
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", self.user], check=True)
            pw = pwd.getpwnam(self.user)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, Path(pw.pw_dir)
        shutil.rmtree(self.runtime, ignore_errors=True)
        self.runtime.mkdir(mode=0o700)
        _chown(self.runtime, self.uid, self.gid, 0o700)
        config = self.home / ".config"
        for folder in (config, config / "sway", config / "xdg-desktop-portal-wlr"):
            folder.mkdir(exist_ok=True)
            _chown(folder, self.uid, self.gid)
        bg = "".join(f"{c:02x}" for c in BACKGROUND)
        files = {
            config / "sway" / "config": SWAY_CONFIG.format(w=SIZE[0], h=SIZE[1], bg=bg, runtime=self.runtime),
            config / "xdg-desktop-portal-wlr" / "config": XDPW_CONFIG,
            self.runtime / "ready.sh": READY,
            self.runtime / "session-bus.conf": BUS_CONFIG,
        }
        for path, text in files.items():
            path.write_text(text)
            _chown(path, self.uid, self.gid, 0o755 if path.name == "ready.sh" else 0o644)
        env = {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(config),
            "XDG_CURRENT_DESKTOP": "sway",
            "XDG_SESSION_TYPE": "wayland",
            "WLR_BACKENDS": "headless",
            "WLR_LIBINPUT_NO_DEVICES": "1",
            "WLR_RENDERER": "pixman",
        }
        script = (
            'pipewire >"$XDG_RUNTIME_DIR/pipewire.log" 2>&1 & '
            'wireplumber >"$XDG_RUNTIME_DIR/wireplumber.log" 2>&1 & '
            'exec sway >"$XDG_RUNTIME_DIR/sway.log" 2>&1'
        )
        # Its own process group (start_new_session): down() ends the bus, portals, pipewire, sway
        # and XWayland at once.
        self.leader = subprocess.Popen(
            [
                "runuser",
                "-u",
                self.user,
                "--",
                "env",
                "-i",
                *[f"{k}={v}" for k, v in env.items()],
                "dbus-run-session",
                f"--config-file={self.runtime / 'session-bus.conf'}",
                "--",
                "sh",
                "-c",
                script,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        env_file = self.runtime / "session.env"
        deadline = time.monotonic() + timeout
        while not env_file.exists():
            if time.monotonic() > deadline or self.leader.poll() is not None:
                log = (
                    (self.runtime / "sway.log").read_text(errors="replace")[-2000:]
                    if (self.runtime / "sway.log").exists()
                    else ""
                )
                raise RuntimeError(f"the sway session did not come up within {timeout:g} s: {log}")
            time.sleep(0.05)
        self.env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)

    def down(self) -> None:
        for proc in self.windows:
            _kill_group(proc)
        self.windows.clear()
        if self.leader is not None:
            sock = self.env.get("SWAYSOCK")
            if sock and self.leader.poll() is None:  # SIGTERM to sway with XWayland up can hang
                subprocess.run(["swaymsg", "-s", sock, "exit"], capture_output=True, timeout=5, check=False)
                try:
                    self.leader.wait(3)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(self.leader)
            self.leader = None
        for folder, mode in reversed(self.granted):
            os.chmod(folder, mode)
        self.granted.clear()
        shutil.rmtree(self.runtime, ignore_errors=True)
        try:  # xdg-desktop-portal-wlr's fixed screenshot path
            if Path("/tmp/out.png").stat().st_uid == getattr(self, "uid", -1):
                Path("/tmp/out.png").unlink()
        except OSError:
            pass
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # ---- processes of the session ------------------------------------------------------------------

    def user_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "XDG_SESSION_TYPE": "wayland",
            "XDG_CURRENT_DESKTOP": "sway",
            "LANG": "C.UTF-8",
            "NO_AT_BRIDGE": "1",
            **self.env,
        }
        return {**env, **(extra or {})}

    def command(self, argv: list[str], extra_env: dict[str, str] | None = None) -> list[str]:
        """argv as the session's user, with the session's environment only."""
        env = self.user_env(extra_env)
        return ["runuser", "-u", self.user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]

    def run(self, argv: list[str], extra_env: dict[str, str] | None = None, timeout: float = 120, **kw):
        return subprocess.run(
            self.command(argv, extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def window(self, kind: str, rgb: str, timeout: float = 60.0) -> tuple[int, int, int, int]:
        """A probe window ('wayland' or 'x11') painted #rgb; returns its (x, y, w, h) once drawn."""
        title = {"wayland": "probe-wl", "x11": "probe-x11"}[kind]
        proc = subprocess.Popen(
            self.command(["/usr/bin/python3", str(PROBE), title, rgb], {"GDK_BACKEND": kind}),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.windows.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if line.strip() != "mapped":
            ended = proc.poll()
            why = f"its process ended with {ended}" if ended is not None else f"not within {timeout:g} s"
            raise RuntimeError(f"the {kind} probe window was not drawn ({why})")
        time.sleep(0.2)  # sway floats, sizes and places it at map: one more frame
        return GEOMETRY[kind]

    def grant_python(self) -> str:
        """Traverse-only (o+x) access for the session user to the folders above this Python and the
        tree (taken back by down()); returns the interpreter. Raises RuntimeError if still unusable."""
        import site

        paths = [os.path.realpath(sys.executable), sys.prefix, str(REPO), *site.getsitepackages()]
        for path in paths:
            for folder in [*reversed(Path(path).parents), Path(path)]:
                if folder.is_dir():
                    mode = folder.stat().st_mode & 0o7777
                    if not mode & 0o001:
                        self.granted.append((str(folder), mode))
                        os.chmod(folder, mode | 0o001)
        check = self.run(
            [sys.executable, "-c", "import collector, mss, dbus_fast, PIL"],
            {"PYTHONPATH": str(REPO)},
            timeout=60,
        )
        if check.returncode != 0:
            raise RuntimeError(f"the session user cannot run {sys.executable}: {check.stderr.strip()[-300:]}")
        return sys.executable

    def warm_portal(self, timeout: float = 60.0) -> float:
        """One portal screenshot as the session user, so D-Bus has started the portals before any
        test times them (a cold start was seen to take 25 s once: a D-Bus call timing out inside
        the portals). Returns the seconds it took; RuntimeError when it failed."""
        code = (
            "import time; from collector.devices.screen.portal import PortalGrabber\n"
            f"t = time.monotonic(); g = PortalGrabber(timeout_s={timeout}); g.open(); g.close()\n"
            "print(round(time.monotonic() - t, 3))"
        )
        proc = self.run([sys.executable, "-c", code], {"PYTHONPATH": str(REPO)}, timeout=timeout + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"the portal did not give a screenshot: {proc.stderr.strip()[-500:]}")
        return float(proc.stdout.split()[-1])

    def user_dir(self, name: str) -> Path:
        """A fresh folder the session user owns (a spool, an output), inside the session's runtime
        folder: pytest's own tmp_path is no good, as every pytest run resets pytest-of-root to 0700."""
        path = self.runtime / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o700)
        _chown(path, self.uid, self.gid, 0o700)
        return path


def _live(pgid: int) -> bool:
    """Any process of group pgid that is not a zombie (init reaps those a little later)."""
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return any(not line.strip().startswith("Z") for line in out.splitlines() if line.strip())


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group proc leads (D-Bus-activated portals, pipewire, XWayland stay in
    it), wait for it, SIGKILL what is left after 3 s."""
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and (proc.poll() is None or _live(proc.pid)):
            time.sleep(0.05)
        if proc.poll() is not None and not _live(proc.pid):
            break
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if proc.stdout:
        proc.stdout.close()
