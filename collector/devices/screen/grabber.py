"""Where screenshots come from: the `Grabber` a screen source uses, chosen for this session.

A grabber opens a display, grabs one monitor (or all) as an RGB image, and closes. `open_grabber`
picks the one for this session: X11 (and XWayland) through mss (`collector.devices.screen.x11`)
today; without any display it says why, before trying (`no_display_reason`). Other backends
(Wayland portals, compositors' own protocols) plug in here.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Protocol

from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.x11 import X11Grabber
from collector.errors import NoSourceError

if TYPE_CHECKING:
    from PIL import Image


class Grabber(Protocol):
    """Takes screenshots of one display's monitor (or all of them)."""

    monitor: int | str  # the monitor grabbed, as resolved by open() ("primary" -> its index)
    size: tuple[int, int]  # (width, height) of the area grabbed, known after open()

    def open(self) -> None:
        """Connect; NoSourceError ("no screen available: ...") when the display cannot be captured,
        UsageError for a monitor it does not have."""
        ...

    def grab(self) -> Image.Image:
        """One screenshot in RGB; NoSourceError when the display went away (the source reconnects once)."""
        ...

    def close(self) -> None:
        """Disconnect; never raises for a display that is already gone."""
        ...


def no_display_reason(display: str | None, env: dict[str, str]) -> str | None:
    """Why there cannot be an X screen, before even trying; None on macOS/Windows or with a DISPLAY."""
    if sys.platform in ("darwin", "win32") or display:
        return None
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return (
            "this is a Wayland session without XWayland (DISPLAY is not set); enable XWayland "
            "or log in to an X11 session, or run with --screen off"
        )
    return (
        "DISPLAY is not set (no X server: a headless machine, a service, or SSH without -X); "
        "run inside a desktop session or with --screen off"
    )


def open_grabber(settings: ScreenSettings) -> Grabber:
    """An open grabber for `settings`' display and monitor; NoSourceError when there is no screen."""
    env = dict(os.environ)
    display = settings.display or env.get("DISPLAY")
    reason = no_display_reason(display, env)
    if reason:
        raise NoSourceError(f"no screen available: {reason}")
    grabber = X11Grabber(settings.monitor, settings.display)
    grabber.open()
    return grabber
