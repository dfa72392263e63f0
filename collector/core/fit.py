"""Fit check: is every EEG channel in good contact before recording? (`collector fit`, `run --fit-check`)

Once a second the last analysis window (2 s by default) is judged with the same quality flags the
chunks carry (`collector.core.bandpower.compute_band_powers`, the profile's thresholds), so what the
fit check calls good is what the evidence will call good. Like the horseshoe of Mind Monitor or
Muse Direct, each channel gets one of three grades:

    good   no flag
    fair   the signal is there but disturbed: noisy (peak-to-peak above max_ptp_uv: movement,
           hair under the sensor) or line noise (mains hum above line_noise_max_share)
    bad    no usable contact: flat (peak-to-peak below flat_ptp_uv), railed (clipped at the
           amplifier's limit) or missing (no finite samples); "no signal" when not one sample
           came in the last second (the stream stopped or died: nothing stale is shown or counted)

The check passes when no channel has been bad for `needed_s` consecutive one-second checks, i.e.
every channel good or fair (a fair channel still records usable EEG: the bands stop at 44 Hz,
below the 50/60 Hz hum); `require="good"` asks for every channel good instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from collector.core.bandpower import BandSettings, compute_band_powers, load_fft
from collector.core.records import EegSource, SourceEnded, StreamDescription

GRADES = ("good", "fair", "bad")
# What a person can do about each reason, said once per reason in the closing line.
ADVICE = {
    "flat": "wet the sensors and press them to the skin",
    "railed": "reseat the band so every sensor touches the skin",
    "noisy": "sit still, move hair from under the sensors and tighten the band",
    "line noise": "move hair from under the sensors, wet them, and keep away from chargers and power cables",
    "missing": "check the headset is on and streaming",
    "waiting": "wait for the stream to send data",
    "no signal": "the stream stopped sending: check the headset is on, charged and in range",
}
# A tick with no new sample means the stream has stopped (or died): "no signal", and the window is
# emptied so that no stale grade is shown or counted once samples come back.


@dataclass(frozen=True, slots=True)
class ChannelFit:
    grade: str  # good | fair | bad
    reason: str = ""  # flat | railed | noisy | line noise | missing | waiting | no signal; "" when good
    ptp_uv: float | None = None

    def label(self) -> str:
        return f"{self.grade} ({self.reason})" if self.reason else self.grade


@dataclass(frozen=True, slots=True)
class FitResult:
    ok: bool
    elapsed_s: float
    channels: dict[str, ChannelFit]

    def not_good(self, require: str = "fair") -> dict[str, ChannelFit]:
        return {ch: f for ch, f in self.channels.items() if not _acceptable(f, require)}

    def advice(self, require: str = "fair") -> str:
        reasons = dict.fromkeys(f.reason for f in self.not_good(require).values() if f.reason)
        return "; ".join(ADVICE[r] for r in reasons if r in ADVICE)


def _acceptable(fit: ChannelFit, require: str) -> bool:
    return fit.grade == "good" or (require == "fair" and fit.grade == "fair")


def grade_window(flags: dict[str, bool]) -> tuple[str, str]:
    """(grade, reason) of one channel in one window from its quality flags (chunk field names)."""
    for key, reason in (("missing", "missing"), ("flat", "flat"), ("clipped", "railed")):
        if flags.get(key):
            return "bad", reason
    for key, reason in (("excessive_amplitude", "noisy"), ("line_noise", "line noise")):
        if flags.get(key):
            return "fair", reason
    return "good", ""


class FitChecker:
    """Keeps the last analysis window of samples and grades each channel on it."""

    def __init__(self, description: StreamDescription, settings: BandSettings | None = None) -> None:
        load_fft()
        self.description = description
        self.settings = settings or BandSettings()
        self.sfreq = float(description.sfreq)
        self.window = self.settings.sizes(self.sfreq)[0]
        self._buf = np.full((self.window, len(description.channels)), np.nan)
        self._filled = 0

    def clear(self) -> None:
        """Forget every sample (the stream stopped): the next grades need a full window of new ones."""
        self._buf[:] = np.nan
        self._filled = 0

    def push(self, data: np.ndarray) -> None:
        """data: (n_samples, n_channels) in microvolts; only the last `window` samples are kept."""
        data = np.asarray(data, dtype=np.float64)[-self.window :]
        n = data.shape[0]
        self._buf = np.roll(self._buf, -n, axis=0)
        self._buf[-n:] = data
        self._filled = min(self.window, self._filled + n)

    def assess(self) -> dict[str, ChannelFit]:
        channels = self.description.channels
        if self._filled < self.window:
            return {ch: ChannelFit("bad", "waiting") for ch in channels}
        powers = compute_band_powers(self._buf, self.sfreq, self.settings, np.array([self.window - 1]))
        q = powers.quality
        assert q is not None  # computed with quality flags (compute_band_powers' default)
        out = {}
        for c, ch in enumerate(channels):
            flags = {
                "missing": bool(q.missing[0, c]),
                "flat": bool(q.flat[0, c]),
                "clipped": bool(q.clipped[0, c]),
                "excessive_amplitude": bool(q.excessive_amplitude[0, c]),
                "line_noise": bool(q.line_noise[0, c]),
            }
            grade, reason = grade_window(flags)
            ptp = float(q.ptp_uv[0, c])
            out[ch] = ChannelFit(grade, reason, ptp if np.isfinite(ptp) else None)
        return out


def run_fit_check(
    source: EegSource,
    description: StreamDescription,
    *,
    settings: BandSettings | None = None,
    timeout_s: float = 60.0,
    needed_s: float = 3.0,
    require: str = "fair",
    on_tick: Callable[[float, dict[str, ChannelFit], int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    tick_s: float = 1.0,
) -> FitResult:
    """Read `source` and grade each channel once per `tick_s` until the fit is good or `timeout_s`.

    Good means every channel acceptable (`require`: "fair" or "good") at `needed_s / tick_s`
    consecutive checks. A check with no new sample since the previous one grades every channel
    bad ("no signal") and empties the window: a stream that died never counts as good.
    `on_tick(elapsed_s, channels, good_streak)` is called at every check.
    Samples read here are not recorded. Raises what the source raises (NoSourceError…).
    """
    checker = FitChecker(description, settings)
    needed = max(1, round(needed_s / tick_s))
    start = time.monotonic()
    next_tick = start + tick_s
    streak = 0
    channels = {ch: ChannelFit("bad", "waiting") for ch in description.channels}
    fresh, seen = 0, False  # samples since the last check; any sample yet
    while True:
        try:
            chunk = source.read(timeout=min(0.2, max(0.0, next_tick - time.monotonic())))
        except SourceEnded:  # a finite source ran out: the fit was not confirmed
            return FitResult(False, time.monotonic() - start, channels)
        if chunk is not None and len(chunk):
            checker.push(chunk.data)
            fresh += len(chunk)
        now = time.monotonic()
        if now >= next_tick:
            next_tick += tick_s
            if fresh:
                channels = checker.assess()
            else:
                checker.clear()
                why = "no signal" if seen else "waiting"
                channels = {ch: ChannelFit("bad", why) for ch in description.channels}
            seen, fresh = seen or fresh > 0, 0
            streak = streak + 1 if all(_acceptable(f, require) for f in channels.values()) else 0
            if on_tick is not None:
                on_tick(now - start, channels, streak)
            if streak >= needed:
                return FitResult(True, now - start, channels)
            if now - start >= timeout_s:
                return FitResult(False, now - start, channels)
        if should_stop is not None and should_stop():
            return FitResult(False, time.monotonic() - start, channels)
