"""Real pylsl outlets shaped exactly like muselsl 2.5.3's and OpenMuse's (v0.1.8) streams of a Muse S Athena.

Names, types, source_ids, channel labels, units and rates as their sources write them (research notes:
muselsl lsl_outlet.build_outlet + stream_descriptors; OpenMuse's mne_lsl outlets). The signals are
known: EEG sines, a still head for the first `still_s` seconds and then a moving one (accelerometer
and gyroscope), and a pulse of `bpm` beats per minute on the optics channels a Muse S Athena fills.
"""

from __future__ import annotations

import threading
import time

import numpy as np

EEG_SCALE = 1450.0 / 16383.0
OPENMUSE_DC = 8192 * EEG_SCALE


def _outlet(name, type_, labels, rate, source_id, unit=None, ch_type=None, openmuse=False):
    import pylsl

    info = pylsl.StreamInfo(name, type_, len(labels), rate, "float32", source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "Muse")
    if openmuse:
        desc.append_child_value("model", "MuseS")
        desc.append_child_value("device", "MuseS-FA20")
    chans = desc.append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        if unit is not None:
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", ch_type or type_)
    return pylsl.StreamOutlet(info, 12)


def pulse(t: np.ndarray, bpm: float) -> np.ndarray:
    """A PPG-like wave: a systolic peak and a smaller dicrotic one per beat."""
    phase = (t * bpm / 60.0) % 1.0
    return np.exp(-(((phase - 0.2) / 0.07) ** 2)) + 0.4 * np.exp(-(((phase - 0.5) / 0.1) ** 2))


class AthenaStreams:
    """Publishes an Athena's EEG, ACC, GYRO and optics in real time until stop(), as muselsl or OpenMuse."""

    def __init__(
        self, mac: str, *, streamer: str = "muselsl", still_s: float = 6.0, bpm: float = 72.0
    ) -> None:
        self.mac = mac
        self.streamer = streamer
        self.still_s = still_s
        self.bpm = bpm
        self.stop_event = threading.Event()
        self.sent: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_clock: float | None = None
        self.started_unix_ms = 0.0  # Unix ms of stream time 0

    def __enter__(self) -> AthenaStreams:
        self.outlets = self._make()
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self._thread.join(5)
        self.outlets.clear()

    def _make(self) -> dict:
        mac = self.mac
        if self.streamer == "muselsl":
            sid = f"Muse{mac}"
            return {
                "eeg": (
                    _outlet("Muse", "EEG", ["TP9", "AF7", "AF8", "TP10"], 256, sid, "microvolts", "EEG"),
                    256,
                ),
                "acc": (_outlet("Muse", "ACC", ["X", "Y", "Z"], 52, sid, "g", "accelerometer"), 52),
                "gyro": (_outlet("Muse", "GYRO", ["X", "Y", "Z"], 52, sid, "dps", "gyroscope"), 52),
                "ppg": (_outlet("Muse", "PPG", [f"OPT{i}" for i in range(16)], 64, sid, "a.u.", "PPG"), 64),
            }
        eeg = ["EEG_TP9", "EEG_AF7", "EEG_AF8", "EEG_TP10", "AUX_1", "AUX_2", "AUX_3", "AUX_4"]
        accgyro = ["ACC_X", "ACC_Y", "ACC_Z", "GYRO_X", "GYRO_Y", "GYRO_Z"]
        optics = ["OPTICS_LI_NIR", "OPTICS_RI_NIR", "OPTICS_LI_IR", "OPTICS_RI_IR"]
        om = {"openmuse": True}
        return {
            "eeg": (_outlet(f"Muse-EEG ({mac})", "EEG", eeg, 256, f"{mac}_eeg", **om), 256),
            "accgyro": (_outlet(f"Muse-ACCGYRO ({mac})", "ACCGYRO", accgyro, 52, f"{mac}_accgyro", **om), 52),
            "ppg": (_outlet(f"Muse-OPTICS ({mac})", "PPG", optics, 64, f"{mac}_optics", **om), 64),
            "battery": (
                _outlet(f"Muse-BATTERY ({mac})", "Battery", ["BATTERY_PERCENT"], 0.2, f"{mac}_battery", **om),
                0.2,
            ),
        }

    def start_moving(self) -> float:
        """The head moves from now on; returns the stream time (s) it starts at."""
        import pylsl

        assert self.started_clock is not None
        self.still_s = pylsl.local_clock() - self.started_clock
        return self.still_s

    def values(self, key: str, t: np.ndarray) -> np.ndarray:
        """The samples of stream `key` at stream times t (s since start), (n, n_channels)."""
        moving = (t >= self.still_s)[:, None]
        if key == "eeg":
            centred = np.stack([20 * np.sin(2 * np.pi * 10 * t + k) for k in range(4)], axis=1)
            if self.streamer == "muselsl":
                return centred
            raw = centred + OPENMUSE_DC  # OpenMuse: raw * 1450/16383, no midpoint
            return np.concatenate([raw, np.full((t.shape[0], 4), OPENMUSE_DC)], axis=1)
        acc = np.stack([0.001 * np.sin(3 * t), 0.001 * np.cos(3 * t), 1.0 + 0 * t], axis=1)
        acc = acc + moving * np.stack([0.3 * np.sin(2 * np.pi * 2 * t)] * 3, axis=1)
        gyro = (
            np.stack([0.3 + 0.2 * np.sin(5 * t)] * 3, axis=1)
            + moving * 60 * np.sin(2 * np.pi * 1.5 * t)[:, None]
        )
        if key == "acc":
            return acc
        if key == "gyro":
            return -gyro
        if key == "accgyro":
            return np.concatenate([acc, -gyro], axis=1)
        if key == "battery":
            return np.full((t.shape[0], 1), 80.0)
        p = 1000.0 + 200.0 * pulse(t, self.bpm)
        if self.streamer == "muselsl":  # preset p1041: 4 channels into OPT4..OPT7, the rest 0
            out = np.zeros((t.shape[0], 16))
            out[:, 4:8] = p[:, None]
            return out
        return np.repeat((p / 32768.0)[:, None], 4, axis=1)

    def _run(self) -> None:
        import pylsl

        start = pylsl.local_clock()
        self.started_clock = start
        self.started_unix_ms = (time.time() - (pylsl.local_clock() - start)) * 1000.0
        done = dict.fromkeys(self.outlets, 0)
        while not self.stop_event.is_set():
            now = pylsl.local_clock() - start
            for key, (outlet, rate) in self.outlets.items():
                due = int(now * rate)
                if due > done[key]:
                    idx = np.arange(done[key], due)
                    t = idx / rate
                    outlet.push_chunk(self.values(key, t).astype(np.float32).tolist(), (start + t).tolist())
                    done[key] = due
                    self.sent[key] = due
            time.sleep(0.02)
