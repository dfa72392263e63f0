"""Where screenshots come from: the `Grabber` a screen source uses, chosen for this session.

Backends (`--screen-backend`, `[screen] backend`):

    x11     mss on an X display (also XWayland; on macOS / Windows mss's own path)   x11.py
    portal  xdg-desktop-portal's Screenshot over D-Bus (GNOME, KDE, wlroots + xdpw)  portal.py
    grim    the grim command, wlroots compositors (sway, Hyprland, ...)              grim.py
    auto    the first of `auto_order()` that gives a real (not black, not empty) frame

`open_backend` opens one and takes a first frame; a backend whose frame is black where black
means broken (mss under XWayland: the rootless root window has no contents) is passed over.
Without any of them it says why, in one line (NoSourceError "no screen available: ...").
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Protocol

from collector.devices.screen.grim import GrimGrabber, grim_unavailable
from collector.devices.screen.image import is_blank
from collector.devices.screen.portal import PortalGrabber, portal_unavailable
from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.x11 import X11Grabber
from collector.errors import NoSourceError

if TYPE_CHECKING:
    from PIL import Image

BACKENDS = ("x11", "portal", "grim")


class Grabber(Protocol):
    """Takes screenshots of one display's monitor (or all of them)."""

    name: str  # the backend: x11 | portal | grim
    monitor: int | str  # the monitor grabbed, as resolved by open() ("primary" -> its index)
    size: tuple[int, int]  # (width, height) of the area grabbed, known after open()
    black_means_broken: bool  # a black frame is this backend failing, not the screen (XWayland)

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


def wayland_session(env: dict[str, str]) -> bool:
    """A Wayland desktop (also when X11 clients run through XWayland in it)."""
    return sys.platform.startswith("linux") and bool(
        env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland"
    )


def no_display_reason(display: str | None, env: dict[str, str]) -> str | None:
    """Why there cannot be an X screen, before even trying; None on macOS/Windows or with a DISPLAY."""
    if sys.platform in ("darwin", "win32") or display:
        return None
    if wayland_session(env):
        return (
            "this is a Wayland session without XWayland (DISPLAY is not set); enable XWayland "
            "or log in to an X11 session, or run with --screen off"
        )
    return (
        "DISPLAY is not set (no X server: a headless machine, a service, or SSH without -X); "
        "run inside a desktop session or with --screen off"
    )


def unavailable_reason(name: str, settings: ScreenSettings, env: dict[str, str]) -> str | None:
    """Why backend `name` cannot even be tried here (None: it can)."""
    if name == "x11":
        return no_display_reason(settings.display or env.get("DISPLAY"), env)
    if name == "portal":
        return portal_unavailable(env)
    return grim_unavailable(env)


def auto_order(env: dict[str, str]) -> tuple[str, ...]:
    """The order `auto` tries: on Wayland the portal, then grim, then x11 (XWayland, usually black);
    elsewhere x11 only, today's path (on macOS and Windows: mss's own)."""
    if sys.platform in ("darwin", "win32"):
        return ("x11",)
    if wayland_session(env):
        return ("portal", "grim", "x11")
    return ("x11",)


def make_grabber(name: str, settings: ScreenSettings) -> Grabber:
    if name == "x11":
        return X11Grabber(settings.monitor, settings.display)
    if name == "portal":
        return PortalGrabber(settings.monitor, settings.portal_timeout_s)
    return GrimGrabber(settings.monitor)


BROKEN_BLACK = "XWayland: X11 capture cannot see Wayland windows; use --screen-backend portal or grim"


def _try(name: str, settings: ScreenSettings, env: dict[str, str]) -> tuple[Grabber, Image.Image]:
    """Open backend `name` and take its first frame; NoSourceError when it cannot, or gives nothing."""
    reason = unavailable_reason(name, settings, env)
    if reason:
        raise NoSourceError(f"no screen available: {reason}")
    grabber = make_grabber(name, settings)
    grabber.open()
    try:
        image = grabber.grab()
    except BaseException:
        grabber.close()
        raise
    if image.width == 0 or image.height == 0:
        grabber.close()
        raise NoSourceError(f"no screen available: {name} gives empty frames")
    return grabber, image


def open_backend(
    settings: ScreenSettings,
    exclude: tuple[str, ...] = (),
    real_only: bool = False,
    last_resort: bool = False,
) -> tuple[Grabber, Image.Image]:
    """The open grabber of settings.backend (or the first of auto's that works) and its first frame.

    A backend whose first frame is black is kept only when no other one sees more (the screen may
    really be dark); one whose black means broken (mss under XWayland) only with `last_resort`
    (`--screen auto`: the source then counts its black frames and stops). `exclude`: backends not
    to try. `real_only`: any black first frame disqualifies (falling back from black frames).
    Raises NoSourceError naming each backend's reason in one line, UsageError for a monitor x11 lacks.
    """
    env = dict(os.environ)
    names = auto_order(env) if settings.backend == "auto" else (settings.backend,)
    names = tuple(n for n in names if n not in exclude)
    if not names:
        raise NoSourceError("no screen available: no other screen backend to try")
    reasons: list[str] = []
    doubtful: list[tuple[Grabber, Image.Image]] = []  # black first frames, best first
    for name in names:
        try:
            grabber, image = _try(name, settings, env)
        except NoSourceError as err:
            reason = str(err).removeprefix("no screen available: ")
            reasons.append(reason if len(names) == 1 or reason.startswith(name) else f"{name}: {reason}")
            continue
        if not is_blank(image):
            for other, _ in doubtful:
                other.close()
            return grabber, image
        if grabber.black_means_broken:
            reasons.append(f"{name} gives only black frames ({BROKEN_BLACK})")
            if last_resort and not real_only:
                doubtful.append((grabber, image))
            else:
                grabber.close()
            continue
        reasons.append(f"{name}: only a black frame")
        if real_only:
            grabber.close()
        else:
            doubtful.insert(sum(not g.black_means_broken for g, _ in doubtful), (grabber, image))
    if doubtful:
        for other, _ in doubtful[1:]:
            other.close()
        return doubtful[0]
    raise NoSourceError("no screen available: " + "; ".join(reasons))


def probe_backends(settings: ScreenSettings) -> list[tuple[str, str, str]]:
    """Each backend tried once, for `collector doctor`: (name, outcome, detail) in auto's order
    then the others; outcome "real" (a real test frame; detail "WxH"), "black", "failed" or
    "absent" (cannot be tried here; detail says why)."""
    env = dict(os.environ)
    order = auto_order(env)
    results = []
    for name in (*order, *(n for n in BACKENDS if n not in order)):
        reason = unavailable_reason(name, settings, env)
        if reason:
            results.append((name, "absent", reason))
            continue
        try:
            grabber, image = _try(name, settings, env)
        except Exception as exc:  # reported, whatever it is (a missing libX11, a refused portal)
            detail = str(exc).removeprefix("no screen available: ").removeprefix(f"{name}: ")
            results.append((name, "failed", detail or type(exc).__name__))
            continue
        grabber.close()
        # Off Wayland a black X11 frame is the screen as it is (x11's path is unchanged there).
        if is_blank(image) and (grabber.black_means_broken or wayland_session(env)):
            why = f" ({BROKEN_BLACK})" if grabber.black_means_broken else " (or the screen is black)"
            results.append((name, "black", f"only a black frame{why}"))
        else:
            results.append((name, "real", f"{image.width}x{image.height}"))
    return results
