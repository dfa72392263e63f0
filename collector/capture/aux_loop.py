"""Auxiliary sensor streams of a capture (accelerometer, gyroscope, PPG): their own chunker path.

Each auxiliary stream is read by its own thread and chunked by an `EegChunker` with band powers off,
so its samples are chunked, spooled, identified (capture_id, stream_id "<kind>:<source_id>",
chunk_index) and counted exactly like EEG. Each chunk is `eeg` evidence (the API's only
physiological type) with `metadata.kind` = accelerometer | gyroscope | ppg; the artifact is the EEG
chunk artifact with `kind`, no windows, and for PPG a `heart_rate` list:

    "kind": "ppg",
    "heart_rate": [{"start_ms", "end_ms", "bpm": float | null, "ok": bool, "reason": str,
                    "channel": str | null, "pulse_share": float}]   (per 10 s of PPG, by end_ms)

Accelerometer and gyroscope samples also feed the capture's `MotionTrack`, from which the EEG path
flags its windows (`quality.movement`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from collector.core.chunk import HARD_MAX_CHUNK_BYTES, EegChunker, EegChunkOut, chunk_evidence
from collector.core.heart import WINDOW_S, best_channel_rate
from collector.core.motion import MotionTrack
from collector.core.records import SourceEnded, StreamDescription
from collector.errors import CollectorError

log = logging.getLogger("collector.capture.aux")
LAST_WINDOW_SHARE = 0.8  # the capture's last PPG window is rated when it is at least this full


class HeartWindows:
    """Cuts a PPG stream into WINDOW_S windows (from its first sample) and rates each one."""

    def __init__(self, description: StreamDescription) -> None:
        self.sfreq = float(description.sfreq)
        self.channels = description.channels
        self._times: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self.pending: list[dict[str, Any]] = []
        self.rated: list[dict[str, Any]] = []  # every window, for the summary

    def add(self, times_ms: np.ndarray, data: np.ndarray) -> None:
        self._times.append(np.asarray(times_ms, dtype=np.float64))
        self._data.append(np.asarray(data, dtype=np.float64))
        times = np.concatenate(self._times)
        values = np.concatenate(self._data)
        start = 0
        while True:
            end = int(np.searchsorted(times, times[start] + WINDOW_S * 1000.0, side="left"))
            if end >= times.shape[0]:
                break
            self._rate(times[start:end], values[start:end])
            start = end
        self._times, self._data = [times[start:]], [values[start:]]

    def finish(self) -> None:
        """The last, partial window when it holds at least LAST_WINDOW_SHARE of a window.

        Shorter windows give Welch's pulse share too few segments: on pure noise the best of 16
        optics channels passed the quality checks in 20 % of 5 s windows, 0 of 200 at 8 s.
        """
        if (
            self._times
            and self._times[0].shape[0]
            and (self._times[0][-1] - self._times[0][0] >= WINDOW_S * 1000.0 * LAST_WINDOW_SHARE)
        ):
            self._rate(self._times[0], self._data[0])
        self._times, self._data = [], []

    def _rate(self, times: np.ndarray, data: np.ndarray) -> None:
        column, hr = best_channel_rate(data, self.sfreq)
        entry = {
            "start_ms": round(float(times[0]), 3),
            "end_ms": round(float(times[-1]), 3),
            "bpm": round(hr.bpm, 1) if math.isfinite(hr.bpm) else None,
            "ok": hr.ok,
            "reason": hr.reason,
            "channel": self.channels[column] if column >= 0 else None,
            "pulse_share": round(hr.pulse_share, 3),
        }
        self.pending.append(entry)
        self.rated.append(entry)

    def take(self, until_ms: float | None) -> list[dict[str, Any]]:
        """Rated windows ending by `until_ms` (None: all of them), removed from pending."""
        if until_ms is None:
            out, self.pending = self.pending, []
            return out
        out = [e for e in self.pending if e["end_ms"] <= until_ms]
        self.pending = [e for e in self.pending if e["end_ms"] > until_ms]
        return out


def aux_loop(capture, kind: str, source, description: StreamDescription, motion: MotionTrack) -> None:
    """Read one auxiliary stream until the capture stops; every sample read reaches the spool."""
    stream_id = f"{kind}:{description.source_id or description.name}"
    stats = capture.aux_stats.setdefault(
        kind, {"samples": 0, "chunks": 0, "dropped": 0, "stream_id": stream_id}
    )
    try:
        chunker = EegChunker(
            description,
            capture.profile.analysis.band_settings(),
            capture_id=capture.capture_id,
            stream_id=stream_id,
            chunk_s=capture.profile.analysis.chunk_s,
            sample_decimals=6,  # 0.001 g would hide an accelerometer's rest noise (0.002 g)
            max_bytes=capture.chunk_max_bytes or HARD_MAX_CHUNK_BYTES,
            band_powers=False,
        )
    except Exception as exc:  # nothing read yet; the EEG goes on without this sensor
        log.warning("%s stream %r not captured: %s", kind, description.name, exc)
        return
    heart = HeartWindows(description) if kind == "ppg" else None
    device_name = capture.device_name_for(description)

    def spool_chunks(outs: list[EegChunkOut], final: bool = False) -> None:
        for i, out in enumerate(outs):
            artifact = dict(out.artifact)
            artifact["kind"] = kind
            if heart is not None:
                times = artifact["times_ms"]
                last_one = final and i == len(outs) - 1  # the capture's last chunk takes the rest
                last = artifact["t0_ms"] + float(times[-1]) if len(times) and not last_one else None
                artifact["heart_rate"] = heart.take(last)
                capture.summary.add_heart_rate(artifact["heart_rate"])
            out = dataclasses.replace(out, artifact=artifact, encoded=None)
            evidence = chunk_evidence(out, device_name)
            evidence = dataclasses.replace(evidence, metadata={**evidence.metadata, "kind": kind})
            if capture._spool(evidence, out.to_bytes()):
                stats["chunks"] += 1
            else:
                stats["dropped"] += 1
            stats["samples"] += out.sample_count
            capture.summary.add_sensor_chunk(kind, stream_id, out.sample_count)

    try:
        last_read = False
        while not last_read:
            last_read = capture.stop_event.is_set()
            try:
                chunk = source.read(timeout=0.0 if last_read else 0.2)
            except SourceEnded:
                break
            if chunk is None or len(chunk) == 0:
                continue
            if kind in ("accelerometer", "gyroscope"):
                motion.add(kind, chunk.times_ms, chunk.data)
            if heart is not None:
                heart.add(chunk.times_ms, chunk.data)
            spool_chunks(chunker.push(chunk))
    except CollectorError as err:
        log.warning("%s stream stopped: %s (EEG continues)", kind, err)
    except Exception:  # a bug here must not take the EEG with it
        log.exception("%s capture failed (EEG continues)", kind)
    finally:
        try:
            if heart is not None:
                heart.finish()
            spool_chunks(chunker.flush(), final=True)
        except Exception:
            log.exception("%s capture could not save its last chunk", kind)
        finally:
            stats["done"] = True
