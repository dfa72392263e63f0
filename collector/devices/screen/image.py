"""Image steps of a screenshot, with Pillow: redact, downscale, thumbnail and diff, encode to fit.

    RGB -> redact -> 64x36 diff -> (frames sent) downscale to max_width -> encode to fit the byte limit

Pillow (and numpy for the diff) are imported in the functions: `collector --help` stays fast.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.core.screen_copy import register_webp

if TYPE_CHECKING:
    from PIL import Image


WEBP_METHOD = 2  # same bytes as Pillow's default 4 (+3%) in half the time
THUMB_SIZE = (64, 36)
# Quality steps tried, in order, when a frame is over the byte limit; then the size shrinks.
FIT_QUALITIES = (60, 45, 30, 20, 10)
FIT_SCALE = 0.75
MIN_FIT_WIDTH = 64


def encode_image(image: Image.Image, image_format: str, quality: int) -> bytes:
    if image_format == "webp":
        register_webp()
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


# A channel's brightest pixel at most this (0..255) and the frame counts as black: what XWayland
# gives for a rootless root window is exactly 0; a dark slide with any text or cursor is far above.
BLANK_LEVEL = 8


def is_blank(image: Image.Image) -> bool:
    """True for an empty image (0 pixels) or one (almost) uniformly black (every channel <= BLANK_LEVEL).

    ~2 ms at 1920x1080 (Pillow's getextrema over the RGB bands).
    """
    if image.width == 0 or image.height == 0:
        return True
    if image.mode != "RGB":
        image = image.convert("RGB")
    return all(hi <= BLANK_LEVEL for _lo, hi in image.getextrema())  # type: ignore[misc]


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
