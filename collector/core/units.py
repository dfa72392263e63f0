"""Declared channel units, converted to µV: the one table every source (live LSL, XDF, CSV, EDF) uses.

The artifact's samples are always µV when the stream's unit is a voltage. A unit is read from what
the sender declared, in any of its usual spellings:

    V, volt, volts                           x 1e6
    mV, millivolt, millivolts                x 1e3
    uV, µV (U+00B5), μV (U+03BC), microvolt(s), and the Latin-1 byte 0xB5 read as
    "Â\\xb5V"/"\\ufffdV" by a UTF-8 decoder   x 1
    nV, nanovolt, nanovolts                  x 1e-3
    MNE's power-of-ten multiplier of volts (mne-lsl's PlayerLSL writes "0" for V, "-6" for µV):
    an integer string n means 10**n V        x 10**(n + 6)

An empty unit is taken as µV (what EEG streams without a unit send: muselsl, most LSL apps). Any
other unit (a.u., mmHg, g, dps, ...) is not a voltage: `unit_scale` says so, and the caller keeps
the values as they are, with one warning naming the unit.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

MICROVOLTS = "microvolts"  # the unit string the artifact states for µV (muselsl's own spelling)

# Samples are rounded to this many µV in the artifact (collector.core.chunk).
SAMPLE_PRECISION_UV = 0.001

_NAMED = {
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0, "micro volts": 1.0,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}  # fmt: skip
# A µ that went through the wrong decoder: Latin-1 0xB5 decoded as UTF-8 (U+FFFD), or UTF-8 "µ"
# decoded as Latin-1 ("Âµ").
_MANGLED_MICRO = ("\ufffdv", "âµv")
_MULTIPLIER = re.compile(r"^[+-]?\d{1,2}$")


@dataclass(frozen=True, slots=True)
class UnitScale:
    """How to turn a channel's values into the artifact's unit.

    `factor` multiplies the values (1.0 when kept as they are); `unit` is what the artifact states
    (`"microvolts"` for any voltage); `known_voltage` is False for a unit that is not a voltage or
    not understood, which callers name in one warning.
    """

    factor: float
    unit: str
    known_voltage: bool


def unit_scale(declared: str | None) -> UnitScale:
    """The scale for one declared unit string (None or "" = µV). Never raises."""
    text = (declared or "").strip()
    if not text:
        return UnitScale(1.0, MICROVOLTS, True)
    key = text.lower()
    if key in _NAMED:
        return UnitScale(_NAMED[key], MICROVOLTS, True)
    if key in _MANGLED_MICRO:
        return UnitScale(1.0, MICROVOLTS, True)
    if _MULTIPLIER.match(key):
        return UnitScale(10.0 ** (int(key) + 6), MICROVOLTS, True)
    return UnitScale(1.0, text, False)


def stream_scale(units: list[str] | tuple[str, ...]) -> tuple[UnitScale, list[str]]:
    """One scale for the EEG channels of a stream, and the channel units that disagree with it.

    Channels of one EEG stream share a unit in practice; the first declared one wins and any
    channel declaring another voltage scale is returned so the caller can name it (its values
    are then converted with its own factor by `channel_factors`).
    """
    declared = [u for u in units if (u or "").strip()]
    scale = unit_scale(declared[0] if declared else None)
    others = sorted({u for u in declared if unit_scale(u).factor != scale.factor})
    return scale, others


def channel_factors(units: list[str] | tuple[str, ...], n_channels: int) -> list[float]:
    """Per-channel factors to µV for voltage units (1.0 for unknown or non-voltage units)."""
    out = []
    for i in range(n_channels):
        s = unit_scale(units[i] if i < len(units) else None)
        out.append(s.factor if s.known_voltage else 1.0)
    return out


def below_precision(max_abs_uv: float) -> bool:
    """True when a non-zero signal would be delivered as all zeros at the artifact's precision.

    Such a stream is a unit problem (volts declared as µV, or no unit at all), not data to send.
    """
    return math.isfinite(max_abs_uv) and 0.0 < max_abs_uv < SAMPLE_PRECISION_UV / 2


def stream_units(
    units: list[str] | tuple[str, ...], n_channels: int, stream: str, log: logging.Logger
) -> tuple[list[float], str]:
    """Per-channel factors to µV for a stream's EEG channels, and the unit the artifact states.

    units: the declared unit of each EEG channel ("" or missing = µV). Logs one warning naming a
    unit that is not a voltage or not known (values kept, the unit stated as declared), and one
    naming channels that declare another voltage scale than the first (each converted by its own).
    """
    scale, others = stream_scale(units)
    if not scale.known_voltage:
        log.warning(
            "stream %r declares its channels in %r, which is not a voltage (or not a unit known here); "
            "values kept as they are and the unit stated as %r",
            stream,
            scale.unit,
            scale.unit,
        )
    elif others:
        log.warning(
            "stream %r: some channels declare other units (%s) than the first (%s); each is converted "
            "to µV by its own unit",
            stream,
            ", ".join(repr(u) for u in others),
            next((u for u in units if (u or "").strip()), ""),
        )
    return channel_factors(units, n_channels), scale.unit


def zero_signal_message(stream: str, max_abs: float, unit: str) -> str:
    """The one-line refusal for a non-zero signal that would be delivered as zeros."""
    return (
        f"stream {stream!r}: its largest value is {max_abs:.3g} {unit}, which would be delivered as "
        f"0.000 at the artifact's precision of {SAMPLE_PRECISION_UV:g} µV: its declared unit is wrong "
        "(volts sent as µV, or no unit given). Nothing of it was sent. Have the sender declare its "
        "channel unit (e.g. 'V' or MNE's '0'), then capture again."
    )
