"""Re-publish a recording (XDF, muselsl/Mind Monitor CSV, EDF/BDF) or a synthetic sine stream as
live LSL outlets.

Used by tests, `collector demo`, `replay --to-lsl` and `scripts/simulate_stream.py`. The EEG
outlet carries the recording's channel labels, units and nominal rate (all channels, AUX
included, as the device would send them); markers go to a second outlet `<name>-markers`.
Samples are stamped with `local_clock()`-based times: the first sample at the start of playing,
the rest at their recorded offsets divided by `speed`, and pushed when due (speed=None pushes
as fast as possible, keeping the recorded spacing in the stamps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collector.devices.recordings.detect import load_recording
from collector.devices.recordings.model import RecordedStream, pick_eeg_stream, recording_markers

log = logging.getLogger(__name__)

PUSH_BLOCK_S = 1.0 / 32  # push in ~31 ms blocks, like a BLE headset's packets
FAST_BLOCK_SAMPLES = 256  # speed=None: samples per push


def _sleep_until(lsl_time: float, stop_event: threading.Event, local_clock: Any) -> bool:
    """Sleep until the LSL clock reaches `lsl_time`; False if stopped first."""
    while True:
        remaining = lsl_time - local_clock()
        if remaining <= 0:
            return not stop_event.is_set()
        if stop_event.wait(min(remaining, 0.1)):
            return False


def make_eeg_info(
    name: str,
    source_id: str,
    labels: Sequence[str],
    sfreq: float,
    *,
    stream_type: str = "EEG",
    units: Sequence[str] = (),
    channel_format: str = "float32",
    manufacturer: str = "openlesson-collector player",
    types: Sequence[str] = (),
) -> Any:
    import pylsl

    info = pylsl.StreamInfo(name, stream_type, len(labels), sfreq, channel_format, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", manufacturer)
    channels = desc.append_child("channels")
    for i, label in enumerate(labels):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", (units[i] if i < len(units) else "") or "microvolts")
        # The recording's own channel type when it has one (MNE-LSL's eog, stim, ...).
        kind = "AUX" if "AUX" in label.upper() else (types[i] if i < len(types) else "") or "EEG"
        ch.append_child_value("type", kind)
    return info


def make_marker_info(name: str, source_id: str) -> Any:
    import pylsl

    return pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", source_id)


_NUMERIC_FORMATS = {"float32", "double64", "int8", "int16", "int32", "int64"}


def play_to_lsl(
    path: str | Path,
    *,
    stream_name: str | None = None,
    source_id: str | None = None,
    stream: str | None = None,
    speed: float | None = 1.0,
    loop: bool = False,
    stop_event: threading.Event | None = None,
    markers: bool = True,
    wait_for_consumer_s: float | None = None,
    linger_s: float = 1.0,
    ready: threading.Event | None = None,
) -> int:
    """Play the EEG stream of an XDF file (and its markers) as LSL until the end, or forever with
    `loop`, or until `stop_event` is set. Returns the number of EEG samples pushed.

    wait_for_consumer_s: wait up to this long for an inlet before pushing (tests, speed=None).
    linger_s: keep the outlets open this long after the last sample so inlets can drain it.
    ready: set once the outlets exist.
    """
    import pylsl

    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be positive or None, got {speed!r}")
    stop_event = stop_event or threading.Event()
    recording = load_recording(path, stream=stream)
    eeg = pick_eeg_stream(recording, stream)
    name = stream_name or eeg.name or "EEG"
    sid = source_id or f"{eeg.source_id or eeg.name}-replay"
    fmt = eeg.channel_format if eeg.channel_format in _NUMERIC_FORMATS else "float32"
    sfreq = eeg.sfreq
    eeg_outlet = pylsl.StreamOutlet(
        make_eeg_info(
            name,
            sid,
            eeg.labels,
            sfreq,
            stream_type=eeg.type or "EEG",
            units=eeg.units,
            channel_format=fmt,
            types=eeg.channel_types,
        )
    )
    marker_times, marker_values = recording_markers(recording, eeg) if markers else (np.zeros(0), [])
    marker_outlet = (
        pylsl.StreamOutlet(make_marker_info(f"{name}-markers", f"{sid}-markers"))
        if len(marker_values)
        else None
    )
    if ready is not None:
        ready.set()
    log.info(
        "playing %s as LSL stream %r (source_id %s): %d channels, %.6g Hz, %d samples%s%s",
        Path(path).name,
        name,
        sid,
        len(eeg.labels),
        sfreq,
        eeg.sample_count,
        f", {len(marker_values)} markers on {name}-markers" if marker_outlet else "",
        ", looping" if loop else "",
    )
    try:
        if wait_for_consumer_s:
            # In short waits, so that stop_event (Ctrl-C in `replay --to-lsl`) is seen.
            deadline = time.monotonic() + wait_for_consumer_s
            while not stop_event.is_set() and time.monotonic() < deadline:
                if eeg_outlet.wait_for_consumers(min(0.5, max(0.0, deadline - time.monotonic()))):
                    break
        pushed = _play_loop(
            eeg, eeg_outlet, marker_times, marker_values, marker_outlet, speed, loop, stop_event
        )
        if linger_s > 0 and not stop_event.is_set():
            stop_event.wait(linger_s)
        return pushed
    finally:
        del eeg_outlet, marker_outlet  # destroying the outlets ends the streams for their inlets


def _play_loop(
    eeg: RecordedStream,
    outlet: Any,
    marker_times: np.ndarray,
    marker_values: list[str],
    marker_outlet: Any,
    speed: float | None,
    loop: bool,
    stop_event: threading.Event,
) -> int:
    import pylsl

    data = np.ascontiguousarray(eeg.data)
    t0 = float(eeg.times_s[0])
    rel = eeg.times_s - t0
    marker_rel = marker_times - t0
    n = rel.shape[0]
    scale = 1.0 if speed is None else 1.0 / speed
    period = 1.0 / eeg.sfreq if eeg.sfreq > 0 else (float(np.median(np.diff(rel))) if n > 1 else 0.01)
    if speed is None:
        bounds = list(range(0, n, FAST_BLOCK_SAMPLES))
    else:
        block_s = PUSH_BLOCK_S * speed  # recorded seconds per push
        bounds = sorted(set(np.searchsorted(rel, np.arange(0.0, rel[-1] + block_s, block_s)).tolist()) | {0})
        bounds = [b for b in bounds if b < n]
    bounds.append(n)
    pushed = 0
    start = pylsl.local_clock()
    while True:
        m = 0
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            stamps = start + rel[b0:b1] * scale
            if speed is not None and not _sleep_until(float(stamps[-1]), stop_event, pylsl.local_clock):
                return pushed
            if stop_event.is_set():
                return pushed
            while marker_outlet is not None and m < marker_rel.shape[0] and marker_rel[m] <= rel[b1 - 1]:
                marker_outlet.push_sample([marker_values[m]], start + marker_rel[m] * scale)
                m += 1
            outlet.push_chunk(data[b0:b1], stamps.tolist())
            pushed += b1 - b0
        while marker_outlet is not None and m < marker_rel.shape[0]:
            marker_outlet.push_sample([marker_values[m]], start + marker_rel[m] * scale)
            m += 1
        if not loop:
            return pushed
        start += (rel[-1] + period) * scale  # the next pass continues right after this one


class XdfPlayer:
    """`play_to_lsl` in a background thread: `with XdfPlayer(path, stream_name=..., source_id=...):`."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        self.path = path
        self.kwargs = kwargs
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.samples_pushed = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, ready_timeout_s: float = 10.0) -> XdfPlayer:
        self._thread = threading.Thread(target=self._run, name="xdf-player", daemon=True)
        self._thread.start()
        self.ready.wait(ready_timeout_s)
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            self.samples_pushed = play_to_lsl(
                self.path, stop_event=self.stop_event, ready=self.ready, **self.kwargs
            )
        except BaseException as exc:  # reported to the owner through .error
            self.error = exc
            log.exception("XDF player failed")
        finally:
            self.ready.set()
            self.done.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def __enter__(self) -> XdfPlayer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def play_sine_to_lsl(
    *,
    stream_name: str = "SimulatedEEG",
    source_id: str = "simulated-eeg",
    sfreq: float = 256.0,
    labels: Sequence[str] = ("TP9", "AF7", "AF8", "TP10", "Right AUX"),
    freqs_hz: Sequence[float] = (10.0, 6.0, 20.0, 10.0, 50.0),
    amplitude_uv: float = 20.0,
    noise_uv: float = 5.0,
    stop_event: threading.Event | None = None,
    duration_s: float | None = None,
    seed: int = 0,
) -> int:
    """A synthetic EEG stream: one sine per channel plus Gaussian noise, in real time."""
    import pylsl

    stop_event = stop_event or threading.Event()
    outlet = pylsl.StreamOutlet(
        make_eeg_info(stream_name, source_id, labels, sfreq, manufacturer="simulated")
    )
    rng = np.random.default_rng(seed)
    freqs = np.asarray([freqs_hz[i % len(freqs_hz)] for i in range(len(labels))])
    block = max(1, int(round(sfreq * PUSH_BLOCK_S)))
    start = pylsl.local_clock()
    pushed = 0
    try:
        while not stop_event.is_set():
            idx = np.arange(pushed, pushed + block)
            if duration_s is not None and idx[0] >= duration_s * sfreq:
                break
            t = idx / sfreq
            stamps = start + t
            if not _sleep_until(float(stamps[-1]), stop_event, pylsl.local_clock):
                break
            values = amplitude_uv * np.sin(2 * np.pi * freqs[None, :] * t[:, None])
            values += rng.normal(0.0, noise_uv, size=values.shape)
            outlet.push_chunk(values.astype(np.float32), stamps.tolist())
            pushed += block
        return pushed
    finally:
        del outlet
