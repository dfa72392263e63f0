"""The portal grabber: screenshots through the desktop's xdg-desktop-portal, over D-Bus.

    org.freedesktop.portal.Screenshot.Screenshot("", {interactive: false, handle_token})
        -> a Request object; its Response signal carries (code, {uri}) -> read the file, delete it

The portal is the desktop-neutral way to take a screenshot on Wayland: GNOME, KDE and (with
xdg-desktop-portal-wlr plus an Access implementation such as xdg-desktop-portal-gtk) wlroots
desktops offer it. D-Bus goes through dbus-fast (pure-Python asyncio D-Bus; already installed on
Linux as a dependency of bleak, which muselsl needs; maintained by the Bluetooth-Devices group for
Home Assistant); it is imported only when the portal is opened, so nothing Linux-only loads at
import time. Each grab is one `asyncio.run` on its own connection (~0.06-0.09 s on a headless sway;
the first one ~0.25 s while D-Bus starts the portals).

A portal that never answers (a permission prompt nobody clicks, or a refusal the frontend does not
report) is bounded by `timeout_s`; the error says what to do in one line. The ScreenCast interface
(grant once with persist_mode and a restore token, frames over PipeWire) is not built: see
docs/reference/not-built.md.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from collector.errors import NoSourceError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("collector.devices.screen")

DEST = "org.freedesktop.portal.Desktop"
OBJECT = "/org/freedesktop/portal/desktop"
SCREENSHOT = "org.freedesktop.portal.Screenshot"
REQUEST = "org.freedesktop.portal.Request"
DEFAULT_TIMEOUT_S = 20.0

FIX_TIMEOUT = (
    "allow screenshots for this program in the desktop's privacy settings (GNOME: Settings > "
    "Apps > Screenshots), or answer the desktop's prompt, then start again; or use "
    "--screen-backend grim (wlroots desktops) or --screen off"
)


class PortalError(NoSourceError):
    """The portal refused, failed or did not answer; the message is one line with the fix."""


def portal_unavailable(env: dict[str, str]) -> str | None:
    """Why the portal cannot be tried here (None: it can be)."""
    if not sys.platform.startswith("linux") and not sys.platform.startswith("freebsd"):
        return "xdg-desktop-portal is for Linux desktops"
    if not env.get("DBUS_SESSION_BUS_ADDRESS") and not os.path.exists(
        os.path.join(env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}", "bus")
    ):
        return "no session D-Bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    return None


async def _screenshot_uri(timeout_s: float) -> str:
    """One Screenshot call and its Response; the file's uri. Raises PortalError."""
    import asyncio

    from dbus_fast import BusType, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    try:
        bus = await MessageBus(bus_type=BusType.SESSION).connect()
    except Exception as exc:  # dbus-fast raises OSError, AuthError, EOFError... for a bus it cannot use
        raise PortalError(
            f"no screen available: portal: cannot connect to the session D-Bus ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        sender = (bus.unique_name or "").lstrip(":").replace(".", "_")
        token = "collector" + secrets.token_hex(8)
        handle = f"{OBJECT}/request/{sender}/{token}"
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def on_message(msg: Message) -> None:
            if (
                msg.message_type == MessageType.SIGNAL
                and msg.interface == REQUEST
                and msg.member == "Response"
                and msg.path == handle
                and not answer.done()
            ):
                answer.set_result(msg.body)

        bus.add_message_handler(on_message)
        # Subscribe before calling: the Response may come before the call's own reply.
        rule = f"type='signal',interface='{REQUEST}',member='Response',path='{handle}'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        options = {"interactive": Variant("b", False), "handle_token": Variant("s", token)}
        reply = await bus.call(
            Message(
                destination=DEST,
                path=OBJECT,
                interface=SCREENSHOT,
                member="Screenshot",
                signature="sa{sv}",
                body=["", options],
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            name = getattr(reply, "error_name", "") or "no reply"
            detail = " ".join(str(b) for b in (reply.body if reply else []))
            raise PortalError(f"no screen available: portal: {_explain(name, detail)}")
        code, results = await asyncio.wait_for(answer, timeout_s)
        if code != 0:
            what = "cancelled" if code == 1 else "refused"
            raise PortalError(
                f"no screen available: portal: the screenshot was {what} (Response code {code}); "
                + FIX_TIMEOUT
            )
        uri = results.get("uri")
        if uri is None:
            raise PortalError("no screen available: portal: the answer holds no image (no uri)")
        return str(uri.value)
    finally:
        bus.disconnect()


def _explain(error_name: str, detail: str) -> str:
    if error_name in (
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.UnknownMethod",
    ):
        return (
            f"the desktop offers no screenshot portal ({error_name}: {detail}); install xdg-desktop-portal "
            "and the one for this desktop (-gnome, -kde, or -wlr with -gtk), or use --screen-backend grim"
        )
    if error_name == "org.freedesktop.DBus.Error.AccessDenied":
        why = (
            " (the collector runs as root; the portal serves the desktop's user only)"
            if os.geteuid() == 0
            else ""
        )
        return f"the portal refused this process{why}: {detail}; run the collector as the desktop user"
    return f"{error_name}: {detail}"


class PortalGrabber:
    """A `Grabber` (collector.devices.screen.grabber) through xdg-desktop-portal's Screenshot: the
    whole desktop. See the module docstring."""

    name = "portal"
    black_means_broken = False  # the compositor's own pixels: black is what is shown

    def __init__(self, monitor: int | str = "primary", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """monitor: the portal gives the whole desktop; timeout_s bounds the wait for each answer."""
        self.wanted = monitor
        self.timeout_s = timeout_s
        self.monitor: int | str = "all"
        self.size: tuple[int, int] = (0, 0)
        self._open = False
        self._first: Image.Image | None = None

    def open(self) -> None:
        reason = portal_unavailable(dict(os.environ))
        if reason:
            raise PortalError(f"no screen available: portal: {reason}")
        self._open = True
        self._first = self._take()  # handed out by the first grab(): one capture, not two
        self.size = self._first.size
        if self.wanted not in ("primary", "all", 1):
            log.warning(
                "screen: the portal captures the whole desktop; --monitor %s is used by x11 only", self.wanted
            )

    def grab(self) -> Image.Image:
        """The desktop as an RGB image; PortalError (a NoSourceError) when the portal refuses,
        fails, or gives no answer within timeout_s."""
        first, self._first = self._first, None
        return first if first is not None else self._take()

    def _take(self) -> Image.Image:
        import asyncio  # here, as dbus-fast: an X11 or offline capture never loads it (~15 ms)

        from PIL import Image, UnidentifiedImageError

        if not self._open:
            raise RuntimeError("PortalGrabber.open() must be called before grab()")
        try:
            # The portal call and the wait for its answer, bounded as a whole (the method call
            # itself was once seen to hang on a cold start).
            uri = asyncio.run(asyncio.wait_for(_screenshot_uri(self.timeout_s), self.timeout_s + 5))
        except (TimeoutError, asyncio.TimeoutError):
            raise PortalError(
                f"no screen available: portal: no answer within {self.timeout_s:g} s (a permission prompt "
                f"nobody answered, or screenshots denied); {FIX_TIMEOUT}"
            ) from None
        path = unquote(urlparse(uri).path)
        try:
            with open(path, "rb") as f:
                data = f.read()
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise PortalError(
                f"no screen available: portal: cannot read its screenshot {path} ({exc})"
            ) from exc
        _remove_own(path)
        return image

    def close(self) -> None:
        self._open = False


def _remove_own(path: str) -> None:
    """Delete the portal's file when it is ours (GNOME writes one into ~/Pictures per call)."""
    try:
        st = os.stat(path)
        if st.st_uid == os.geteuid():
            os.remove(path)
    except OSError as exc:
        log.debug("could not remove the portal's screenshot %s: %s", path, exc)
