#!/usr/bin/env python3
"""Per-capture cost of the screen source at 1920x1080, for each image format.

    python scripts/bench_screen.py [--repeat 10] [--size 1920x1080] [--json]

Shows a realistic desktop (editor with code, article text, sidebar, chart, a photo-like panel;
no noise) full screen on an X server, then times the stages of one capture (grab, convert,
downscale, diff thumbnail, encode) and the bytes per capture for JPEG q60/75/85, WebP q50/75 and
PNG, plus the CPU share at the default cadence (one capture every 5 s). Starts its own Xvfb when
DISPLAY is unset and Xvfb is installed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from collector.devices.screen.image import diff_score, downscale, encode_image, thumbnail  # noqa: E402
from collector.devices.screen.settings import DEFAULT_DIFF_THRESHOLD, ScreenSettings  # noqa: E402
from collector.devices.screen.source import ScreenSource  # noqa: E402

FORMATS = [("jpeg", 60), ("jpeg", 75), ("jpeg", 85), ("webp", 50), ("webp", 75), ("png", 0)]  # webp: method 2

CODE = '''def capture(self) -> ScreenFrame | None:
    """Grab, diff and encode once. None when paused or near-identical."""
    if self._poll_pause():
        self.paused += 1
        return None
    now_mono = self.clock.monotonic()
    image = self._grab()
    self.captured += 1
    image = redact(image, self.settings.redact)
    image = downscale(image, self.settings.max_width)
    thumb = thumbnail(image)
    score = None if self._last_thumb is None else diff_score(thumb, self._last_thumb)
    if not self._must_send(now_mono, score):
        self.skipped_identical += 1
        return None
    data, sent_size, quality = fit_encode(image, fmt, q, limit)
    return ScreenFrame(image=data, mime_type=mime, time_ms=time_ms)
'''

ARTICLE = (
    "Practice makes progress when feedback arrives while the attempt is still fresh. In this "
    "lesson we look at scales in three octaves, first hands separately and then together, "
    "watching for tension in the wrist and shoulder. Count aloud, keep the metronome at a tempo "
    "where every note is even, and raise it only after three clean repetitions in a row. "
)


def _font(size: int, mono: bool = False) -> ImageFont.ImageFont:
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/Library/Fonts"):
        path = Path(folder) / name
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def render_scene(width: int = 1920, height: int = 1080, change: str = "") -> Image.Image:
    """A deterministic desktop: title bar, sidebar, code editor, article, chart and a photo panel.

    change: "" (the base scene), "cursor" (text cursor shown), "clock" (status-bar clock ticks),
    "line" (one short line typed), "scroll" (editor scrolled by one line), "switch" (another file).
    """
    img = Image.new("RGB", (width, height), (246, 246, 248))
    d = ImageDraw.Draw(img)
    ui, mono, title = _font(15), _font(14, mono=True), _font(22)
    # title bar and tabs
    d.rectangle((0, 0, width, 36), fill=(40, 44, 52))
    d.text((16, 9), "Practice session — scales.py — Editor", font=ui, fill=(220, 220, 220))
    for i, name in enumerate(["scales.py", "notes.md", "metronome.py", "README.md"]):
        x = 260 + i * 150
        d.rectangle((x, 40, x + 145, 66), fill=(255, 255, 255) if i == 0 else (225, 227, 232))
        d.text((x + 10, 45), name, font=ui, fill=(30, 30, 30))
    # sidebar
    d.rectangle((0, 36, 250, height), fill=(37, 37, 38))
    for i in range(40):
        d.text(
            (14 + (i % 3) * 12, 80 + i * 23),
            f"lesson_{i:02d}/exercise_{(i * 7) % 13}.py",
            font=ui,
            fill=(200, 200, 200) if i != 3 else (255, 255, 255),
        )
    # code editor
    d.rectangle((250, 66, 1150, height - 24), fill=(30, 30, 30))
    palette = [(86, 156, 214), (206, 145, 120), (220, 220, 170), (212, 212, 212), (106, 153, 85)]
    lines = (CODE * 3).splitlines()
    if change == "scroll":
        lines = lines[1:]
    elif change == "switch":
        lines = [ln[::-1].strip().rjust(len(ln)) for ln in (ARTICLE * 9).split(". ")] * 3
    for i, line in enumerate(lines[:45]):
        y = 76 + i * 21
        d.text((262, y), f"{i + 1:3d}", font=mono, fill=(110, 110, 110))
        d.text((310, y), line, font=mono, fill=palette[(i + len(line)) % len(palette)])
    if change == "line":
        d.text((310, 76 + 45 * 21), "    # keep the wrist loose", font=mono, fill=(255, 255, 255))
    if change == "cursor":
        d.rectangle((478, 76 + 11 * 21, 479, 76 + 11 * 21 + 17), fill=(255, 255, 255))
    # article pane
    d.rectangle((1150, 66, width, 620), fill=(255, 255, 255))
    d.text((1180, 84), "Lesson 4: Even scales at tempo", font=title, fill=(20, 20, 20))
    words, line, y = (ARTICLE * 4).split(), "", 126
    for w in words:
        if d.textlength(line + " " + w, font=ui) > width - 1210:
            d.text((1180, y), line, font=ui, fill=(50, 50, 50))
            line, y = w, y + 22
            if y > 420:
                break
        else:
            line = (line + " " + w).strip()
    # chart
    d.rectangle((1180, 440, width - 30, 600), outline=(200, 200, 200))
    pts = [(1180 + i * 12, 520 - int(60 * ((i * 37) % 17 - 8) / 8 * (0.5 + (i % 5) / 10))) for i in range(58)]
    d.line(pts, fill=(52, 120, 246), width=2)
    # photo-like panel: smooth gradients and soft shapes, like a picture in a lesson page
    photo = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((width - 1150, height - 644)),
            Image.radial_gradient("L").resize((width - 1150, height - 644)),
            Image.linear_gradient("L").rotate(90).resize((width - 1150, height - 644)),
        ),
    )
    pd = ImageDraw.Draw(photo)
    for i in range(9):
        pd.ellipse(
            (30 + i * 80, 40 + (i * 53) % 200, 150 + i * 80, 160 + (i * 53) % 200),
            fill=((i * 70) % 255, (i * 40 + 90) % 255, (200 - i * 20) % 255),
        )
    img.paste(photo.filter(ImageFilter.GaussianBlur(6)), (1150, 620))
    # status bar
    d.rectangle((0, height - 24, width, height), fill=(0, 122, 204))
    status = "Ln 12, Col 8   UTF-8   Python 3.11   EEG: 256 Hz, 4 ch"
    d.text((12, height - 21), status, font=ui, fill=(255, 255, 255))
    d.text(
        (width - 70, height - 21), "10:42" if change == "clock" else "10:41", font=ui, fill=(255, 255, 255)
    )
    return img


def show_fullscreen(image: Image.Image):
    """Put `image` on the X screen at (0, 0) in an undecorated Tk window; returns the Tk root."""
    import tkinter

    root = tkinter.Tk()
    root.overrideredirect(True)
    root.geometry(f"{image.width}x{image.height}+0+0")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    photo = tkinter.PhotoImage(data=base64.b64encode(buf.getvalue()), format="png")
    label = tkinter.Label(root, image=photo, borderwidth=0, highlightthickness=0)
    label.image = photo
    label.pack()
    for _ in range(5):
        root.update()
        time.sleep(0.05)
    root.winfo_rgb("white")  # a round trip: the X server has drawn everything before this returns
    return root


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str]:
    for number in range(120, 200):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        proc = subprocess.Popen(
            ["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                return proc, f":{number}"
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise SystemExit("bench_screen: could not start Xvfb")


def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed repetitions per stage (median shown)")
    parser.add_argument("--size", default="1920x1080", help="screen size WxH (default 1920x1080)")
    parser.add_argument("--interval", type=float, default=5.0, help="cadence for the CPU share (default 5 s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    xvfb = None
    if not os.environ.get("DISPLAY"):
        if not shutil.which("Xvfb"):
            raise SystemExit("bench_screen: DISPLAY is unset and Xvfb is not installed (apt install xvfb)")
        xvfb, os.environ["DISPLAY"] = start_xvfb(width, height)
    try:
        return _bench(args, width, height)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def _bench(args, width: int, height: int) -> int:
    import mss

    root = show_fullscreen(render_scene(width, height))
    results: dict = {"size": [width, height], "repeat": args.repeat, "stages_ms": {}, "formats": []}
    with mss.MSS() as sct:
        region = dict(sct.monitors[1])
        grab_ms, shot = timed(lambda: sct.grab(region), args.repeat)
        conv_ms, image = timed(
            lambda: Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX"), args.repeat
        )
        down_ms, _ = timed(lambda: downscale(image, 1280), args.repeat)
        thumb_ms, thumb = timed(lambda: thumbnail(image), args.repeat)
        # The grab must show the scene, or every figure below is meaningless.
        shown = diff_score(thumb, thumbnail(render_scene(width, height)))
        if shown > 1.0:
            raise SystemExit(f"bench_screen: the captured screen does not show the scene (diff {shown:.1f})")
        base = thumbnail(render_scene(width, height))
        diffs = {
            change: round(diff_score(base, thumbnail(render_scene(width, height, change))), 3)
            for change in ("cursor", "clock", "line", "scroll", "switch")
        }
        results["stages_ms"] = {
            "grab": round(grab_ms, 1),
            "convert_bgrx_to_rgb": round(conv_ms, 1),
            "downscale_to_1280": round(down_ms, 1),
            "diff_thumbnail": round(thumb_ms, 1),
        }
        results["diff_scores"] = diffs
        results["diff_threshold"] = DEFAULT_DIFF_THRESHOLD
        for fmt, quality in FORMATS:
            enc_ms, data = timed(lambda f=fmt, q=quality: encode_image(image, f, q), args.repeat)
            results["formats"].append(
                {"format": fmt, "quality": quality or None, "encode_ms": round(enc_ms, 1), "bytes": len(data)}
            )
        # CPU share at the default cadence: process CPU time of whole captures, over the interval.
        src = ScreenSource(ScreenSettings(diff_threshold=0))
        src.open()
        try:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(args.repeat):
                frame = src.capture()
            cpu_per_capture = (time.process_time() - cpu0) / args.repeat
            wall_per_capture = (time.perf_counter() - wall0) / args.repeat
        finally:
            src.close()
        results["default"] = {
            "format": src.settings.image_format,
            "quality": src.settings.quality,
            "bytes": len(frame.image) if frame else None,
            "capture_wall_ms": round(wall_per_capture * 1000, 1),
            "capture_cpu_ms": round(cpu_per_capture * 1000, 1),
            "interval_s": args.interval,
            "cpu_share_percent_of_one_core": round(100 * cpu_per_capture / args.interval, 2),
        }
    root.destroy()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"screen capture cost at {width}x{height} (median of {args.repeat})")
    for name, ms in results["stages_ms"].items():
        print(f"  {name:<22} {ms:8.1f} ms")
    scores = ", ".join(f"{k} {v}" for k, v in results["diff_scores"].items())
    print(f"  diff score vs the base scene (threshold {results['diff_threshold']}): {scores}")
    print(f"  {'format':<10} {'quality':>7} {'encode ms':>10} {'kB':>8}")
    for row in results["formats"]:
        q = row["quality"] if row["quality"] else "-"
        print(f"  {row['format']:<10} {q!s:>7} {row['encode_ms']:>10.1f} {row['bytes'] / 1000:>8.1f}")
    d = results["default"]
    print(
        f"default {d['format']} q{d['quality']}: one capture {d['capture_wall_ms']} ms wall, "
        f"{d['capture_cpu_ms']} ms CPU, {d['bytes']} bytes; every {d['interval_s']:g} s that is "
        f"{d['cpu_share_percent_of_one_core']}% of one core"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
