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
from typing import Any

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
    units: list[str] | tuple[str, ...],
    n_channels: int,
    stream: str,
    log: logging.Logger,
    labels: list[str] | tuple[str, ...] = (),
    *,
    voltage_expected: bool = True,
) -> tuple[list[float], str]:
    """Per-channel factors to µV for a stream's EEG channels, and the unit the artifact states.

    units: the declared unit of each EEG channel ("" or missing = µV); labels: their names, for
    the warnings. The artifact states "microvolts" when any channel is a voltage (every voltage
    channel converted by its own unit); a stream with no voltage channel keeps its values and
    states its first declared unit. One warning names what is not a voltage (or not known), with
    its channels when only some are; one names channels that declare another voltage scale than
    the first (each converted by its own). `voltage_expected=False` (an accelerometer in g, a PPG
    in a.u.): a stream with no voltage channel is kept as it is without a warning.
    """
    declared = [(units[i] if i < len(units) else "") or "" for i in range(n_channels)]
    names = [labels[i] if i < len(labels) and labels[i] else f"ch{i + 1}" for i in range(n_channels)]
    scales = [unit_scale(u) for u in declared]
    not_voltage: dict[str, list[str]] = {}
    for name, u, sc in zip(names, declared, scales, strict=True):
        if not sc.known_voltage:
            not_voltage.setdefault(u.strip(), []).append(name)
    voltages = [sc for sc in scales if sc.known_voltage]
    if not voltages:
        unit = next(iter(not_voltage))
        if not voltage_expected:
            return [1.0] * n_channels, unit
        if len(not_voltage) == 1:
            listing = f"{unit!r}, which is not a voltage (or not a unit known here)"
        else:
            listing = (
                " and ".join(f"{u!r} ({', '.join(chs)})" for u, chs in not_voltage.items())
                + ", which are not voltages (or not units known here)"
            )
        log.warning(
            "stream %r declares its channels in %s; values kept as they are and the unit stated as %r",
            stream,
            listing,
            unit,
        )
        return [1.0] * n_channels, unit
    if not_voltage:
        log.warning(
            "stream %r: %s not a voltage (or not a unit known here): those values are kept as they "
            "are, while the artifact states the stream's unit as microvolts (its other channels are "
            "µV). Capture those channels as their own stream, or have the sender declare their unit.",
            stream,
            "; ".join(
                f"channel{'s' if len(chs) > 1 else ''} {', '.join(chs)} declare{'' if len(chs) > 1 else 's'} "
                f"{u!r}, which is"
                for u, chs in not_voltage.items()
            ),
        )
    first = next((u for u, sc in zip(declared, scales, strict=True) if sc.known_voltage and u.strip()), "")
    others = sorted(
        {u for u, sc in zip(declared, scales, strict=True) if sc.known_voltage and u.strip()}
        - {u for u in declared if unit_scale(u).factor == unit_scale(first).factor}
    )
    if others:
        log.warning(
            "stream %r: some channels declare other units (%s) than the first (%s); each is converted "
            "to µV by its own unit",
            stream,
            ", ".join(repr(u) for u in others),
            first,
        )
    return [sc.factor if sc.known_voltage else 1.0 for sc in scales], MICROVOLTS


class PrecisionCheck:
    """Never a non-zero signal delivered as zeros (a unit problem, not data): `check` each block
    of µV samples (n, n_channels) as it is captured.

    Raises UsageError (`zero_signal_message`) when every value of a non-zero block would round
    to 0.000 at the artifact's precision: the stream's unit is wrong and nothing of it is sent.
    A single channel whose values are all that small while others are not (a channel in volts
    among µV ones) is named in one warning, once. A channel is judged on the first block in
    which it is not exactly 0; checking stops once every channel is judged.
    """

    def __init__(self, stream: str, channels: list[str] | tuple[str, ...], unit: str, log: logging.Logger):
        self.stream, self.channels, self.unit, self.log = stream, list(channels), unit, log
        self._open = set(range(len(channels)))
        self._stream_judged = False

    @property
    def done(self) -> bool:
        return self._stream_judged and not self._open

    def check(self, data: Any) -> None:
        import numpy as np

        if self.done:
            return
        values = np.abs(np.asarray(data, dtype=np.float64))
        if values.ndim != 2 or values.shape[0] == 0:
            return
        values = np.where(np.isfinite(values), values, 0.0)
        peaks = values.max(axis=0)
        peak = float(peaks.max())
        if not self._stream_judged and peak > 0.0:
            if below_precision(peak):
                from collector.errors import UsageError

                raise UsageError(zero_signal_message(self.stream, peak, self.unit or MICROVOLTS))
            self._stream_judged = True
        tiny = []
        for i in sorted(self._open):
            if i < peaks.shape[0] and peaks[i] > 0.0:
                self._open.discard(i)
                if below_precision(float(peaks[i])):
                    name = self.channels[i] if i < len(self.channels) else f"ch{i + 1}"
                    tiny.append((name, float(peaks[i])))
        if tiny:
            self.log.warning(
                "stream %r: channel%s %s would be delivered as 0.000 at the artifact's precision of "
                "%g µV (largest value %s): %s declared unit is wrong (volts declared as µV, or no "
                "unit given) while the other channels' is right. Have the sender declare each "
                "channel's unit (e.g. 'V' or MNE's '0').",
                self.stream,
                "s" if len(tiny) > 1 else "",
                ", ".join(name for name, _ in tiny),
                SAMPLE_PRECISION_UV,
                ", ".join(f"{v:.3g}" for _, v in tiny),
                "their" if len(tiny) > 1 else "its",
            )


def zero_signal_message(stream: str, max_abs: float, unit: str) -> str:
    """The one-line refusal for a non-zero signal that would be delivered as zeros."""
    return (
        f"stream {stream!r}: its largest value is {max_abs:.3g} {unit}, which would be delivered as "
        f"0.000 at the artifact's precision of {SAMPLE_PRECISION_UV:g} µV: its declared unit is wrong "
        "(volts sent as µV, or no unit given). Nothing of it was sent. Have the sender declare its "
        "channel unit (e.g. 'V' or MNE's '0'), then capture again."
    )
