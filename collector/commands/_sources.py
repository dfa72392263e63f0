"""What a capture command captures from: the profile it makes of its options, and the EEG and
screen sources opened from that profile (`run`, `replay`, `fit`, `demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from collector.capture.pause import PauseControl
from collector.capture.status_view import StatusOutput
from collector.devices.lsl.source import LslSource
from collector.devices.muse import MuseSource
from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.source import ScreenSource
from collector.errors import NoSourceError
from collector.profiles.profile import Profile, load_profile

# Profile settings each command-line option sets, so a bad value is reported against the option.
CAPTURE_FLAGS = {
    "analysis.chunk_s": "--chunk-seconds",
    "delivery.flush_timeout_s": "--flush-timeout",
    "screen.interval_s": "--screen-interval",
    "screen.max_width": "--screen-max-width",
    "screen.keepalive_s": "--screen-keepalive",
    "screen.monitor": "--monitor",
    "screen.backend": "--screen-backend",
    "device.address": "--address",
}


def profile_from_args(args: argparse.Namespace) -> Profile:
    profile = load_profile(args.profile)
    device = getattr(args, "device", None)
    if (
        device is None
        and profile.device.kind == "muse"
        and (getattr(args, "stream_name", None) or getattr(args, "source_id", None))
    ):
        # A Muse profile (or one extending it) pointed at a named LSL stream: that stream is read as
        # it is (muselsl already streaming, a lab's LSL bridge), not a headset connected anew.
        device = "lsl"
    monitor = getattr(args, "monitor", None)
    if monitor is not None and monitor != "all":
        monitor = int(monitor) if monitor.isdigit() else monitor
    return profile.with_overrides(
        flags=CAPTURE_FLAGS,
        analysis={"chunk_s": args.chunk_seconds},
        delivery={"flush_timeout_s": args.flush_timeout},
        device={"kind": device, "address": getattr(args, "address", None)},
        stream={
            "name": getattr(args, "stream_name", None),
            "type": getattr(args, "stream_type", None),
            "source_id": getattr(args, "source_id", None),
            "markers": getattr(args, "markers", None),
        },
        screen={
            "mode": getattr(args, "screen", None),
            "interval_s": getattr(args, "screen_interval", None),
            "max_width": getattr(args, "screen_max_width", None),
            "keepalive_s": getattr(args, "screen_keepalive", None),
            "monitor": monitor,
            "backend": getattr(args, "screen_backend", None),
        },
    )


def open_screen(profile: Profile, output: StatusOutput, pause_control: PauseControl | None = None):
    """The screen source, or None; `--screen on` without a display is fatal (exit 5)."""
    mode = profile.screen.mode
    if mode == "off":
        return None
    s = profile.screen
    kwargs: dict[str, Any] = {
        "interval_s": s.interval_s,
        "max_width": s.max_width,
        "keepalive_s": s.keepalive_s,
        "monitor": s.monitor,
        "redact": tuple(tuple(r) for r in s.redact),
        "backend": s.backend,
    }
    if s.format:
        kwargs["image_format"] = s.format
    if s.quality:
        kwargs["quality"] = s.quality
    # auto: even a backend that gives only black frames (mss under XWayland) is opened; its black
    # frames are counted, never sent, and the capture says once that screenshots are not possible.
    source = ScreenSource(ScreenSettings(**kwargs), pause_control=pause_control, last_resort=mode == "auto")
    try:
        source.open()
    except NoSourceError as err:
        if mode == "on":
            raise NoSourceError(
                f"{err} (--screen on was asked for; use --screen auto to continue EEG-only)"
            ) from None
        output.log("screen_unavailable", message=f"{err}; continuing EEG-only.")
        return None
    output.log(
        "screen_backend",
        backend=source.backend,
        message=f"screenshots through {source.backend} ({BACKEND_WORDS.get(source.backend or '', '')})",
    )
    return source


BACKEND_WORDS = {
    "x11": "X11 via mss",
    "portal": "the desktop's xdg-desktop-portal Screenshot",
    "grim": "grim, wlroots screencopy",
}


def open_eeg(profile: Profile, open_timeout_s: float | None = None):
    """The EEG source, opened: (source, description). open_timeout_s bounds the wait for the stream
    (`fit --timeout`); by default a Muse gets 60 s to connect and an LSL stream 5 s to appear."""
    source: MuseSource | LslSource
    bound: dict[str, Any] = {}  # the source's own default wait unless open_timeout_s is given
    if profile.device.kind == "muse":
        if open_timeout_s is not None:
            bound["connect_timeout_s"] = open_timeout_s
        source = MuseSource(
            address=profile.device.address,
            model=profile.device.model or "auto",
            eeg_channels=profile.device.channels or None,
            aux_channels=profile.device.aux,
            markers=profile.stream.markers,
            **bound,
        )
    else:
        if open_timeout_s is not None:
            bound["resolve_timeout_s"] = min(5.0, open_timeout_s)
        source = LslSource(
            **bound,
            stream_name=profile.stream.name,
            stream_type=profile.stream.type,
            source_id=profile.stream.source_id,
            eeg_channels=profile.device.channels or None,
            aux_channels=profile.device.aux,
            model=profile.device.model,
            markers=profile.stream.markers,
        )
    try:
        description = source.open()
    except BaseException:
        source.close()
        raise
    return source, description
