"""Screen source: periodic screenshots as `ScreenFrame`s, for `screen` evidence.

    grab (a Grabber: x11 through mss, the desktop portal, or grim) -> RGB -> black? -> redact
    -> 64x36 diff -> (a frame that is sent) downscale to max_width -> encode to fit 10 MB

Cadence: capture k is due at start + k * interval on a monotonic clock; a capture that overruns
skips the slots it missed (counted in `skipped_late`) instead of running them back to back.
Near-identical frames (mean absolute difference of 64x36 grayscale thumbnails against the last
*sent* frame below `diff_threshold`) are skipped and counted, but one frame goes out at least
every `keepalive_s`. While the privacy pause is on nothing is grabbed at all; the pause periods
ride on the next sent frame.

Black frames: on a Wayland session (or from a backend whose black means broken, mss under
XWayland) an (almost) uniformly black or an empty frame is not sent: it is counted in
`black_frames` (and in the next sent frame's metadata). After BLACK_STREAK in a row, `auto` falls
back to another backend that gives a real frame (the log says which); when none does, the log says
so once, and one black frame still goes out every `keepalive_s`, marked `black` (a dark slide is
kept). Every sent frame's metadata names its `backend`.

No screen at all (no display, a dead X server, no backend giving a frame): `open()` raises
NoSourceError ("no screen available: <reason>"); the grabbers' own errors never leave
`collector.devices.screen`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from collector.core.records import ScreenFrame
from collector.core.screen_copy import copy_of_image
from collector.devices.screen.grabber import BROKEN_BLACK, Grabber, open_backend, wayland_session
from collector.devices.screen.image import (
    diff_score,
    downscale,
    encode_image,
    fit_encode,
    is_blank,
    redact,
    thumbnail,
)
from collector.devices.screen.settings import ScreenSettings
from collector.errors import NoSourceError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("collector.devices.screen")

BLACK_STREAK = 3  # black frames in a row before `auto` looks for another backend


class PauseStatus(Protocol):
    """The privacy pause as the screen source reads it (collector.capture.pause.PauseState)."""

    @property
    def paused(self) -> bool: ...

    @property
    def since_ms(self) -> int | None:
        """Start of the current pause, or of the last one."""
        ...

    @property
    def until_ms(self) -> int | None:
        """End of the last pause; None while paused."""
        ...


class PauseSwitch(Protocol):
    """Where the privacy pause is read from (collector.capture.pause.PauseControl)."""

    def state(self) -> PauseStatus: ...


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


class ScreenSource:
    """Screenshots of one monitor (or all) at a steady cadence. See the module docstring."""

    def __init__(
        self,
        settings: ScreenSettings,
        *,
        pause_control: PauseSwitch | None = None,
        clock: Clock | None = None,
        grabber: Callable[[], Image.Image] | None = None,
        encoder: Callable[[Image.Image, str, int], bytes] = encode_image,
        check_black: bool = False,
        last_resort: bool = False,
    ) -> None:
        """`grabber` replaces the display (tests): a function returning the screen as a PIL image;
        `encoder` replaces encode_image; `check_black`: treat a given grabber's black frames as a
        Wayland session's (a real display decides by itself in open()); `last_resort` (`--screen
        auto`): open even a backend that gives only black frames (mss under XWayland), count them,
        and stop with one line after BLACK_STREAK, instead of refusing at open."""
        self.settings = settings
        self.pause_control = pause_control
        self.clock: Clock = clock or SystemClock()
        self._grabber = grabber
        self._encoder = encoder
        self._display: Grabber | None = None
        self.monitor: int | str = settings.monitor  # resolved by open(): "primary" -> its index
        # counters (written by the capturing thread only)
        self.captured = 0  # screenshots grabbed
        self.sent = 0  # frames returned for sending
        self.skipped_identical = 0
        self.skipped_late = 0  # cadence slots missed because a capture overran
        self.paused = 0  # cadence slots not captured because of the privacy pause
        self.dropped_oversize = 0  # frames that could not be fitted under max_bytes
        self.black_frames = 0  # black or empty frames held back (not sent)
        self.backend: str | None = "test" if grabber is not None else None  # x11 | portal | grim
        self._check_black = check_black
        self._last_resort = last_resort
        self._black_since = 0  # held back since the last sent frame
        self._black_streak = 0
        self._black_said = False
        self._opened_mono: float | None = None
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

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the area grabbed, once open (None before, or with a test grabber)."""
        return self._display.size if self._display is not None else None

    def open(self) -> None:
        if self._opened_ms is None:
            self._opened_ms = self.clock.time_ms()
            self._opened_mono = self.clock.monotonic()
        if self.pause_control is not None and self._pause_open_since is None:
            state = self.pause_control.state()
            if state.paused:  # already said by the caller (`run`, with since when): not logged again
                self._pause_open_since = state.since_ms if state.since_ms is not None else self._opened_ms
        if self._grabber is not None or self._display is not None:
            return
        self._use(open_backend(self.settings, last_resort=self._last_resort)[0])
        width, height = self._display.size if self._display else (0, 0)
        log.info(
            "screen: backend %s, monitor %s (%dx%d), every %gs, %s q%d",
            self.backend,
            self.monitor,
            width,
            height,
            self.settings.interval_s,
            self.settings.image_format,
            self.settings.quality,
        )

    def _use(self, grabber: Grabber) -> None:
        self._display = grabber
        self.backend = grabber.name
        self.monitor = grabber.monitor
        self._check_black = wayland_session(dict(os.environ)) or grabber.black_means_broken

    def close(self) -> None:
        display, self._display = self._display, None
        if display is not None:
            display.close()

    def __enter__(self) -> ScreenSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one capture ---------------------------------------------------------------------------

    def _grab(self) -> Image.Image:
        if self._grabber is not None:
            return self._grabber().convert("RGB")
        if self._display is None:
            raise RuntimeError("ScreenSource.open() must be called before capture()")
        try:
            return self._display.grab()
        except NoSourceError as first:
            # Monitors changed (a projector plugged in) or the server restarted: reconnect once.
            log.info("screen grab failed (%s); reconnecting to the display", first)
            self.close()
            try:
                self.open()
                assert self._display is not None  # open() connected, or raised
                image = self._display.grab()
            except NoSourceError as exc:
                self.close()
                log.debug("reconnecting failed: %s", exc)
                raise NoSourceError(
                    f"no screen available: lost the display during capture ({first}) and could not "
                    "reconnect; EEG capture is not affected"
                ) from exc
            self._force_send = True
        return image

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
        black = False
        if (self._check_black or image.width == 0 or image.height == 0) and is_blank(image):
            kept, black = self._on_black(image, now_mono)
            if kept is None:
                return None
            image = kept
        else:
            self._black_streak = 0
        captured_size = image.size
        image = redact(image, self.settings.redact)
        thumb = thumbnail(image)
        score = None if self._last_thumb is None else diff_score(thumb, self._last_thumb)
        if not black and not self._must_send(now_mono, score):
            self.skipped_identical += 1
            self._skipped_since += 1
            return None
        # Only a frame that is sent is downscaled: ~25 ms at 1920 -> 1280, most frames are unchanged.
        image = downscale(image, self.settings.max_width)
        assert self.settings.quality is not None  # ScreenSettings sets it
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
        extra["backend"] = self.backend
        extra["black_frames"] = self._black_since
        if black:
            extra["black"] = True  # a keep-alive of a black screen: maybe a dark slide, maybe broken
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
            local_copy=_local_copy(image),
        )
        self.sent += 1
        self._last_thumb = thumb
        self._last_sent_mono = now_mono
        self._skipped_since = 0
        self._late_since = 0
        self._black_since = 0
        self._pause_periods = []
        self._force_send = False
        return frame

    def _on_black(self, image: Image.Image, now_mono: float) -> tuple[Image.Image | None, bool]:
        """A black or empty frame: (None, _) when held back, (another backend's real frame, False)
        after a fallback, or (the black frame, True) when a keep-alive is due."""
        self.black_frames += 1
        self._black_since += 1
        self._black_streak += 1
        if self._black_streak == BLACK_STREAK:
            real = self._fall_back()
            if real is None and self._display is not None and self._display.black_means_broken:
                raise NoSourceError(
                    f"screenshots are not possible: {BLACK_STREAK} black frames in a row from "
                    f"{self.backend} ({BROKEN_BLACK}); {self.black_frames} black frame(s) held back, "
                    "none sent"
                )
            if real is not None:
                self.black_frames -= 1  # replaced by a real frame: not held back
                self._black_since -= 1
                return real, False
        empty = image.width == 0 or image.height == 0
        last = self._last_sent_mono if self._last_sent_mono is not None else self._opened_mono
        if self._display is not None and self._display.black_means_broken:
            return None, False  # known broken (XWayland): no keep-alive of its black
        due = last is not None and now_mono - last >= self.settings.keepalive_s - self.settings.interval_s / 2
        if empty or not due:
            return None, False
        self.black_frames -= 1  # sent after all, marked
        self._black_since -= 1
        return image, True

    def _fall_back(self) -> Image.Image | None:
        """After BLACK_STREAK black frames: another backend's real frame (and switch to it), or None."""
        current = self.backend or ""
        if self._display is not None and self.settings.backend == "auto":
            try:
                grabber, image = open_backend(self.settings, exclude=(current,), real_only=True)
            except NoSourceError as err:
                others = str(err).removeprefix("no screen available: ")
            else:
                self.close()
                self._use(grabber)
                self._black_streak = 0
                self._force_send = True
                log.warning(
                    "screen: %d black frames in a row from %s; switched to backend %s",
                    BLACK_STREAK,
                    current,
                    grabber.name,
                    extra={"event": "screen_backend_switched"},
                )
                return image
        elif self._display is None:
            others = "no other backend to try"
        else:
            others = f"--screen-backend {current} was asked for, so no other is tried"
        broken = self._display is not None and self._display.black_means_broken
        if not self._black_said and not broken:  # broken: the caller stops with its own line
            self._black_said = True
            log.warning(
                "screen: %d black frames in a row from %s and no backend gives a real frame (%s); "
                "black frames are held back, one every %gs still goes out marked black",
                BLACK_STREAK,
                current,
                others,
                self.settings.keepalive_s,
                extra={"event": "screen_black"},
            )
        return None

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
        if self._display is None and self._grabber is None:
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
            "black_frames": self.black_frames,
        }


def _local_copy(image: Image.Image) -> bytes | None:
    """The local record's small copy, from the image in hand (a later one from the encoded bytes
    would decode them first: ~33 against 10-16 ms a 1600x900 frame); None if it cannot be made."""
    try:
        return copy_of_image(image)
    except Exception as exc:  # the record then makes its copy from the delivered bytes
        log.warning("no small copy of this screenshot made now (%s); it is made after delivery", exc)
        return None
