"""Opening a capture's sources from its profile: the EEG source (LSL, a managed muselsl, a BrainFlow
board), with its streamer's µV convention checked, and the headset's auxiliary sensor streams."""

from __future__ import annotations

import logging
from typing import Any

from collector.capture.status_view import StatusOutput
from collector.core.records import StreamDescription
from collector.devices.brainflow.source import BrainFlowSource
from collector.devices.lsl.aux import find_aux_streams, open_aux_source, parse_aux
from collector.devices.lsl.source import LslSource
from collector.devices.muse import MuseSource
from collector.devices.streamers import ScaledSource, adjust, athena_correction
from collector.errors import NoSourceError, UsageError
from collector.profiles.profile import Profile

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
