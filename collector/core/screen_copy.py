"""The small copy of a screenshot that the local record keeps: at most 400 px wide, as WebP.

The screen source makes it from the frame it has just encoded (`copy_of_image`: 10-16 ms of CPU at 1600x900),
and it rides with the item in the spool. An item spooled without one (by an older collector)
gets it from its encoded bytes on delivery (`copy_of_screenshot`: a decode first, ~33 ms).
Pillow is imported in the functions, so `collector --help` stays fast.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

COPY_WIDTH = 400  # px: enough to recognise a page in the review strip, ~3-15 kB each
# (was 480 px at quality 70: 240 copies inlined made 1.8 MB of a 2-hour review page, issue 23)
# WebP quality 55: 10 % smaller than 60 (2.9 against 3.3 kB a desktop frame) with no difference
# that shows at 400 px; the 2-hour review page was back at 3.01 MB with 60 (issue 23 asks <= 3 MB).
COPY_QUALITY = 55
COPY_MIME = "image/webp"


def register_webp() -> None:
    """Register Pillow's WebP plugin alone. Pillow registers JPEG and PNG at once but meets WebP
    only by loading all its ~40 plugins (Image.init: 66 ms of CPU at a capture's first
    screenshot); Image.open still falls back to all of them for any other format."""
    from PIL import WebPImagePlugin  # noqa: F401  (importing it registers WEBP)


def copy_of_image(image: Image.Image) -> bytes:
    """The WebP copy of an image, at most COPY_WIDTH px wide (aspect ratio kept)."""
    from PIL import Image

    register_webp()

    img = image if image.mode == "RGB" else image.convert("RGB")
    if img.width > COPY_WIDTH:
        # reducing_gap: Pillow first halves by whole factors (box), then Lanczos: 2.4x faster
        # for a 1600 px frame, no visible difference at 400 px.
        size = (COPY_WIDTH, max(1, round(img.height * COPY_WIDTH / img.width)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=COPY_QUALITY, method=2)
    return out.getvalue()


def copy_of_screenshot(data: bytes) -> bytes:
    """The WebP copy of an encoded screenshot (JPEG, PNG or WebP bytes).

    Raises OSError / PIL.UnidentifiedImageError if `data` is not an image Pillow can read.
    """
    from PIL import Image

    register_webp()  # before opening: a WebP frame is then read without loading every plugin
    with Image.open(io.BytesIO(data)) as opened:
        return copy_of_image(opened.convert("RGB"))
