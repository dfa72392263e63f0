"""What a capture command captures from: the profile it makes of its options (`--device`, the
BrainFlow board options, `--aux`), and the sources opened from that profile: the EEG source (LSL, a
managed muselsl, a BrainFlow board, with its streamer's µV convention checked), the headset's
auxiliary sensor streams, and the screen (`run`, `replay`, `fit`, `demo`)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from collector.capture.pause import PauseControl
from collector.capture.status_view import StatusOutput
from collector.core.records import StreamDescription
from collector.devices.brainflow.source import BrainFlowSource
from collector.devices.lsl.aux import find_aux_streams, open_aux_source, parse_aux
from collector.devices.lsl.source import LslSource
from collector.devices.muse import MuseSource
from collector.devices.screen.settings import ScreenSettings
from collector.devices.screen.source import ScreenSource
from collector.devices.streamers import ScaledSource, adjust, athena_correction
from collector.errors import NoSourceError, UsageError
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


def add_device_options(eeg: Any, *, aux: bool = True) -> None:
    """`--device` and the BrainFlow board options (run and fit); `--aux` for a capture."""
    eeg.add_argument("--device", choices=("lsl", "muse", "brainflow"), help="EEG source (default lsl)")
    eeg.add_argument(
        "--board",
        metavar="NAME|ID",
        help="BrainFlow board (with --device brainflow): a BoardIds name such as synthetic, cyton, ganglion, "
        "crown, muse_s_athena, or its id; `collector devices` lists them",
    )
    eeg.add_argument("--serial-port", metavar="PORT", help="BrainFlow serial_port (e.g. /dev/ttyUSB0, COM3)")
    eeg.add_argument("--mac-address", metavar="MAC", help="BrainFlow mac_address (BLE boards)")
    eeg.add_argument("--serial-number", metavar="SN", help="BrainFlow serial_number (e.g. a Muse's name)")
    eeg.add_argument(
        "--board-preset", metavar="PRESET", help="BrainFlow preset carrying the EEG (default DEFAULT)"
    )
    eeg.add_argument(
        "--board-file", metavar="PATH", help="BrainFlow playback_file board: the file to replay live"
    )
    eeg.add_argument(
        "--master-board", metavar="NAME|ID", help="BrainFlow playback_file board: the board that recorded it"
    )
    eeg.add_argument(
        "--board-config",
        metavar="CMD",
        action="append",
        help="a BrainFlow config_board command sent before streaming (repeatable; e.g. old_timestamps)",
    )
    if aux:
        eeg.add_argument(
            "--aux",
            metavar="auto|off|acc,gyro,ppg",
            help="the headset's accelerometer, gyroscope and PPG streams, each captured as its own stream "
            "(default auto: those present; muselsl is started with --acc --gyro --ppg)",
        )


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
    resolved = _with_args(profile, args, device, monitor)
    given = [flag for attr, flag in BRAINFLOW_OPTIONS if getattr(args, attr, None)]
    if given and resolved.device.kind != "brainflow":  # else it would be ignored without a word
        raise UsageError(
            f"{given[0]} is a BrainFlow option, but this capture reads {resolved.device.kind}: "
            f"add --device brainflow, or leave {given[0]} out."
        )
    return resolved


# The options only a BrainFlow board reads: (argparse attribute, option).
BRAINFLOW_OPTIONS = (
    ("board", "--board"),
    ("serial_port", "--serial-port"),
    ("mac_address", "--mac-address"),
    ("serial_number", "--serial-number"),
    ("board_preset", "--board-preset"),
    ("board_file", "--board-file"),
    ("master_board", "--master-board"),
    ("board_config", "--board-config"),
)


def _with_args(profile: Profile, args: argparse.Namespace, device: str | None, monitor: Any) -> Profile:
    return profile.with_overrides(
        flags=CAPTURE_FLAGS,
        analysis={"chunk_s": args.chunk_seconds},
        delivery={"flush_timeout_s": args.flush_timeout},
        device={
            "kind": device,
            "address": getattr(args, "address", None),
            "aux_sensors": getattr(args, "aux", None),
            "board": getattr(args, "board", None),
            "board_preset": getattr(args, "board_preset", None),
            "serial_port": getattr(args, "serial_port", None),
            "mac_address": getattr(args, "mac_address", None),
            "serial_number": getattr(args, "serial_number", None),
            "board_file": getattr(args, "board_file", None),
            "master_board": getattr(args, "master_board", None),
            "board_config": getattr(args, "board_config", None),
        },
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

log = logging.getLogger("collector.run")


def _brainflow_source(profile: Profile, open_timeout_s: float | None) -> BrainFlowSource:
    d = profile.device
    if not d.board:
        raise UsageError(
            "--device brainflow needs --board NAME|ID (e.g. synthetic, cyton, ganglion, crown, "
            "muse_s_athena); `collector devices` lists the boards BrainFlow supports."
        )
    return BrainFlowSource(
        d.board,
        serial_port=d.serial_port,
        mac_address=d.mac_address or (d.address if d.kind == "brainflow" else None),
        serial_number=d.serial_number,
        board_preset=d.board_preset,
        file=d.board_file,
        master_board=d.master_board,
        config=d.board_config,
        timeout_s=open_timeout_s,
    )


def _brainflow_scale(source: Any, description: StreamDescription) -> Any:
    """A Muse S Athena through a BrainFlow older than 5.23: EEG corrected to 1450/16383 µV per LSB."""
    if "ATHENA" not in str(getattr(source, "master_name", "")):
        return source
    from importlib.metadata import version

    streamer = athena_correction(version("brainflow"))
    if streamer.factor != 1.0:
        log.warning("EEG scale: %s", streamer.note)
        return ScaledSource(source, streamer)
    log.info("EEG scale: %s", streamer.note)
    return source


def open_eeg(profile: Profile, open_timeout_s: float | None = None):
    """The EEG source, opened: (source, description). open_timeout_s bounds the wait for the stream
    (`fit --timeout`); by default a Muse gets 60 s to connect and an LSL stream 5 s to appear.

    A stream whose streamer uses another µV convention (OpenMuse's uncentred Athena EEG; BrainFlow
    before 5.23 on an Athena) comes back wrapped so its samples are centred µV
    (collector.devices.streamers)."""
    source: MuseSource | LslSource | BrainFlowSource
    bound: dict[str, Any] = {}  # the source's own default wait unless open_timeout_s is given
    if profile.device.kind == "brainflow":
        source = _brainflow_source(profile, open_timeout_s)
    elif profile.device.kind == "muse":
        if open_timeout_s is not None:
            bound["connect_timeout_s"] = open_timeout_s
        source = MuseSource(
            address=profile.device.address,
            model=profile.device.model or "auto",
            eeg_channels=profile.device.channels or None,
            aux_channels=profile.device.aux,
            markers=profile.stream.markers,
            sensors=parse_aux(profile.device.aux_sensors),
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
    if isinstance(source, BrainFlowSource):
        return _brainflow_scale(source, description), description
    return adjust(source, description), description


def open_aux(profile: Profile, description: StreamDescription | None, output: StatusOutput) -> list:
    """The headset's auxiliary sensor streams found on LSL, opened: [(kind, source, description)].

    `[device] aux_sensors` / `--aux` says which (auto: all present). None found is no error: the
    EEG is captured alone, and a line says so when some were asked for by name.
    """
    kinds = parse_aux(profile.device.aux_sensors)
    if not kinds or description is None or profile.device.kind == "brainflow":
        return []
    wait_s = 3.0 if profile.device.kind == "muse" else 1.0  # muselsl opens its outlets one by one
    found = find_aux_streams(description, kinds, timeout_s=wait_s)
    opened = []
    for aux in found:
        try:
            src = open_aux_source(aux)
        except NoSourceError as err:
            output.log("aux_unavailable", message=f"{aux.kind} stream not captured: {err}")
            continue
        assert src.description is not None
        opened.append((aux.kind, src, src.description))
        output.log(
            "aux_opened",
            message=f"{aux.kind} stream {aux.name!r} (type {aux.type}, {src.description.sfreq:g} Hz, "
            f"{', '.join(src.description.channels)}) captured as stream {aux.stream_id}",
        )
    missing = [k for k in kinds if k not in {kind for kind, _, _ in opened}]
    if missing and profile.device.aux_sensors.strip().lower() not in ("auto", "all", "on"):
        output.log("aux_missing", message=f"no {', '.join(missing)} stream found for this headset")
    return opened
