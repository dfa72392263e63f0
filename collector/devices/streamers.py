"""Which program publishes a Muse's EEG, and the µV scale it uses: the same µV whichever streamer.

The Muse S Athena sends 14-bit EEG samples. Each streamer turns them into µV with its own constants
(checked in their sources; see docs/reference/devices.md):

    streamer            µV per LSB          midpoint subtracted    result
    muselsl >= 2.5      1450/16383          8192                   centred µV
    OpenMuse            1450/16383          none                   µV + 725.04 µV DC
    BrainFlow >= 5.23   1450/16383          (see below)            µV
    BrainFlow <= 5.22   0.40293040293       none                   4.5526x too large

BrainFlow adopted 1450/16383 in brainflow#855 (the "4.55x" of muse-lsl#228: 0.40293 / 0.088506 =
4.5526); the project requires brainflow >= 5.23, whose library carries 1450/16383 (checked in the
5.23.0 wheel's libBoardController.so). `athena_correction` still checks the installed version and
corrects an older one, with a warning. OpenMuse's constant DC (8192 x 1450/16383 = 725.04 µV) is
subtracted so its samples match muselsl's; band powers and quality flags remove the mean anyway.
Legacy Muse models (12-bit) have one scale everywhere (0.48828125 µV per LSB, midpoint 2048).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from collector.core.records import SampleChunk, StreamDescription

log = logging.getLogger("collector.devices")

ATHENA_EEG_SCALE = 1450.0 / 16383.0  # µV per LSB: muselsl 2.5, OpenMuse, BrainFlow >= 5.23
OLD_BRAINFLOW_ATHENA_SCALE = 0.40293040293040294  # BrainFlow <= 5.22.2 muse_athena_constants.h
ATHENA_MIDPOINT = 8192.0
OPENMUSE_DC_UV = ATHENA_MIDPOINT * ATHENA_EEG_SCALE  # 725.04 µV


@dataclass(frozen=True, slots=True)
class Streamer:
    """Who publishes the stream, and what to do to its EEG to get centred µV: x * factor - offset."""

    name: str  # muselsl | OpenMuse | BrainFlow | other
    factor: float = 1.0
    offset_uv: float = 0.0
    note: str = ""


def identify(description: StreamDescription) -> Streamer:
    """The streamer behind an LSL EEG stream, from its name, source_id and labels."""
    labels = tuple(c.upper() for c in description.channels)
    sid = description.source_id or ""
    if (
        description.name.startswith("Muse")
        and sid.lower().endswith("_eeg")
        and any(lbl.startswith("EEG_") for lbl in labels)
    ):
        return Streamer(
            "OpenMuse",
            offset_uv=OPENMUSE_DC_UV,
            note=f"OpenMuse EEG (1450/16383 µV per LSB, not centred): {OPENMUSE_DC_UV:.2f} µV DC removed",
        )
    if description.name == "Muse" and sid.startswith("Muse"):
        return Streamer("muselsl", note="muselsl EEG (centred µV; Athena 1450/16383 µV per LSB)")
    if description.name.startswith("BrainFlow"):
        return Streamer("BrainFlow")
    return Streamer("other")


def athena_correction(version: str) -> Streamer:
    """BrainFlow's Athena EEG scale for an installed brainflow `version` ("5.23.0")."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return Streamer("BrainFlow", note=f"brainflow version {version!r} not understood; scale unchecked")
    if (major, minor) >= (5, 23):
        return Streamer("BrainFlow", note="BrainFlow >= 5.23: Athena EEG at 1450/16383 µV per LSB")
    factor = ATHENA_EEG_SCALE / OLD_BRAINFLOW_ATHENA_SCALE
    return Streamer(
        "BrainFlow",
        factor=factor,
        note=(
            f"brainflow {version} scales Muse S Athena EEG 4.55x too large (brainflow#855); corrected "
            f"(x {factor:.6f}). Upgrade: pip install -U 'brainflow>=5.23'"
        ),
    )


class ScaledSource:
    """An EegSource whose EEG samples become x * factor - offset_uv (everything else passes through)."""

    def __init__(self, source, streamer: Streamer) -> None:
        self._source = source
        self.streamer = streamer

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def read(self, timeout: float) -> SampleChunk | None:
        chunk = self._source.read(timeout)
        if chunk is None or len(chunk) == 0:
            return chunk
        data = np.asarray(chunk.data, dtype=np.float64) * self.streamer.factor - self.streamer.offset_uv
        return SampleChunk(
            data=data,
            times_ms=chunk.times_ms,
            gaps=chunk.gaps,
            events=chunk.events,
            repaired=chunk.repaired,
            sfreq=chunk.sfreq,
        )

    def close(self) -> None:
        self._source.close()


def adjust(source, description: StreamDescription):
    """`source`, wrapped when its streamer needs a correction (logged once); else as it is."""
    streamer = identify(description)
    if streamer.note:
        log.info("EEG scale: %s", streamer.note)
    if streamer.factor != 1.0 or streamer.offset_uv != 0.0:
        return ScaledSource(source, streamer)
    return source
