"""A headset's auxiliary sensor streams on LSL (accelerometer, gyroscope, PPG/optics), found from its EEG.

What each streamer publishes (stream `type`, how it is tied to the EEG stream):

    muselsl >= 2.5 (all models; `--acc --gyro --ppg`, Athena also `--optics`):
        every outlet is named "Muse" with the EEG stream's source_id ("Muse<MAC>");
        type ACC (X, Y, Z in g, 52 Hz), GYRO (X, Y, Z in dps, 52 Hz),
        PPG (legacy: PPG1..PPG3, 64 Hz; Athena: OPT0..OPT15 in a.u., 64 Hz; muselsl 2.5.0 typed
        the Athena's optics OPTICS)
    OpenMuse (Muse S Athena): source_id "<MAC>_eeg" for EEG, and on the same host
        "<MAC>_accgyro", type ACCGYRO (ACC_GYRO up to 0.1.7): ACC_X..ACC_Z (g) + GYRO_X..GYRO_Z (dps), 52 Hz
        "<MAC>_optics", type PPG: OPTICS_* channels (raw / 32768), 64 Hz

`find_aux_streams` turns the ones present into `AuxStream`s, one per kind (a combined ACCGYRO stream
becomes two, each with its own channels); `open_aux_source` opens one as an `LslSource`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from collector.core.records import StreamDescription
from collector.devices.lsl.discovery import resolve, sort_key
from collector.devices.lsl.source import LslSource
from collector.errors import UsageError

log = logging.getLogger("collector.devices.lsl")

AUX_KINDS = ("accelerometer", "gyroscope", "ppg")
_WORDS = {
    "acc": "accelerometer",
    "accel": "accelerometer",
    "accelerometer": "accelerometer",
    "gyro": "gyroscope",
    "gyroscope": "gyroscope",
    "ppg": "ppg",
    "optics": "ppg",
}
# LSL stream type (upper case) -> the kinds it carries.
_TYPES = {
    "ACC": ("accelerometer",),
    "GYRO": ("gyroscope",),
    "PPG": ("ppg",),
    "OPTICS": ("ppg",),
    "ACCGYRO": ("accelerometer", "gyroscope"),
    "ACC_GYRO": ("accelerometer", "gyroscope"),
}
_UNITS = {"accelerometer": "g", "gyroscope": "dps", "ppg": "a.u."}


def parse_aux(text: str | None) -> tuple[str, ...]:
    """`--aux` / `[device] aux_sensors`: "auto" (all kinds present), "off", or a list like
    "acc,gyro,ppg". Returns the kinds in AUX_KINDS order. Raises UsageError for an unknown word."""
    value = (text or "auto").strip().lower()
    if value in ("auto", "all", "on"):
        return AUX_KINDS
    if value in ("off", "none", ""):
        return ()
    kinds = set()
    for word in value.replace(" ", ",").split(","):
        if not word:
            continue
        if word not in _WORDS:
            raise UsageError(
                f"--aux {text!r}: {word!r} is not a sensor; use auto, off, or a list of acc, gyro, ppg."
            )
        kinds.add(_WORDS[word])
    return tuple(k for k in AUX_KINDS if k in kinds)


@dataclass(frozen=True, slots=True)
class AuxStream:
    """One auxiliary sensor stream to capture: which kind, and how to find and cut its LSL stream.

    channels: the labels to keep (a combined ACCGYRO stream's ACC_* or GYRO_*), None for all.
    """

    kind: str
    name: str
    type: str
    source_id: str
    hostname: str
    channels: tuple[str, ...] | None
    unit: str

    @property
    def stream_id(self) -> str:
        return f"{self.kind}:{self.source_id or self.name}"


def _related(eeg: StreamDescription, source_id: str) -> bool:
    if not eeg.source_id:
        return False
    if source_id == eeg.source_id:
        return True
    base = eeg.source_id[: -len("_eeg")] if eeg.source_id.lower().endswith("_eeg") else None
    return base is not None and source_id.startswith(base + "_")


def _channels_for(kind: str, labels: tuple[str, ...], n_kinds: int) -> tuple[str, ...] | None:
    if n_kinds == 1:
        return None
    prefix = "ACC" if kind == "accelerometer" else "GYRO"
    picked = tuple(label for label in labels if label.upper().startswith(prefix + "_"))
    if picked:
        return picked
    # No labels to go by: muselsl/OpenMuse order, accelerometer first.
    return ("ch1", "ch2", "ch3") if kind == "accelerometer" else ("ch4", "ch5", "ch6")


def find_aux_streams(
    eeg: StreamDescription, kinds: tuple[str, ...], timeout_s: float = 1.0
) -> list[AuxStream]:
    """The auxiliary streams of the headset behind `eeg` visible on LSL within `timeout_s`.

    Tied to it by source_id (muselsl: the same; OpenMuse: "<MAC>_eeg" -> "<MAC>_accgyro",
    "<MAC>_optics") and host. One AuxStream per kind in `kinds` (the first by name, source_id, uid
    when several match). An EEG stream without a source_id has none.
    """
    if not kinds or not eeg.source_id:
        return []
    import pylsl

    found: dict[str, AuxStream] = {}
    for info in sorted(resolve("", timeout_s), key=sort_key):
        carried = _TYPES.get(info.type().upper())
        if not carried or info.channel_format() == pylsl.cf_string:
            continue
        if eeg.hostname and info.hostname() != eeg.hostname:
            continue
        if not _related(eeg, info.source_id()):
            continue
        labels: tuple[str, ...] = ()
        if len(carried) > 1:
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=1, recover=False)
                try:
                    labels = tuple(x or "" for x in (inlet.info(timeout=1.0).get_channel_labels() or []))
                finally:
                    del inlet
            except Exception:  # gone meanwhile: skip it
                continue
        for kind in carried:
            if kind in kinds and kind not in found:
                found[kind] = AuxStream(
                    kind=kind,
                    name=info.name(),
                    type=info.type(),
                    source_id=info.source_id(),
                    hostname=info.hostname(),
                    channels=_channels_for(kind, labels, len(carried)),
                    unit=_UNITS[kind],
                )
    return [found[k] for k in AUX_KINDS if k in found]


def open_aux_source(aux: AuxStream, resolve_timeout_s: float = 2.0) -> LslSource:
    """An opened LslSource over one auxiliary stream (its channels only; no marker stream).

    Raises NoSourceError when the stream vanished since it was found.
    """
    source = LslSource(
        stream_name=aux.name,
        stream_type=aux.type,
        source_id=aux.source_id or None,
        resolve_timeout_s=resolve_timeout_s,
        eeg_channels=aux.channels,
        unit=aux.unit,
        markers="off",
        kind=aux.kind,
    )
    try:
        source.open()
    except BaseException:
        source.close()
        raise
    return source
