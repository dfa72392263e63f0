"""What the screen source is asked to do: `ScreenSettings` (monitor, cadence, size, format, quality,
diff threshold, keepalive, redaction, byte limit, display, backend), checked when made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from collector.devices.screen.image import MIN_FIT_WIDTH
from collector.errors import UsageError

FORMATS = ("jpeg", "webp", "png")
SCREEN_BACKENDS = ("auto", "x11", "portal", "grim")
MIME_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "png": "png"}

# From scripts/bench_screen.py (README): at 1920x1080 text + UI content WebP q75 (method 2) is
# ~170 kB in ~70 ms with sharper text than JPEG q75, which is ~280 kB in ~6 ms.
DEFAULT_FORMAT = "webp"
DEFAULT_QUALITY = {"jpeg": 75, "webp": 75, "png": 0}  # png: lossless, quality unused
# Mean |diff| of 64x36 grayscale thumbnails, 0..255: a short typed line scores ~0.045,
# a blinking text cursor ~0.004, a clock tick ~0.001.
DEFAULT_DIFF_THRESHOLD = 0.02
# A frame's encoded bytes at most: the API's limit per evidence item, 10 MB decoded
# (collector.api.models.MAX_DECODED_BYTES; tests/e2e/test_screen.py checks that they agree).
MAX_FRAME_BYTES = 10 * 1024 * 1024


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
    max_bytes: int = MAX_FRAME_BYTES
    display: str | None = None  # X display name; None: $DISPLAY
    backend: str = "auto"  # auto | x11 | portal | grim (collector.devices.screen.grabber)
    portal_timeout_s: float = 20.0  # the longest wait for the portal's answer (a prompt nobody clicks)

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
        if self.backend not in SCREEN_BACKENDS:
            raise UsageError(
                f"The screen backend {self.backend!r} is not one of {', '.join(SCREEN_BACKENDS)}."
            )
        if not (isinstance(self.portal_timeout_s, int | float) and self.portal_timeout_s > 0):
            raise UsageError(f"The screen portal_timeout_s {self.portal_timeout_s!r} must be positive.")
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
