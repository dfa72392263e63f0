"""Screen source: cadence, diff skipping, keepalive, redaction, 10 MB fitting, privacy pause,
the no-display path, and real captures from a real X server (Xvfb) showing known content.

Fast tests inject a grabber (a function returning a PIL image) and a fake clock; the `xvfb`
tests start `Xvfb -displayfd` (it picks a free display) and draw with a Tk window in a
subprocess, so what is captured is what an X client really put on the screen.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xserver import H, Painter, W, XlibPainter, Xvfb, end_process, have_tk

from collector.api.models import MAX_DECODED_BYTES, EvidenceCreate
from collector.capture.pause import PauseControl, PauseState
from collector.core.evidence import screen_evidence
from collector.core.records import ScreenFrame
from collector.devices.screen.image import encode_image, fit_encode
from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.source import ScreenSource
from collector.errors import EXIT_NO_SOURCE, NoSourceError, UsageError

REPO = Path(__file__).resolve().parents[2]


# ---- helpers ------------------------------------------------------------------------------------


class FakeClock:
    """Monotonic and wall time that only move when told to (or when the loop waits)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.t = 1000.0
        self.start_ms = start_ms
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def time_ms(self) -> int:
        return self.start_ms + round((self.t - 1000.0) * 1000)

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        self.t += timeout_s
        return stop.is_set()

    def advance(self, seconds: float) -> None:
        self.t += seconds


def scene(color=(40, 90, 200), box=None, size=(W, H)) -> Image.Image:
    """A flat colour with an optional (x, y, w, h, colour) box."""
    img = Image.new("RGB", size, color)
    if box:
        x, y, w, h, c = box
        img.paste(Image.new("RGB", (w, h), c), (x, y))
    return img


class Screen:
    """A grabber whose content a test sets; counts grabs."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.grabs = 0

    def __call__(self) -> Image.Image:
        self.grabs += 1
        return self.image.copy()


def decode(frame: ScreenFrame) -> Image.Image:
    img = Image.open(io.BytesIO(frame.image))
    img.load()
    return img.convert("RGB")


def mean_rgb(img: Image.Image, box=None) -> tuple[float, float, float]:
    region = img.crop(box) if box else img
    small = region.resize((1, 1), Image.Resampling.BOX)
    return small.getpixel((0, 0))


def close_to(rgb, expected, tol=12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))


# ---- settings -----------------------------------------------------------------------------------


def test_settings_normalize_and_reject_with_the_fix():
    s = ScreenSettings(monitor="2", image_format="JPG", quality=None)
    assert (s.monitor, s.image_format, s.quality, s.mime_type) == (2, "jpeg", 75, "image/jpeg")
    assert ScreenSettings(monitor="0").monitor == "all"
    assert ScreenSettings(monitor="ALL").monitor == "all"
    with pytest.raises(UsageError, match="'left'.*number"):
        ScreenSettings(monitor="left")
    with pytest.raises(UsageError, match="gif"):
        ScreenSettings(image_format="gif")
    with pytest.raises(UsageError, match=r"\[10, 10, 0, 5\].*positive"):
        ScreenSettings(redact=((10, 10, 0, 5),))
    with pytest.raises(UsageError, match="interval_s"):
        ScreenSettings(interval_s=0)
    with pytest.raises(UsageError, match="quality 101"):
        ScreenSettings(image_format="webp", quality=101)


# ---- diff skipping and keepalive ------------------------------------------------------------------


def test_identical_frames_are_skipped_and_counted_until_keepalive():
    clock = FakeClock()
    screen = Screen(scene())
    src = ScreenSource(ScreenSettings(interval_s=5, keepalive_s=60), clock=clock, grabber=screen)
    src.open()
    first = src.capture()
    assert first is not None and first.diff_score is None and first.skipped_before == 0
    skipped = 0
    sent = None
    for _ in range(20):  # 5 s slots; the keepalive is due at 60 s
        clock.advance(5)
        sent = src.capture()
        if sent is not None:
            break
        skipped += 1
    assert sent is not None, "no keepalive frame within 100 s of identical content"
    assert skipped == 11  # slots 5..55 s skipped, the 60 s slot sent
    assert sent.skipped_before == 11 and sent.diff_score == 0.0
    assert sent.time_ms - first.time_ms == 60_000
    assert src.counters["skipped_identical"] == 11 and src.counters["sent"] == 2
    assert screen.grabs == 13


def test_changed_content_is_sent_at_once_with_its_diff_score():
    clock = FakeClock()
    screen = Screen(scene())
    src = ScreenSource(ScreenSettings(), clock=clock, grabber=screen)
    src.open()
    assert src.capture() is not None
    clock.advance(5)
    assert src.capture() is None  # identical
    screen.image = scene(box=(100, 100, 600, 300, (250, 250, 250)))  # a window opened
    clock.advance(5)
    frame = src.capture()
    assert frame is not None
    assert frame.diff_score > src.settings.diff_threshold
    assert frame.skipped_before == 1
    # A 2x16 px text cursor blinking is below the threshold.
    screen.image = scene(box=(100, 100, 600, 300, (250, 250, 250)))
    screen.image.paste(Image.new("RGB", (2, 16), (0, 0, 0)), (300, 200))
    clock.advance(5)
    assert src.capture() is None


def test_diff_is_against_the_last_sent_frame_so_slow_drift_is_sent():
    clock = FakeClock()
    screen = Screen(scene(color=(100, 100, 100)))
    src = ScreenSource(ScreenSettings(diff_threshold=2.5, keepalive_s=3600), clock=clock, grabber=screen)
    src.open()
    src.capture()
    sent_at = []
    for step in range(1, 7):  # brightness +1 per step: each step alone scores 1.0, under 2.5
        screen.image = scene(color=(100 + step,) * 3)
        clock.advance(5)
        if src.capture() is not None:
            sent_at.append(step)
    assert sent_at == [3, 6]


# ---- 10 MB fitting ------------------------------------------------------------------------------


def _busy_image(size=(W, H)) -> Image.Image:
    """Detailed but deterministic content (text-like stripes), costly to compress."""
    from PIL import ImageDraw

    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    for y in range(0, size[1], 6):
        for x in range(0, size[0], 40):
            d.rectangle(
                (x, y, x + (x * 7 + y * 13) % 37, y + 3), fill=((x * y) % 256, (x + y) % 256, (3 * x) % 256)
            )
    return img


def test_frames_are_fitted_under_the_limit_by_quality_first_then_size():
    img = _busy_image()
    full = len(encode_image(img, "jpeg", 75))
    low_q = len(encode_image(img, "jpeg", 45))
    assert low_q < full
    # A limit that quality alone can meet: the size stays.
    data, size, quality = fit_encode(img, "jpeg", 75, max_bytes=(full + low_q) // 2)
    assert len(data) <= (full + low_q) // 2 and size == (W, H) and quality < 75
    # A limit no quality meets at full size: the image shrinks, aspect kept.
    smallest = len(encode_image(img, "jpeg", 10))
    limit = smallest // 3
    data, size, quality = fit_encode(img, "jpeg", 75, max_bytes=limit)
    assert len(data) <= limit and size[0] < W and quality == 10
    assert abs(size[0] / size[1] - W / H) < 0.02
    assert Image.open(io.BytesIO(data)).size == size
    # PNG has no quality: straight to size.
    png_limit = len(encode_image(img, "png", 0)) // 2
    data, size, _ = fit_encode(img, "png", 0, max_bytes=png_limit)
    assert len(data) <= png_limit and size[0] < W


def test_capture_applies_the_byte_limit_and_records_it():
    limit = 40_000
    src = ScreenSource(
        ScreenSettings(image_format="webp", max_bytes=limit), clock=FakeClock(), grabber=Screen(_busy_image())
    )
    src.open()
    frame = src.capture()
    assert frame is not None and len(frame.image) <= limit
    assert decode(frame).size == frame.sent_size
    assert frame.captured_size == (W, H)
    assert frame.extra.get("quality", 75) < 75 or frame.sent_size != (W, H)


def test_an_unfittable_frame_is_dropped_and_counted_not_raised():
    src = ScreenSource(ScreenSettings(max_bytes=50), clock=FakeClock(), grabber=Screen(_busy_image()))
    src.open()
    assert src.capture() is None
    assert src.counters["dropped_oversize"] == 1


# ---- redaction and downscaling ----------------------------------------------------------------


def test_redaction_blanks_regions_before_encoding_and_before_the_diff():
    secret = (800, 400, 300, 200)
    img = scene(color=(0, 0, 255), box=(*secret, (0, 255, 0)))
    src = ScreenSource(
        ScreenSettings(image_format="png", redact=(secret,)), clock=FakeClock(), grabber=Screen(img)
    )
    src.open()
    out = decode(src.capture())
    x, y, w, h = secret
    assert out.getpixel((x + 5, y + 5)) == (0, 0, 0)
    assert out.getpixel((x + w - 1, y + h - 1)) == (0, 0, 0)
    assert out.getpixel((x - 1, y)) == (0, 0, 255) and out.getpixel((x + w, y + h)) == (0, 0, 255)
    assert not (np.asarray(out) == (0, 255, 0)).all(axis=2).any()


def test_downscale_keeps_the_aspect_ratio():
    src = ScreenSource(
        ScreenSettings(max_width=1280), clock=FakeClock(), grabber=Screen(scene(size=(2560, 1440)))
    )
    src.open()
    frame = src.capture()
    assert frame.captured_size == (2560, 1440) and frame.sent_size == (1280, 720)
    assert decode(frame).size == (1280, 720)


def test_a_sent_frame_carries_the_local_records_small_copy():
    src = ScreenSource(ScreenSettings(), clock=FakeClock(), grabber=Screen(scene(size=(1600, 900))))
    src.open()
    frame = src.capture()
    copy = Image.open(io.BytesIO(frame.local_copy))
    assert copy.format == "WEBP" and copy.size == (400, 225)
    assert copy.convert("RGB").getpixel((200, 112)) == pytest.approx((40, 90, 200), abs=6)


def test_only_frames_that_are_sent_are_downscaled(monkeypatch):
    import collector.devices.screen.source as source_module

    sizes = []
    real = source_module.downscale
    monkeypatch.setattr(source_module, "downscale", lambda im, w: sizes.append(im.size) or real(im, w))
    clock = FakeClock()
    screen = Screen(scene(size=(2560, 1440)))
    src = ScreenSource(ScreenSettings(max_width=1280), clock=clock, grabber=screen)
    src.open()
    sent = []
    for _ in range(4):  # the same picture: the first is sent, the others are near-identical
        sent.append(src.capture())
        clock.t += 5
    screen.image = scene(color=(250, 250, 250), size=(2560, 1440))
    sent.append(src.capture())
    assert [f is not None for f in sent] == [True, False, False, False, True]
    assert sizes == [(2560, 1440), (2560, 1440)] and src.skipped_identical == 3
    assert sent[-1].sent_size == (1280, 720)


# ---- cadence ------------------------------------------------------------------------------------


def _changing_screen():
    n = [0]

    def grab():
        n[0] += 1
        return scene(color=((n[0] * 40) % 256, 80, 120), size=(320, 180))

    return grab


def test_cadence_is_scheduled_on_the_clock_not_after_the_last_capture():
    clock = FakeClock()
    starts: list[float] = []

    def encoder(img, fmt, q):  # each encode takes 1.5 s of a 5 s interval
        starts.append(clock.t)
        clock.advance(1.5)
        return encode_image(img, fmt, q)

    src = ScreenSource(
        ScreenSettings(interval_s=5, diff_threshold=0),
        clock=clock,
        grabber=_changing_screen(),
        encoder=encoder,
    )
    stop = threading.Event()
    frames = []

    def on_frame(frame):
        frames.append(frame)
        if len(frames) == 10:
            stop.set()

    t0 = clock.t
    src.run(on_frame, stop)
    assert len(frames) == 10
    assert [round(s - t0, 6) for s in starts] == [5.0 * k for k in range(10)]  # no drift: not sleep(5) after
    assert src.counters["skipped_late"] == 0


def test_a_slow_encode_skips_missed_slots_instead_of_piling_up():
    clock = FakeClock()
    starts: list[float] = []

    def slow_encoder(img, fmt, q):  # 6.5 s per encode against a 5 s interval
        starts.append(clock.t)
        clock.advance(6.5)
        return encode_image(img, fmt, q)

    src = ScreenSource(
        ScreenSettings(interval_s=5, diff_threshold=0),
        clock=clock,
        grabber=_changing_screen(),
        encoder=slow_encoder,
    )
    stop = threading.Event()
    frames = []

    def on_frame(frame):
        frames.append(frame)
        if len(frames) == 6:
            stop.set()

    t0 = clock.t
    src.run(on_frame, stop)
    offsets = [round(s - t0, 6) for s in starts]
    assert offsets == [10.0 * k for k in range(6)]  # every other slot, always on a slot
    assert src.counters["skipped_late"] == 6  # slots 5, 15, ..., 55 s (the last one too)
    assert frames[1].extra.get("skipped_late_before") == 1


@pytest.mark.slow
def test_real_clock_slow_encode_never_runs_captures_back_to_back():
    starts: list[float] = []

    def slow_encoder(img, fmt, q):
        starts.append(time.monotonic())
        time.sleep(0.3)
        return encode_image(img, fmt, q)

    src = ScreenSource(
        ScreenSettings(interval_s=0.2, diff_threshold=0), grabber=_changing_screen(), encoder=slow_encoder
    )
    stop = threading.Event()
    worker = threading.Thread(target=src.run, args=(lambda f: None, stop), daemon=True)
    worker.start()
    time.sleep(2.0)
    stop.set()
    worker.join(10)
    assert not worker.is_alive(), "run() did not return after stop was set"
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) >= 2
    # Piling up would start the next capture right after the 0.3 s encode; slots are 0.2 s apart.
    assert min(gaps) >= 0.38, gaps
    assert src.counters["skipped_late"] >= len(gaps)


def test_run_returns_promptly_when_stopped_during_the_wait():
    src = ScreenSource(ScreenSettings(interval_s=30), grabber=_changing_screen())
    stop = threading.Event()
    worker = threading.Thread(target=src.run, args=(lambda f: None, stop), daemon=True)
    worker.start()
    time.sleep(0.3)
    t = time.monotonic()
    stop.set()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - t < 5
    assert src.counters["sent"] == 1


# ---- privacy pause ------------------------------------------------------------------------------


def test_pause_stops_grabbing_and_the_period_rides_on_the_next_frame(tmp_path):
    control = PauseControl(tmp_path)
    clock = FakeClock()
    screen = Screen(scene())
    src = ScreenSource(ScreenSettings(), pause_control=control, clock=clock, grabber=screen)
    src.open()
    assert src.capture() is not None
    paused = control.pause()
    assert paused.paused and control.is_paused()
    for _ in range(3):
        clock.advance(5)
        assert src.capture() is None
    assert screen.grabs == 1, "the screen was grabbed while paused"
    resumed = control.resume()
    clock.advance(5)
    frame = src.capture()  # identical content, but sent: the first frame after a pause
    assert frame is not None
    assert frame.paused_periods == ((paused.since_ms, resumed.until_ms),)
    assert src.counters["paused"] == 3
    clock.advance(5)
    assert src.capture() is None  # the period is not repeated and diffing is back
    clock.advance(5)
    screen.image = scene(color=(200, 0, 0))
    assert src.capture().paused_periods == ()


def test_a_short_pause_between_two_captures_is_still_recorded(tmp_path):
    control = PauseControl(tmp_path)
    clock = FakeClock(start_ms=int(time.time() * 1000) - 10_000)
    src = ScreenSource(ScreenSettings(), pause_control=control, clock=clock, grabber=Screen(scene()))
    src.open()
    src.capture()
    control.pause()
    state = control.resume()
    clock.advance(5)
    frame = src.capture()
    assert frame is not None and frame.paused_periods == ((state.since_ms, state.until_ms),)


def test_unreadable_pause_state_fails_closed(tmp_path):
    control = PauseControl(tmp_path)
    control.pause()
    control.state_path.write_text("{not json")
    assert control.is_paused()
    control.resume()
    assert not control.is_paused()


def test_pause_files_are_private(tmp_path):
    control = PauseControl(tmp_path / "state")
    control.pause()
    control.register_running(handle_signals=False)  # leave pytest's own signal handlers alone
    assert (control.state_dir.stat().st_mode & 0o777) == 0o700
    assert (control.state_path.stat().st_mode & 0o777) == 0o600
    assert (control.pid_path.stat().st_mode & 0o777) == 0o600
    assert control.running_pid() == os.getpid()
    control.unregister_running()
    assert control.running_pid() is None


def test_a_stale_pid_file_is_not_signalled(tmp_path):
    control = PauseControl(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    control.register_running(pid=dead.pid)
    assert control.running_pid() is None
    assert control.notify_running(paused=True) is None
    # A live process whose start time does not match the recorded one (a reused pid).
    control.pid_path.write_text(f"{os.getpid()} 1 1\n")
    assert control.running_pid() is None


def test_a_capture_without_signal_handlers_is_never_signalled(tmp_path):
    """An unhandled SIGUSR1 would end the process: the pid file says whether handlers exist."""
    control = PauseControl(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        control.register_running(pid=child.pid)  # another process: no handlers installed
        assert control.running_pid() == child.pid
        assert control.notify_running(paused=True) is None
        time.sleep(0.2)
        assert child.poll() is None
    finally:
        end_process(child)


RUNNING_CAPTURE = textwrap.dedent(
    """
    import logging, sys, time
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from collector.capture.pause import PauseControl
    control = PauseControl()
    control.register_running()  # installs the SIGUSR1/SIGUSR2 handlers too
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes stdin
    control.unregister_running()
    """
)


@pytest.fixture
def running_capture(tmp_path):
    """A stand-in for `collector run`: registers its pid and handles SIGUSR1/SIGUSR2."""
    if not hasattr(signal, "SIGUSR1"):
        pytest.skip("no SIGUSR1 on this platform")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNING_CAPTURE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    lines: list[str] = []  # its log lines, read as they come (a pipe read would block)
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        reader.start()
        proc.log_lines = lines
        yield proc, env, PauseControl(tmp_path / "openlesson-collector")
    finally:
        end_process(proc)


def _eventually(predicate, timeout_s=15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_signals_pause_and_resume_the_running_process(running_capture):
    proc, _, control = running_capture
    assert control.running_pid() == proc.pid
    os.kill(proc.pid, signal.SIGUSR1)
    assert _eventually(control.is_paused)
    os.kill(proc.pid, signal.SIGUSR2)
    assert _eventually(lambda: not control.is_paused())
    assert proc.poll() is None, "the signals killed the capture"
    proc.stdin.close()
    proc.wait(10)
    assert _eventually(lambda: any("screen capture resumed" in line for line in proc.log_lines))
    assert any("screen capture paused" in line for line in proc.log_lines)
    assert control.running_pid() is None


def _collector(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_collector_pause_and_resume_commands_reach_the_running_capture(running_capture):
    proc, env, control = running_capture
    out = _collector("pause", env=env)
    assert out.returncode == 0, out.stderr
    assert "paused" in out.stdout and f"pid {proc.pid}" in out.stdout
    assert control.is_paused()
    # The signal reached the running capture: it logs the pause at once, before its next screenshot.
    assert _eventually(lambda: any("screen capture paused" in line for line in proc.log_lines))
    assert not any("screen capture resumed" in line for line in proc.log_lines)
    out = _collector("pause", env=env)
    assert "already paused" in out.stdout
    out = _collector("resume", env=env)
    assert out.returncode == 0 and "resumed" in out.stdout and f"pid {proc.pid}" in out.stdout
    assert not control.is_paused()
    state = control.state()
    assert state.until_ms >= state.since_ms
    assert _eventually(lambda: any("screen capture resumed" in line for line in proc.log_lines))
    proc.stdin.close()
    proc.wait(10)


def test_collector_pause_without_a_running_capture_says_so(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = _collector("pause", env=env)
    assert out.returncode == 0, out.stderr
    assert "No capture is running" in out.stdout and "starts paused" in out.stdout
    assert PauseControl(tmp_path / "openlesson-collector").state().paused
    out = _collector("resume", env=env)
    assert "resumed" in out.stdout
    out = _collector("resume", env=env)
    assert "was not paused" in out.stdout
    assert out.stderr == ""


# ---- evidence fields ----------------------------------------------------------------------------


def test_screen_evidence_fields_validate_against_the_wire_model():
    src = ScreenSource(ScreenSettings(), clock=FakeClock(), grabber=Screen(scene()))
    src.open()
    frame = src.capture()
    fields = screen_evidence(
        frame,
        capture_id="c0ffee00-0000-4000-8000-000000000001",
        stream_id="screen:primary",
        chunk_index=7,
        collector_version="0.1.0",
    ).request_fields()
    assert fields["type"] == "screen" and fields["chunk_index"] == 7
    assert fields["timestamp_ms"] == frame.time_ms and fields["mime_type"] == "image/webp"
    assert fields["file_name"].endswith(".webp")
    meta = fields["metadata"]
    assert meta["capture_id"].startswith("c0ffee00") and meta["stream_id"] == "screen:primary"
    assert meta["captured_size"] == [W, H] and meta["sent_size"] == [W, H]
    assert meta["monitor"] == "primary" and meta["skipped_before"] == 0 and meta["paused_periods"] == []
    json.dumps(fields)
    EvidenceCreate(**fields, data=base64.b64encode(frame.image).decode())


def test_screenshots_are_capped_at_the_apis_10_mb_by_default():
    assert ScreenSettings().max_bytes == 10 * 1024 * 1024 == MAX_DECODED_BYTES


def test_screen_evidence_metadata_carries_the_frames_skips_and_pauses(tmp_path):
    """skipped_before and paused_periods in the metadata are the frame's own, not defaults."""
    control = PauseControl(tmp_path)
    clock = FakeClock()
    screen = Screen(scene())
    src = ScreenSource(ScreenSettings(), pause_control=control, clock=clock, grabber=screen)
    src.open()
    assert src.capture() is not None
    for _ in range(3):  # an unchanged screen: three frames skipped
        clock.advance(5)
        assert src.capture() is None
    paused = control.pause()
    clock.advance(5)
    assert src.capture() is None
    resumed = control.resume()
    clock.advance(5)
    screen.image = scene(color=(200, 0, 0))
    frame = src.capture()
    meta = screen_evidence(
        frame, capture_id="c", stream_id="screen:primary", chunk_index=1, collector_version="0"
    ).metadata
    assert meta["skipped_before"] == 3 == frame.skipped_before
    assert meta["paused_periods"] == [[paused.since_ms, resumed.until_ms]]
    assert meta["diff_score"] == frame.diff_score and meta["diff_score"] > 1


# ---- no display -----------------------------------------------------------------------------------


def _no_screen(monkeypatch, **env) -> NoSourceError:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    src = ScreenSource(ScreenSettings())
    with pytest.raises(NoSourceError) as info:
        src.open()
    err = info.value
    assert err.exit_code == EXIT_NO_SOURCE == 5
    assert str(err).startswith("no screen available: ") and "\n" not in str(err)
    return err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 paths are Linux-only")
def test_no_display_reports_the_reason(monkeypatch):
    assert "DISPLAY is not set" in str(_no_screen(monkeypatch))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 paths are Linux-only")
def test_wayland_without_xwayland_reports_the_reason(monkeypatch):
    err = _no_screen(monkeypatch, WAYLAND_DISPLAY="wayland-0", XDG_SESSION_TYPE="wayland")
    assert "Wayland session without XWayland" in str(err)


# ---- real X server --------------------------------------------------------------------------------

needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt install xvfb)"
)


@pytest.fixture(scope="module")
def xserver():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    server = Xvfb()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def paint(xserver):
    painter = Painter(xserver.display) if have_tk() else XlibPainter(xserver.display)
    try:
        yield painter
    finally:
        painter.stop()


def _capture_until(src: ScreenSource, ok, timeout_s=15.0) -> ScreenFrame:
    """Drawing and capturing are two X clients: allow the server a moment under load."""
    deadline = time.monotonic() + timeout_s
    while True:
        src._force_send = True  # noqa: SLF001 - a test wants every grab encoded
        frame = src.capture()
        if ok(decode(frame)) or time.monotonic() > deadline:
            return frame
        time.sleep(0.1)


@pytest.mark.xvfb
def test_xvfb_capture_shows_what_is_on_the_screen(xserver, paint):
    paint("fill #ff0000")
    with ScreenSource(ScreenSettings(display=xserver.display)) as src:
        assert src.monitor == 1
        frame = _capture_until(src, lambda img: close_to(mean_rgb(img), (255, 0, 0)))
        img = decode(frame)
        assert frame.mime_type == "image/webp" and img.size == (W, H) == frame.captured_size
        assert close_to(mean_rgb(img), (255, 0, 0)), mean_rgb(img)
        paint("fill #00a000", "rect 100 200 400 300 #ffffff")
        frame = _capture_until(
            src, lambda img: close_to(mean_rgb(img, (150, 250, 450, 450)), (255, 255, 255))
        )
        img = decode(frame)
        assert close_to(mean_rgb(img, (150, 250, 450, 450)), (255, 255, 255))
        assert close_to(mean_rgb(img, (1000, 600, 1800, 1000)), (0, 160, 0))


@pytest.mark.xvfb
def test_xvfb_changed_content_sent_identical_skipped_until_keepalive(xserver, paint):
    paint("fill #202020")
    clock = FakeClock()
    with ScreenSource(ScreenSettings(display=xserver.display, keepalive_s=60), clock=clock) as src:
        _capture_until(src, lambda img: close_to(mean_rgb(img), (32, 32, 32)))
        clock.advance(5)
        assert src.capture() is None and src.skipped_identical == 1
        paint("rect 300 300 800 400 #e0e0ff")  # a window appears
        clock.advance(5)
        frame = src.capture()
        assert frame is not None and frame.diff_score > 1 and frame.skipped_before == 1
        assert close_to(mean_rgb(decode(frame), (400, 400, 1000, 600)), (224, 224, 255))
        for _ in range(11):
            clock.advance(5)
            assert src.capture() is None
        clock.advance(5)
        keepalive = src.capture()
        assert keepalive is not None and keepalive.skipped_before == 11 and keepalive.diff_score == 0.0


@pytest.mark.xvfb
def test_xvfb_redaction_downscale_and_all_monitors(xserver, paint):
    paint("fill #0000ff", "rect 800 400 300 200 #00ff00")
    settings = ScreenSettings(
        display=xserver.display,
        monitor="all",
        image_format="png",
        max_width=960,
        redact=((790, 390, 320, 220),),
    )
    with ScreenSource(settings) as src:
        assert src.monitor == "all"
        frame = _capture_until(src, lambda img: close_to(mean_rgb(img, (0, 0, 300, 150)), (0, 0, 255)))
    img = decode(frame)
    assert frame.captured_size == (W, H) and frame.sent_size == (960, 540) == img.size
    assert close_to(mean_rgb(img, (405, 205, 545, 295)), (0, 0, 0), tol=2)  # the green box, blanked
    pixels = np.asarray(img).astype(int)
    assert not ((pixels[..., 1] > 128) & (pixels[..., 2] < 128)).any()  # no green left anywhere
    with ScreenSource(ScreenSettings(display=xserver.display, image_format="png", max_width=960)) as src:
        unredacted = decode(_capture_until(src, lambda img: True))
    assert close_to(mean_rgb(unredacted, (405, 205, 545, 295)), (0, 255, 0), tol=2)  # the test can fail


@pytest.mark.xvfb
def test_xvfb_a_monitor_that_does_not_exist_is_a_usage_error(xserver):
    with pytest.raises(UsageError, match="monitor 3 does not exist.*1 monitor"):
        ScreenSource(ScreenSettings(display=xserver.display, monitor=3)).open()


@pytest.mark.xvfb
def test_xvfb_pause_means_no_grab(xserver, paint, tmp_path):
    paint("fill #808080")
    control = PauseControl(tmp_path)
    clock = FakeClock()
    with ScreenSource(ScreenSettings(display=xserver.display), pause_control=control, clock=clock) as src:
        assert src.capture() is not None
        control.pause()
        clock.advance(5)
        assert src.capture() is None and src.captured == 1 and src.paused == 1
        control.resume()
        clock.advance(5)
        frame = src.capture()
        assert frame is not None and len(frame.paused_periods) == 1 and src.captured == 2


@pytest.mark.xvfb
def test_xvfb_run_loop_delivers_frames_and_stops(xserver, paint):
    paint("fill #336699")
    frames = []
    stop = threading.Event()
    src = ScreenSource(ScreenSettings(display=xserver.display, interval_s=0.25, diff_threshold=0))
    src.open()
    worker = threading.Thread(target=src.run, args=(frames.append, stop), daemon=True)
    worker.start()
    assert _eventually(lambda: len(frames) >= 3, timeout_s=30)
    stop.set()
    worker.join(10)
    src.close()
    assert not worker.is_alive()
    times = [f.time_ms for f in frames]
    assert times == sorted(times) and all(f.monitor == 1 for f in frames)


@pytest.mark.xvfb
@needs_xvfb
def test_xvfb_dead_display_is_no_source_not_a_traceback(monkeypatch):
    server = Xvfb(640, 480)
    src = ScreenSource(ScreenSettings(display=server.display))
    src.open()
    assert src.capture() is not None
    server.stop()
    with pytest.raises(NoSourceError, match="lost the display"):
        src.capture()
    src.close()
    monkeypatch.setenv("DISPLAY", server.display)
    with pytest.raises(NoSourceError, match=r"no screen available: cannot open display '?:\d+"):
        ScreenSource(ScreenSettings()).open()


@pytest.mark.xvfb
@needs_xvfb
def test_xvfb_dead_display_in_a_subprocess_prints_one_line(tmp_path):
    """What a user sees: the CLI catches CollectorError and prints str(err) — check it is clean."""
    server = Xvfb(640, 480)
    display = server.display
    server.stop()
    code = textwrap.dedent(
        """
        import sys
        from collector.errors import CollectorError
        from collector.devices.screen.settings import ScreenSettings
        from collector.devices.screen.source import ScreenSource
        try:
            ScreenSource(ScreenSettings()).open()
        except CollectorError as err:
            print(f"collector: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        """
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DISPLAY": display, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 5
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "no screen available: cannot open display" in out.stderr


def test_pause_state_round_trip(tmp_path):
    control = PauseControl(tmp_path)
    assert control.state() == PauseState(False)
    first = control.pause()
    assert control.pause() == first  # idempotent: keeps the start
    ended = control.resume()
    assert ended.paused is False and ended.since_ms == first.since_ms and ended.until_ms >= first.since_ms


# ---- black frames (Wayland) ---------------------------------------------------------------------


def test_is_blank_sees_black_and_empty_but_not_a_dark_slide_with_text():
    from collector.devices.screen.image import is_blank

    assert is_blank(scene(color=(0, 0, 0))) and is_blank(scene(color=(3, 5, 2)))
    assert is_blank(Image.new("RGB", (0, 0)))
    assert not is_blank(scene(color=(0, 0, 0), box=(900, 500, 40, 12, (200, 200, 200))))  # a line of text
    assert not is_blank(scene(color=(12, 12, 12)))


def test_black_frames_are_held_back_counted_and_a_keepalive_goes_out_marked():
    """A Wayland session's black frames: none sent but one per keepalive, marked; counted in the
    next sent frame's metadata and in the source's counters; a real frame after them goes at once."""
    clock = FakeClock()
    screen = Screen(scene())
    src = ScreenSource(
        ScreenSettings(interval_s=5, keepalive_s=30), clock=clock, grabber=screen, check_black=True
    )
    src.open()
    first = src.capture()
    assert first is not None and first.extra["backend"] == "test" and first.extra["black_frames"] == 0
    screen.image = scene(color=(0, 0, 0))
    sent = []
    for _ in range(6):  # 5..30 s: black; the keepalive is due at 30 s
        clock.advance(5)
        frame = src.capture()
        if frame is not None:
            sent.append(frame)
    assert len(sent) == 1 and sent[0].extra["black"] is True and sent[0].extra["black_frames"] == 5
    assert sent[0].time_ms - first.time_ms == 30_000
    assert src.counters["black_frames"] == 5
    screen.image = scene(color=(0, 0, 0))
    clock.advance(5)
    assert src.capture() is None  # held back again after the keep-alive
    screen.image = scene(color=(250, 250, 250))
    clock.advance(5)
    back = src.capture()
    assert back is not None and "black" not in back.extra and back.extra["black_frames"] == 1


def test_black_frames_off_wayland_are_the_screen_and_are_sent():
    """x11 on a real X server (check_black off): a black screen is content, unchanged from before."""
    clock = FakeClock()
    screen = Screen(scene(color=(0, 0, 0)))
    src = ScreenSource(ScreenSettings(interval_s=5), clock=clock, grabber=screen)
    src.open()
    frame = src.capture()
    assert frame is not None and "black" not in frame.extra and src.counters["black_frames"] == 0


def test_empty_frames_are_never_sent_even_as_keepalive():
    clock = FakeClock()
    screen = Screen(Image.new("RGB", (0, 0)))
    src = ScreenSource(ScreenSettings(interval_s=5, keepalive_s=10), clock=clock, grabber=screen)
    src.open()
    for _ in range(6):
        assert src.capture() is None
        clock.advance(5)
    assert src.counters["black_frames"] == 6 and src.counters["sent"] == 0


class FakeGrabber:
    """A Grabber (collector.devices.screen.grabber) that shows `image`."""

    def __init__(self, name: str, image: Image.Image) -> None:
        self.name, self.image, self.monitor, self.size = name, image, 1, image.size
        self.black_means_broken, self.closed = False, False

    def open(self) -> None: ...

    def grab(self) -> Image.Image:
        return self.image

    def close(self) -> None:
        self.closed = True


def test_auto_falls_back_to_a_backend_with_a_real_frame_after_black_frames(monkeypatch, caplog):
    """Issue 21: after BLACK_STREAK black frames in a row, `--screen-backend auto` switches to
    another backend that gives a real frame, sends that frame, says so, and names it after."""
    import collector.devices.screen.source as source_module

    portal = FakeGrabber("portal", scene())
    grim = FakeGrabber("grim", scene(color=(250, 250, 250)))
    asked: list[tuple[str, ...]] = []

    def open_backend(settings, exclude=(), real_only=False, last_resort=False):
        asked.append(tuple(exclude))
        chosen = grim if "portal" in exclude else portal
        return chosen, chosen.grab()

    monkeypatch.setattr(source_module, "open_backend", open_backend)
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    clock = FakeClock()
    src = ScreenSource(ScreenSettings(interval_s=5, keepalive_s=60), clock=clock)
    src.open()
    assert src.backend == "portal" and src.capture().extra["backend"] == "portal"
    portal.image = scene(color=(0, 0, 0))  # the portal's frames turn black
    got = []
    for _ in range(source_module.BLACK_STREAK):
        clock.advance(5)
        got.append(src.capture())
    assert got[:-1] == [None] * (source_module.BLACK_STREAK - 1)
    switched = got[-1]
    assert switched is not None and switched.extra["backend"] == "grim" and "black" not in switched.extra
    assert switched.extra["black_frames"] == source_module.BLACK_STREAK - 1
    assert asked[-1] == ("portal",) and portal.closed and src.backend == "grim"
    assert [r.message for r in caplog.records if "switched to backend grim" in r.message]


def test_screen_backend_is_checked():
    with pytest.raises(UsageError, match="'wayland' is not one of auto, x11, portal, grim"):
        ScreenSettings(backend="wayland")
