"""The X11 grabber: screenshots of an X display (or XWayland) through mss.

mss is imported only when a display is opened (`collector --help` stays fast), and its
ScreenShotError never leaves this module: a display that cannot be opened or captured is a
NoSourceError ("no screen available: <reason>"), a display lost during a grab is a NoSourceError
the source reconnects after once.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from collector.errors import NoSourceError, UsageError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("collector.devices.screen")


def _quiet_close(sct: Any) -> None:
    import mss

    try:
        sct.close()
    except mss.ScreenShotError as exc:  # the X server is already gone
        log.debug("closing the display connection: %s", exc)


class X11Grabber:
    """A `Grabber` (collector.devices.screen.grabber) over mss: one monitor of an X display, or all.

    On macOS and Windows this is mss's own Quartz / GDI path (still called backend "x11").
    """

    name = "x11"

    def __init__(self, monitor: int | str, display: str | None = None) -> None:
        """monitor: "primary", "all" or an mss index (1 = first); display: X display name, None: $DISPLAY."""
        self.wanted = monitor
        self.display = display
        self.monitor: int | str = monitor  # resolved by open(): "primary" -> its index
        self.size: tuple[int, int] = (0, 0)
        self._sct: Any = None
        self._region: dict[str, int] = {}
        # Under XWayland the root window has no contents: mss grabs come back all black, without
        # an error (python-mss#155). Known from RandR's output name ("XWAYLAND0") after open().
        self.black_means_broken = False

    def open(self) -> None:
        import mss

        env = dict(os.environ)
        display = self.display or env.get("DISPLAY")
        kwargs: dict[str, Any] = {}
        if self.display and sys.platform.startswith("linux"):
            kwargs["display"] = self.display
        try:
            sct = mss.MSS(**kwargs)
        except mss.ScreenShotError as exc:
            raise NoSourceError(
                f"no screen available: cannot open display {display!r} ({exc}); check that the X server "
                "is running and DISPLAY is right, or run with --screen off"
            ) from exc
        try:
            self._region, self.monitor = self._select_monitor(sct)
            # One pixel proves the grab path (depth, visual, MIT-SHM) works before the capture starts.
            sct.grab({"left": self._region["left"], "top": self._region["top"], "width": 1, "height": 1})
        except mss.ScreenShotError as exc:
            _quiet_close(sct)
            raise NoSourceError(
                f"no screen available: display {display!r} cannot be captured ({exc}); "
                "run with --screen off to capture EEG only"
            ) from exc
        except BaseException:
            _quiet_close(sct)
            raise
        self._sct = sct
        self.size = (self._region["width"], self._region["height"])
        outputs = [str(m.get("output") or "") for m in sct.monitors[1:]]
        self.black_means_broken = any(o.startswith("XWAYLAND") for o in outputs) or bool(
            sys.platform.startswith("linux")
            and (env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"))
        )

    def _select_monitor(self, sct: Any) -> tuple[dict[str, int], int | str]:
        monitors = sct.monitors
        wanted = self.wanted
        if len(monitors) < 2:
            import mss

            raise mss.ScreenShotError("the X server reports no monitor")
        if wanted == "all":
            return dict(monitors[0]), "all"
        if wanted == "primary":
            primary = sct.primary_monitor
            return dict(primary), monitors.index(primary)
        index = int(wanted)  # parse_monitor leaves only "all", "primary" or a number
        if index >= len(monitors):
            raise UsageError(
                f"The monitor {wanted} does not exist: this display has {len(monitors) - 1} monitor(s); "
                f"use 1..{len(monitors) - 1}, 'all' or 'primary'."
            )
        return dict(monitors[index]), index

    def grab(self) -> Image.Image:
        """The monitor as an RGB image; NoSourceError when the display is lost."""
        from PIL import Image

        shot = self._grab_once()
        # BGRX raw decode: ~3 ms at 1920x1080, several times faster than ScreenShot.rgb.
        return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")

    def _grab_once(self) -> Any:
        import mss

        if self._sct is None:
            raise RuntimeError("X11Grabber.open() must be called before grab()")
        try:
            return self._sct.grab(self._region)
        except (mss.ScreenShotError, AssertionError, ValueError) as exc:
            # mss 10.2 asserts (or, under -O, dereferences NULL -> ValueError) when the X
            # connection is lost mid-grab instead of raising ScreenShotError.
            raise NoSourceError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc

    def close(self) -> None:
        sct, self._sct = self._sct, None
        if sct is not None:
            _quiet_close(sct)
