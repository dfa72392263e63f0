"""Head movement from a headset's accelerometer and gyroscope, per 1 s epoch, and its flag on EEG windows.

Threshold (a heuristic, configurable, stated as such): an epoch is `moving` when the mean
bias-removed gyroscope magnitude exceeds `GYRO_DPS` = 10 deg/s, or the standard deviation of the
accelerometer magnitude exceeds `ACC_G` = 0.05 g. No published source gives a validated
head-movement threshold for a Muse (O'Regan, Faul & Marnane 2013, Med Eng Phys 35(7):867,
doi:10.1016/j.medengphy.2012.08.017, show that gyroscope features detect head-movement EEG
artefacts, with a classifier rather than a fixed threshold). The values were set from Muse S
Athena recordings shipped with OpenMuse (1 s windows at 52 Hz, decoded with OpenMuse's decoder):
at rest std(|acc|) is about 0.002 g and the gyro 0.1-0.5 deg/s; during deliberate movement
std(|acc|) is 0.045-0.25 g and the gyro 38-184 deg/s. Both thresholds sit about 20x above the
rest floor and below the smallest deliberate movement.

The gyroscope's bias (a constant offset of a few deg/s) is removed with the median of the last
`BIAS_EPOCHS` epoch medians per axis, so a still head reads near 0 deg/s.

`MotionTrack` is shared between the capture threads: the accelerometer and gyroscope streams add
samples, the EEG stream asks, per band-power window, whether the head moved during it.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

ACC_G = 0.05
GYRO_DPS = 10.0
EPOCH_S = 1.0
BIAS_EPOCHS = 30


@dataclass(frozen=True, slots=True)
class Epoch:
    """One epoch of one sensor: [start_ms, end_ms] Unix ms, its measure (g or deg/s), moving."""

    start_ms: float
    end_ms: float
    value: float
    moving: bool


class _SensorEpochs:
    """Cuts one sensor's (times_ms, xyz) samples into EPOCH_S epochs and measures each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # accelerometer | gyroscope
        self._times: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self._medians: deque[np.ndarray] = deque(maxlen=BIAS_EPOCHS)

    def add(self, times_ms: np.ndarray, xyz: np.ndarray) -> list[Epoch]:
        if times_ms.shape[0] == 0:
            return []
        self._times.append(np.asarray(times_ms, dtype=np.float64))
        self._data.append(np.asarray(xyz, dtype=np.float64)[:, :3])
        times = np.concatenate(self._times)
        data = np.concatenate(self._data)
        out: list[Epoch] = []
        start = 0
        while True:
            end = int(np.searchsorted(times, times[start] + EPOCH_S * 1000.0, side="left"))
            if end >= times.shape[0]:
                break
            out.append(self._measure(times[start:end], data[start:end]))
            start = end
        self._times, self._data = [times[start:]], [data[start:]]
        return out

    def _measure(self, times: np.ndarray, xyz: np.ndarray) -> Epoch:
        ok = np.all(np.isfinite(xyz), axis=1)
        xyz = xyz[ok]
        if xyz.shape[0] < 2:
            return Epoch(float(times[0]), float(times[-1]), math.nan, False)
        if self.kind == "accelerometer":
            value = float(np.std(np.linalg.norm(xyz, axis=1)))
            moving = value > ACC_G
        else:
            self._medians.append(np.median(xyz, axis=0))
            bias = np.median(np.stack(self._medians), axis=0)
            value = float(np.mean(np.linalg.norm(xyz - bias, axis=1)))
            moving = value > GYRO_DPS
        return Epoch(float(times[0]), float(times[-1]), value, bool(moving))


class MotionTrack:
    """Movement epochs of the accelerometer and gyroscope of one headset (thread-safe).

    `add(kind, times_ms, xyz)`: (n,) Unix ms and (n, 3) samples (g or deg/s) as they arrive;
    returns the epochs completed. `during(start_ms, end_ms)`: True when any epoch overlapping the
    span is moving, False when epochs cover the span and none is, None when the sensors have not
    reached the span's end yet (or there are none, or their epochs held no finite sample).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sensors: dict[str, _SensorEpochs] = {}
        self._epochs: deque[Epoch] = deque(maxlen=3600)
        self._reached: dict[str, float] = {}
        self.moving_s = 0.0
        self.measured_s = 0.0
        self._by_second: dict[int, bool] = {}

    def add(self, kind: str, times_ms: np.ndarray, xyz: np.ndarray) -> list[Epoch]:
        with self._lock:
            sensor = self._sensors.setdefault(kind, _SensorEpochs(kind))
            epochs = sensor.add(times_ms, xyz)
            for e in epochs:
                self._epochs.append(e)
                self._reached[kind] = e.end_ms
                if not math.isfinite(e.value):  # no finite sample: says nothing about the head
                    continue
                second = int(e.start_ms // 1000)
                self._by_second[second] = self._by_second.get(second, False) or e.moving
            return epochs

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._sensors)

    def reached_ms(self) -> float | None:
        """The end of the latest epoch every sensor has completed (None before the first)."""
        with self._lock:
            if not self._reached or set(self._reached) != set(self._sensors):
                return None
            return min(self._reached.values())

    def during(self, start_ms: float, end_ms: float) -> bool | None:
        with self._lock:
            if not self._reached or min(self._reached.values()) < end_ms - EPOCH_S * 1000.0:
                return None
            hit = [
                e
                for e in self._epochs
                if e.end_ms >= start_ms and e.start_ms <= end_ms and math.isfinite(e.value)
            ]
            if not hit:
                return None
            return any(e.moving for e in hit)

    def seconds(self) -> dict[int, bool]:
        """Per Unix second (int(start_ms // 1000)) of the epochs: moving (any sensor) or not."""
        with self._lock:
            return dict(self._by_second)


def flag_windows(artifact: dict, track: MotionTrack, window_s: float) -> int:
    """Add `quality.movement` (bool, or None when unknown) to every window of an EEG chunk artifact.

    A window moved when any accelerometer/gyroscope epoch overlapping [end - window_s, end] moved.
    Returns how many windows were flagged moving. Changes `artifact` in place.
    """
    moved = 0
    for w in artifact.get("windows", ()):
        end = float(w["end_ms"])
        flag = track.during(end - window_s * 1000.0, end)
        w["quality"]["movement"] = flag
        if flag:
            moved += 1
    return moved
