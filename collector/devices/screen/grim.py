"""The grim grabber: screenshots of a wlroots Wayland compositor (sway, Hyprland, river, ...).

grim (https://sr.ht/~emersion/grim/, Debian package `grim`) speaks the compositor's
wlr-screencopy protocol and writes the whole desktop (every output) as one image; it is run once
per frame as a subprocess (~0.05 s at 1280x720), with PPM output so nothing is PNG-encoded.
GNOME and KDE do not offer wlr-screencopy: there the portal grabber is the way.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from collector.errors import NoSourceError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("collector.devices.screen")

GRIM_TIMEOUT_S = 10.0


def grim_unavailable(env: dict[str, str]) -> str | None:
    """Why grim cannot be used here (None: it can be tried)."""
    if not sys.platform.startswith("linux") and not sys.platform.startswith("freebsd"):
        return "grim is for Wayland (Linux) desktops"
    if not env.get("WAYLAND_DISPLAY"):
        return "not a Wayland session (WAYLAND_DISPLAY is not set)"
    if shutil.which("grim", path=env.get("PATH")) is None:
        return "grim is not installed (Debian/Ubuntu: `apt install grim`; wlroots desktops only)"
    return None


class GrimGrabber:
    """A `Grabber` (collector.devices.screen.grabber) through the grim command: the whole desktop."""

    name = "grim"
    black_means_broken = False  # grim reads the compositor's own pixels: black is what is shown

    def __init__(self, monitor: int | str = "primary") -> None:
        """monitor: grim takes the whole desktop; a specific monitor number is for the x11 backend."""
        self.wanted = monitor
        self.monitor: int | str = "all"
        self.size: tuple[int, int] = (0, 0)
        self._open = False
        self._first: Image.Image | None = None

    def open(self) -> None:
        reason = grim_unavailable(dict(os.environ))
        if reason:
            raise NoSourceError(f"no screen available: grim: {reason}")
        self._open = True
        self._first = self._take()  # handed out by the first grab(): one capture, not two
        self.size = self._first.size
        if self.wanted not in ("primary", "all", 1):
            log.warning(
                "screen: grim captures the whole desktop; --monitor %s is used by x11 only", self.wanted
            )

    def grab(self) -> Image.Image:
        """The desktop as an RGB image; NoSourceError when grim fails (compositor gone, no screencopy)."""
        first, self._first = self._first, None
        return first if first is not None else self._take()

    def _take(self) -> Image.Image:
        from PIL import Image, UnidentifiedImageError

        if not self._open:
            raise RuntimeError("GrimGrabber.open() must be called before grab()")
        try:
            done = subprocess.run(
                ["grim", "-t", "ppm", "-"], capture_output=True, timeout=GRIM_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NoSourceError(f"no screen available: grim failed ({exc})") from exc
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit status {done.returncode}"
            raise NoSourceError(
                f"no screen available: grim failed ({why}); it needs a wlroots compositor "
                "(sway, Hyprland, river...)"
            )
        try:
            return Image.open(io.BytesIO(done.stdout)).convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise NoSourceError(f"no screen available: grim gave no image ({exc})") from exc

    def close(self) -> None:
        self._open = False
