"""Screen source: periodic screenshots with mss, encoded with Pillow, as `screen` evidence.

    grab (mss) -> RGB -> redact -> downscale to max_width -> 64x36 diff -> encode to fit 10 MB

Cadence: capture k is due at start + k * interval on a monotonic clock; a capture that overruns
skips the slots it missed (counted in `skipped_late`) instead of running them back to back.
Near-identical frames (mean absolute difference of 64x36 grayscale thumbnails against the last
*sent* frame below `diff_threshold`) are skipped and counted, but one frame goes out at least
every `keepalive_s`. While the privacy pause is on nothing is grabbed at all; the pause periods
ride on the next sent frame.

No X display, a dead X server, or Wayland without XWayland: `open()` raises NoSourceError
("no screen available: <reason>"); mss's ScreenShotError never leaves this module.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from collector.api.models import MAX_DECODED_BYTES
from collector.core.records import ScreenFrame
from collector.errors import NoSourceError, UsageError

if TYPE_CHECKING:
    from PIL import Image

    from collector.capture.pause import PauseControl

log = logging.getLogger(__name__)

FORMATS = ("jpeg", "webp", "png")
MIME_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "png": "png"}

# From scripts/bench_screen.py (README): at 1920x1080 text + UI content WebP q75 (method 2) is
# ~170 kB in ~70 ms with sharper text than JPEG q75, which is ~280 kB in ~6 ms.
DEFAULT_FORMAT = "webp"
DEFAULT_QUALITY = {"jpeg": 75, "webp": 75, "png": 0}  # png: lossless, quality unused
WEBP_METHOD = 2  # same bytes as Pillow's default 4 (+3%) in half the time
# Mean |diff| of 64x36 grayscale thumbnails, 0..255: a short typed line scores ~0.045,
# a blinking text cursor ~0.004, a clock tick ~0.001.
DEFAULT_DIFF_THRESHOLD = 0.02
THUMB_SIZE = (64, 36)
# Quality steps tried, in order, when a frame is over the byte limit; then the size shrinks.
FIT_QUALITIES = (60, 45, 30, 20, 10)
FIT_SCALE = 0.75
MIN_FIT_WIDTH = 64


def parse_monitor(value: int | str) -> int | str:
    """`--monitor N | all | primary` -> N (mss index, 1 = first monitor), "all" or "primary"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text in ("all", "primary"):
            return text
        try:
            number = int(text)
        except ValueError:
            raise UsageError(
                f"The monitor {value!r} is not valid: use a number (1 = first monitor), 'all' or 'primary'."
            ) from None
    if number < 0:
        raise UsageError(f"The monitor {number} is not valid: monitors count from 1 (0 or 'all' = all).")
    return "all" if number == 0 else number


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    monitor: int | str = "primary"  # "primary", "all" or an mss index (1 = first monitor)
    interval_s: float = 5.0
    max_width: int = 1920
    image_format: str = DEFAULT_FORMAT  # jpeg | webp | png
    quality: int | None = None  # None: DEFAULT_QUALITY[image_format]
    keepalive_s: float = 60.0
    diff_threshold: float = DEFAULT_DIFF_THRESHOLD  # 0 sends every frame
    redact: tuple[tuple[int, int, int, int], ...] = ()  # (x, y, w, h) in captured-monitor pixels
    max_bytes: int = MAX_DECODED_BYTES
    display: str | None = None  # X display name; None: $DISPLAY

    def __post_init__(self) -> None:
        object.__setattr__(self, "monitor", parse_monitor(self.monitor))
        fmt = str(self.image_format).lower().replace("jpg", "jpeg")
        if fmt not in FORMATS:
            raise UsageError(f"The screen format {self.image_format!r} is not one of jpeg, webp, png.")
        object.__setattr__(self, "image_format", fmt)
        quality = DEFAULT_QUALITY[fmt] if self.quality is None else self.quality
        if fmt != "png" and not 1 <= quality <= 100:
            raise UsageError(f"The screen quality {quality} must be between 1 and 100.")
        object.__setattr__(self, "quality", int(quality))
        for name in ("interval_s", "keepalive_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise UsageError(f"The screen {name} {value!r} must be a positive number of seconds.")
        if self.max_width < MIN_FIT_WIDTH:
            raise UsageError(
                f"The screen max_width {self.max_width} must be at least {MIN_FIT_WIDTH} pixels."
            )
        if self.diff_threshold < 0:
            raise UsageError(f"The screen diff_threshold {self.diff_threshold} must be 0 or more.")
        if self.max_bytes <= 0:
            raise UsageError(f"The screen max_bytes {self.max_bytes} must be positive.")
        rects = []
        for rect in self.redact:
            if len(rect) != 4 or any(not isinstance(v, int) for v in rect) or rect[2] <= 0 or rect[3] <= 0:
                raise UsageError(
                    f"The redact region {list(rect)!r} is not valid: use [x, y, width, height] "
                    "in whole pixels with a positive width and height."
                )
            rects.append(tuple(rect))
        object.__setattr__(self, "redact", tuple(rects))

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.image_format]


class Clock(Protocol):
    """Time as the screen source sees it; tests pass a fake one."""

    def monotonic(self) -> float: ...

    def time_ms(self) -> int: ...

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        """Sleep up to timeout_s; True if `stop` was set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        return stop.wait(timeout_s)


# ---- imaging -----------------------------------------------------------------------------------


def encode_image(image: Image.Image, image_format: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if image_format == "jpeg":
        image.save(buf, "JPEG", quality=quality)
    elif image_format == "webp":
        image.save(buf, "WEBP", quality=quality, method=WEBP_METHOD)
    else:
        # compress_level 1: half the time of the default 6 for ~14% more bytes on screen content.
        image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def downscale(image: Image.Image, max_width: int) -> Image.Image:
    """Fit within max_width, keeping the aspect ratio."""
    from PIL import Image

    width, height = image.size
    if width <= max_width:
        return image
    new_size = (max_width, max(1, round(height * max_width / width)))
    # reducing_gap: a cheap integer box reduction first, then a short bilinear pass.
    return image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def redact(image: Image.Image, regions: tuple[tuple[int, int, int, int], ...]) -> Image.Image:
    """Blank (black) each (x, y, w, h) region; parts outside the image are ignored."""
    if not regions:
        return image
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for x, y, w, h in regions:
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(0, 0, 0))
    return image


def thumbnail(image: Image.Image) -> bytes:
    """64x36 grayscale, for the near-identical test (~3 ms at 1920x1080)."""
    from PIL import Image

    return image.resize(THUMB_SIZE, Image.Resampling.BOX).convert("L").tobytes()


def diff_score(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two thumbnails, 0 (identical) .. 255."""
    import numpy as np

    x = np.frombuffer(a, dtype=np.uint8).astype(np.int16)
    y = np.frombuffer(b, dtype=np.uint8).astype(np.int16)
    return float(np.abs(x - y).mean())


def fit_encode(
    image: Image.Image,
    image_format: str,
    quality: int,
    max_bytes: int,
    encoder: Callable[[Image.Image, str, int], bytes] = encode_image,
) -> tuple[bytes, tuple[int, int], int]:
    """Encode within max_bytes: first lower quality, then smaller size. -> (data, size, quality).

    Raises ValueError when even a MIN_FIT_WIDTH-wide image does not fit.
    """
    from PIL import Image

    qualities = [quality]
    if image_format != "png":
        qualities += [q for q in FIT_QUALITIES if q < quality]
    for q in qualities:
        data = encoder(image, image_format, q)
        if len(data) <= max_bytes:
            return data, image.size, q
    q = qualities[-1]
    current = image
    while current.width > MIN_FIT_WIDTH:
        width = max(MIN_FIT_WIDTH, int(current.width * FIT_SCALE))
        size = (width, max(1, round(image.height * width / image.width)))
        current = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        data = encoder(current, image_format, q)
        if len(data) <= max_bytes:
            return data, current.size, q
    raise ValueError(f"a {MIN_FIT_WIDTH}-pixel-wide {image_format} is still larger than {max_bytes} bytes")


# ---- the source --------------------------------------------------------------------------------


def _no_display_reason(display: str | None, env: dict[str, str]) -> str | None:
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


def _quiet_close(sct) -> None:
    import mss

    try:
        sct.close()
    except mss.ScreenShotError as exc:  # the X server is already gone
        log.debug("closing the display connection: %s", exc)


class ScreenSource:
    """Screenshots of one monitor (or all) at a steady cadence. See the module docstring."""

    def __init__(
        self,
        settings: ScreenSettings,
        *,
        pause_control: PauseControl | None = None,
        clock: Clock | None = None,
        grabber: Callable[[], Image.Image] | None = None,
        encoder: Callable[[Image.Image, str, int], bytes] = encode_image,
    ) -> None:
        """`grabber` replaces mss (tests, other platforms); `encoder` replaces encode_image."""
        self.settings = settings
        self.pause_control = pause_control
        self.clock: Clock = clock or SystemClock()
        self._grabber = grabber
        self._encoder = encoder
        self._sct = None
        self._region: dict | None = None
        self.monitor: int | str = settings.monitor  # resolved by open(): "primary" -> its index
        # counters (written by the capturing thread only)
        self.captured = 0  # screenshots grabbed
        self.sent = 0  # frames returned for sending
        self.skipped_identical = 0
        self.skipped_late = 0  # cadence slots missed because a capture overran
        self.paused = 0  # cadence slots not captured because of the privacy pause
        self.dropped_oversize = 0  # frames that could not be fitted under max_bytes
        # diff / keepalive / pause bookkeeping
        self._last_thumb: bytes | None = None
        self._last_sent_mono: float | None = None
        self._skipped_since = 0
        self._late_since = 0
        self._force_send = True
        self._pause_open_since: int | None = None
        self._pause_periods: list[tuple[int, int]] = []
        self._last_recorded_pause: tuple[int, int] | None = None
        self._opened_ms: int | None = None
        self._late_warned = False

    # ---- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        if self._opened_ms is None:
            self._opened_ms = self.clock.time_ms()
        if self.pause_control is not None and self._pause_open_since is None:
            state = self.pause_control.state()
            if state.paused:  # already said by the caller (`run`, with since when): not logged again
                self._pause_open_since = state.since_ms if state.since_ms is not None else self._opened_ms
        if self._grabber is not None or self._sct is not None:
            return
        import mss

        env = dict(os.environ)
        display = self.settings.display or env.get("DISPLAY")
        reason = _no_display_reason(display, env)
        if reason:
            raise NoSourceError(f"no screen available: {reason}")
        kwargs = {}
        if self.settings.display and sys.platform.startswith("linux"):
            kwargs["display"] = self.settings.display
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
        if env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"):
            log.warning(
                "Wayland session: screenshots go through XWayland and may be black or show only X11 windows"
            )
        log.info(
            "screen: monitor %s (%dx%d), every %gs, %s q%d",
            self.monitor,
            self._region["width"],
            self._region["height"],
            self.settings.interval_s,
            self.settings.image_format,
            self.settings.quality,
        )

    def _select_monitor(self, sct) -> tuple[dict, int | str]:
        monitors = sct.monitors
        wanted = self.settings.monitor
        if len(monitors) < 2:
            import mss

            raise mss.ScreenShotError("the X server reports no monitor")
        if wanted == "all":
            return dict(monitors[0]), "all"
        if wanted == "primary":
            primary = sct.primary_monitor
            return dict(primary), monitors.index(primary)
        if wanted >= len(monitors):
            raise UsageError(
                f"The monitor {wanted} does not exist: this display has {len(monitors) - 1} monitor(s); "
                f"use 1..{len(monitors) - 1}, 'all' or 'primary'."
            )
        return dict(monitors[wanted]), wanted

    def close(self) -> None:
        sct, self._sct = self._sct, None
        if sct is not None:
            _quiet_close(sct)

    def __enter__(self) -> ScreenSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one capture ---------------------------------------------------------------------------

    def _grab(self) -> Image.Image:
        if self._grabber is not None:
            return self._grabber().convert("RGB")
        if self._sct is None:
            raise RuntimeError("ScreenSource.open() must be called before capture()")
        from PIL import Image

        try:
            shot = self._grab_once()
        except NoSourceError as first:
            # Monitors changed (a projector plugged in) or the server restarted: reconnect once.
            log.info("screen grab failed (%s); reconnecting to the display", first)
            self.close()
            try:
                self.open()
                shot = self._grab_once()
            except NoSourceError as exc:
                self.close()
                log.debug("reconnecting failed: %s", exc)
                raise NoSourceError(
                    f"no screen available: lost the display during capture ({first}) and could not "
                    "reconnect; EEG capture is not affected"
                ) from exc
            self._force_send = True
        # BGRX raw decode: ~3 ms at 1920x1080, several times faster than ScreenShot.rgb.
        return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")

    def _grab_once(self):
        import mss

        try:
            return self._sct.grab(self._region)
        except (mss.ScreenShotError, AssertionError, ValueError) as exc:
            # mss 10.2 asserts (or, under -O, dereferences NULL -> ValueError) when the X
            # connection is lost mid-grab instead of raising ScreenShotError.
            raise NoSourceError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc

    def _poll_pause(self) -> bool:
        """True while paused; records pause periods (also ones that began and ended between captures)."""
        if self.pause_control is None:
            return False
        state = self.pause_control.state()
        now = self.clock.time_ms()
        if state.paused:
            if self._pause_open_since is None:
                self._pause_open_since = state.since_ms if state.since_ms is not None else now
                log.info("screen capture paused (EEG continues)", extra={"event": "screen_paused"})
            return True
        if self._pause_open_since is not None:
            start = self._pause_open_since
            end = state.until_ms if state.since_ms == start and state.until_ms is not None else now
            self._record_pause(start, end)
            self._pause_open_since = None
            log.info("screen capture resumed", extra={"event": "screen_resumed"})
        elif state.since_ms is not None and state.until_ms is not None:
            # A short pause that began and ended between two captures.
            if self._opened_ms is not None and state.until_ms >= self._opened_ms:
                self._record_pause(state.since_ms, state.until_ms)
        return False

    def _record_pause(self, start: int, end: int) -> None:
        period = (int(start), int(max(start, end)))
        if period == self._last_recorded_pause:
            return
        self._last_recorded_pause = period
        self._pause_periods.append(period)
        self._force_send = True  # show the screen right after a pause

    def capture(self) -> ScreenFrame | None:
        """Grab, diff and encode once. None when paused, near-identical, or unfittable (all counted).

        Raises NoSourceError if the screen goes away (X server stopped).
        """
        if self._poll_pause():
            self.paused += 1
            return None
        now_mono = self.clock.monotonic()
        time_ms = self.clock.time_ms()
        image = self._grab()
        self.captured += 1
        captured_size = image.size
        image = redact(image, self.settings.redact)
        image = downscale(image, self.settings.max_width)
        thumb = thumbnail(image)
        score = None if self._last_thumb is None else diff_score(thumb, self._last_thumb)
        if not self._must_send(now_mono, score):
            self.skipped_identical += 1
            self._skipped_since += 1
            return None
        try:
            data, sent_size, quality = fit_encode(
                image,
                self.settings.image_format,
                self.settings.quality,
                self.settings.max_bytes,
                self._encoder,
            )
        except ValueError as exc:
            self.dropped_oversize += 1
            log.error("screen frame dropped: %s", exc)
            return None
        extra: dict = {}
        if quality != self.settings.quality:
            extra["quality"] = quality
        if self._late_since:
            extra["skipped_late_before"] = self._late_since
        frame = ScreenFrame(
            image=data,
            mime_type=self.settings.mime_type,
            time_ms=time_ms,
            monitor=self.monitor,
            captured_size=captured_size,
            sent_size=sent_size,
            diff_score=None if score is None else round(score, 3),
            skipped_before=self._skipped_since,
            paused_periods=tuple(self._pause_periods),
            extra=extra,
        )
        self.sent += 1
        self._last_thumb = thumb
        self._last_sent_mono = now_mono
        self._skipped_since = 0
        self._late_since = 0
        self._pause_periods = []
        self._force_send = False
        return frame

    def _must_send(self, now_mono: float, score: float | None) -> bool:
        if self._force_send or score is None or self._last_sent_mono is None:
            return True
        if score >= self.settings.diff_threshold:
            return True
        # Half an interval of slack: capture times jitter around their slots.
        slack = min(self.settings.interval_s / 2, self.settings.keepalive_s / 2)
        return now_mono - self._last_sent_mono >= self.settings.keepalive_s - slack

    # ---- the cadence loop ----------------------------------------------------------------------

    def run(self, on_frame: Callable[[ScreenFrame], None], stop: threading.Event) -> None:
        """Capture at start + k * interval until `stop` is set; each sent frame goes to on_frame.

        A capture that overruns skips the slots it missed (counted), so captures never pile up.
        NoSourceError (the screen went away) propagates; EEG is the caller's and carries on.
        """
        if self._sct is None and self._grabber is None:
            self.open()
        interval = self.settings.interval_s
        tolerance = min(0.1 * interval, 0.25)  # scheduling jitter is not lateness
        start = self.clock.monotonic()
        k = 0
        while True:
            delay = start + k * interval - self.clock.monotonic()
            if delay > 0:
                if self.clock.wait(stop, delay):
                    return
            elif stop.is_set():
                return
            frame = self.capture()
            if frame is not None:
                on_frame(frame)
            elapsed = self.clock.monotonic() - start
            next_k = max(k + 1, math.ceil((elapsed - tolerance) / interval))
            missed = next_k - (k + 1)
            if missed:
                self.skipped_late += missed
                self._late_since += missed
                if not self._late_warned:
                    self._late_warned = True
                    log.warning(
                        "screen capture took longer than the %gs interval; skipping missed slots "
                        "(consider a longer --screen-interval or a smaller --screen-max-width)",
                        interval,
                    )
            k = next_k

    @property
    def counters(self) -> dict[str, int]:
        return {
            "captured": self.captured,
            "sent": self.sent,
            "skipped_identical": self.skipped_identical,
            "skipped_late": self.skipped_late,
            "paused": self.paused,
            "dropped_oversize": self.dropped_oversize,
        }
