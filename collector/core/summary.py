"""The session summary: one small JSON evidence that gives the analysis the whole capture at once.

Built incrementally from the EEG chunk artifacts and the screenshots of one capture (nothing is
re-read), then spooled as the capture's last item: `eeg` evidence, `application/json`,
`metadata.kind = "session-summary"`, its own `stream_id` ("session-summary"), `chunk_index` 0.
The spool holds it back until every other item of its capture is settled, so it is posted last.

Layout (`format` "openlesson-collector.capture.session-summary", version 1); times are Unix ms:

    capture_id, stream_id, collector_version, kind ("run" | "replay" | "demo")
    started_ms, ended_ms, duration_s   the data's span: first to last sample or screenshot
    device: {name, model, source_id, sfreq, channels, unit} | null (no EEG)
    bands_hz: {band: [lo, hi]}
    band_powers: {band: share}        mean over channels and windows of the relative powers
                                      (the same definition as an EEG chunk's band_powers)
    channels_good_share: {channel: share}   windows with no quality flag on that channel / windows
    minutes: [{"start_ms", "windows", "band_powers": {channel: {band: share}},
               "mean": {band: share}, "good_share": {channel: share}, "screenshots": int,
               "markers": {value: count}}]
                                      wall-clock minutes [start_ms, start_ms + 60000), UTC-aligned,
                                      by each window's end_ms / each screenshot's time; only
                                      minutes holding data are listed
    markers: [{"time_ms", "value"}]   every marker (LSL marker stream / XDF markers) when there are
                                      at most 1,500; else [] and markers_complete = false (the
                                      per-minute counts and the EEG chunks still hold them all)
    markers_complete: bool
    gaps: [{"start_ms", "end_ms"}]    last sample before / first sample after each gap (first 500)
    gaps_complete: bool
    paused_periods: [{"start_ms", "end_ms"}]   screen capture paused by the learner
    movement_share: float | null      EEG windows flagged `quality.movement` / windows where the
                                      accelerometer/gyroscope could tell (null: no motion sensor)
    heart_rate_bpm: float | null      mean of the PPG's good 10 s heart-rate windows (null: none)
    sensors: {kind: {"stream_id", "samples", "chunks"}}   auxiliary streams (accelerometer,
                                      gyroscope, ppg) captured as their own `eeg` evidence
    minutes[].movement_share, minutes[].heart_rate_bpm, minutes[].heart_rate_windows
                                      the same per minute (null when unknown; windows = good / all)
    totals: {samples, eeg_chunks, windows, windows_with_powers, markers, gaps, screenshots,
             screenshots_skipped, black_frames}
                                      black_frames: black or empty screenshots held back (a Wayland
                                      session's broken grabs; collector.devices.screen.source)

Size: about 0.6 kB per minute for 4 channels, plus ~45 bytes per listed marker: under 200 kB
for 2 hours whatever the marker rate (see tests/e2e/test_summary_evidence.py).
"""

from __future__ import annotations

import json
import math
from typing import Any

from collector.core.evidence import EvidenceChunk

FORMAT = "openlesson-collector.capture.session-summary"
STREAM_ID = "session-summary"
KIND = "session-summary"
# Lists longer than this are left out (counts per minute stay), so 2 h stay under 200 kB: the
# bundled P300 recording has ~1.6 markers a second, 11,000+ in 2 h (each one is in its EEG chunk).
MAX_LISTED_MARKERS = 1500
MAX_LISTED_GAPS = 500
_QUALITY_FLAGS = ("flat", "clipped", "excessive_amplitude", "line_noise", "missing")


def _sig(value: float, digits: int = 4) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


class _Minute:
    __slots__ = (
        "windows", "with_powers", "powered", "sums", "good", "judged", "screenshots", "markers",
        "moved", "motion_known", "hr_sum", "hr_good", "hr_all",
    )  # fmt: skip

    def __init__(self) -> None:
        self.windows = 0
        self.with_powers = 0  # windows with band powers on at least one channel
        self.powered: dict[str, int] = {}
        self.sums: dict[str, dict[str, float]] = {}
        self.good: dict[str, int] = {}
        self.judged: dict[str, int] = {}
        self.screenshots = 0
        self.markers: dict[str, int] = {}
        self.moved = 0
        self.motion_known = 0
        self.hr_sum = 0.0
        self.hr_good = 0
        self.hr_all = 0


class SummaryBuilder:
    """Accumulates one capture's windows, markers, gaps and screenshots into the summary artifact."""

    def __init__(self, *, capture_id: str, kind: str, collector_version: str) -> None:
        self.capture_id = capture_id
        self.kind = kind
        self.collector_version = collector_version
        self.first_ms: float | None = None  # the data's own span (a replay keeps its file's times)
        self.last_ms: float | None = None
        self.device: dict[str, Any] | None = None
        self.bands_hz: dict[str, Any] = {}
        self._minutes: dict[int, _Minute] = {}
        self.markers: list[dict[str, Any]] = []
        self.gaps: list[dict[str, float]] = []
        self.paused: list[dict[str, int]] = []
        self.samples = 0
        self.eeg_chunks = 0
        self.screenshots = 0
        self.screenshots_skipped = 0
        self.black_frames = 0
        self.sensors: dict[str, dict[str, Any]] = {}

    def _minute(self, time_ms: float) -> _Minute:
        return self._minutes.setdefault(int(time_ms // 60000), _Minute())

    def _span(self, start_ms: float, end_ms: float) -> None:
        self.first_ms = start_ms if self.first_ms is None else min(self.first_ms, start_ms)
        self.last_ms = end_ms if self.last_ms is None else max(self.last_ms, end_ms)

    def add_chunk(self, artifact: dict[str, Any]) -> None:
        """One EEG chunk artifact (collector/core/chunk.py layout), any length."""
        if self.device is None:
            self.device = dict(artifact["device"])
            self.bands_hz = dict(artifact["bands_hz"])
        self.eeg_chunks += 1
        self.samples += len(artifact["samples"])
        times = artifact["times_ms"]  # an array in a fresh chunk, a list in a decoded one
        if len(times):
            t0 = artifact["t0_ms"]
            self._span(t0 + float(times[0]), t0 + float(times[-1]))
        for w in artifact["windows"]:
            minute = self._minute(w["end_ms"])
            minute.windows += 1
            quality = w.get("quality") or {}
            if quality.get("movement") is not None:
                minute.motion_known += 1
                minute.moved += bool(quality["movement"])
            if not quality.get("gap"):
                for ch, flags in (quality.get("channels") or {}).items():
                    minute.judged[ch] = minute.judged.get(ch, 0) + 1
                    if not any(flags.get(f) for f in _QUALITY_FLAGS):
                        minute.good[ch] = minute.good.get(ch, 0) + 1
            powered_here = False
            for ch, powers in (w.get("relative") or {}).items():
                # A window without powers (missing samples, a gap) carries nulls: it is left out of
                # the means and of windows_with_powers, as it is of each chunk's band_powers.
                if not powers or any(value is None for value in powers.values()):
                    continue
                powered_here = True
                minute.powered[ch] = minute.powered.get(ch, 0) + 1
                sums = minute.sums.setdefault(ch, {})
                for band, value in powers.items():
                    sums[band] = sums.get(band, 0.0) + value
            minute.with_powers += powered_here
        for e in artifact["events"]:
            self.markers.append({"time_ms": e["time_ms"], "value": e["value"]})
            counts = self._minute(e["time_ms"]).markers
            counts[e["value"]] = counts.get(e["value"], 0) + 1
        self.gaps.extend({"start_ms": g["start_ms"], "end_ms": g["end_ms"]} for g in artifact["gaps"])

    def add_sensor_chunk(self, kind: str, stream_id: str, samples: int) -> None:
        """One chunk of an auxiliary sensor stream (accelerometer, gyroscope, ppg)."""
        entry = self.sensors.setdefault(kind, {"stream_id": stream_id, "samples": 0, "chunks": 0})
        entry["samples"] += int(samples)
        entry["chunks"] += 1

    def add_heart_rate(self, windows: list[dict[str, Any]]) -> None:
        """PPG heart-rate windows ({"end_ms", "bpm", "ok", ...}, collector.capture.aux_loop)."""
        for w in windows:
            minute = self._minute(w["end_ms"])
            minute.hr_all += 1
            if w["ok"] and w["bpm"] is not None:
                minute.hr_good += 1
                minute.hr_sum += float(w["bpm"])

    def add_screenshot(
        self, time_ms: int, skipped_before: int = 0, paused_periods=(), black_before: int = 0
    ) -> None:
        self.screenshots += 1
        self.black_frames += int(black_before)
        self._span(time_ms, time_ms)
        self.screenshots_skipped += int(skipped_before)
        self._minute(time_ms).screenshots += 1
        for start, end in paused_periods:
            self.paused.append({"start_ms": int(start), "end_ms": int(end)})

    @property
    def empty(self) -> bool:
        return self.first_ms is None

    def build(self) -> dict[str, Any]:
        """The summary artifact (a JSON-ready dict)."""
        started_ms = int(self.first_ms or 0)
        ended_ms = int(math.ceil(self.last_ms or 0))
        bands = list(self.bands_hz)
        minutes = []
        total_sums: dict[str, float] = dict.fromkeys(bands, 0.0)
        total_powered = 0
        good: dict[str, int] = {}
        judged: dict[str, int] = {}
        windows = 0
        windows_with_powers = 0
        moved = known = hr_good = 0
        hr_sum = 0.0
        for k in sorted(self._minutes):
            m = self._minutes[k]
            windows += m.windows
            windows_with_powers += m.with_powers
            per_channel = {
                ch: {b: _sig(m.sums[ch].get(b, 0.0) / n) for b in bands} for ch, n in m.powered.items() if n
            }
            mean = {}
            if per_channel:
                for b in bands:
                    s = sum(m.sums[ch].get(b, 0.0) for ch in m.powered)
                    n = sum(m.powered.values())
                    mean[b] = _sig(s / n)
                    total_sums[b] += s
                total_powered += sum(m.powered.values())
            for ch, n in m.judged.items():
                judged[ch] = judged.get(ch, 0) + n
                good[ch] = good.get(ch, 0) + m.good.get(ch, 0)
            moved, known = moved + m.moved, known + m.motion_known
            hr_good, hr_sum = hr_good + m.hr_good, hr_sum + m.hr_sum
            minutes.append({
                "start_ms": 60000 * k,
                "windows": m.windows,
                "band_powers": per_channel,
                "mean": mean,
                "good_share": {ch: _sig(m.good.get(ch, 0) / n, 3) for ch, n in m.judged.items() if n},
                "screenshots": m.screenshots,
                "markers": dict(m.markers),
                "movement_share": _sig(m.moved / m.motion_known, 3) if m.motion_known else None,
                "heart_rate_bpm": round(m.hr_sum / m.hr_good, 1) if m.hr_good else None,
                "heart_rate_windows": [m.hr_good, m.hr_all],
            })  # fmt: skip
        band_powers = {b: _sig(total_sums[b] / total_powered) for b in bands} if total_powered else {}
        return {
            "format": FORMAT,
            "version": 1,
            "capture_id": self.capture_id,
            "stream_id": STREAM_ID,
            "collector_version": self.collector_version,
            "kind": self.kind,
            "started_ms": started_ms,
            "ended_ms": ended_ms,
            "duration_s": round(max(0, ended_ms - started_ms) / 1000, 3),
            "device": self.device,
            "bands_hz": self.bands_hz,
            "band_powers": band_powers,
            "channels_good_share": {ch: _sig(good.get(ch, 0) / n, 3) for ch, n in judged.items() if n},
            "minutes": minutes,
            "markers": self.markers if len(self.markers) <= MAX_LISTED_MARKERS else [],
            "markers_complete": len(self.markers) <= MAX_LISTED_MARKERS,
            "gaps": self.gaps[:MAX_LISTED_GAPS],
            "gaps_complete": len(self.gaps) <= MAX_LISTED_GAPS,
            "paused_periods": self.paused,
            "movement_share": _sig(moved / known, 3) if known else None,
            "heart_rate_bpm": round(hr_sum / hr_good, 1) if hr_good else None,
            "sensors": self.sensors,
            "totals": {
                "samples": self.samples,
                "eeg_chunks": self.eeg_chunks,
                "windows": windows,
                "windows_with_powers": windows_with_powers,
                "markers": len(self.markers),
                "gaps": len(self.gaps),
                "screenshots": self.screenshots,
                "screenshots_skipped": self.screenshots_skipped,
                "black_frames": self.black_frames,
            },
        }

    def evidence(self, device_name: str | None) -> tuple[EvidenceChunk, bytes]:
        """(the summary's evidence, its artifact bytes) for the spool."""
        artifact = self.build()
        data = json.dumps(artifact, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        fields: dict[str, Any] = {
            "type": "eeg",
            "mime_type": "application/json",
            "file_name": f"session-summary-{self.capture_id}.json",
            "timestamp_ms": artifact["started_ms"],
            "chunk_index": 0,
            "sample_count": self.samples,
            "band_powers": artifact["band_powers"] or None,
            "metadata": {
                "capture_id": self.capture_id,
                "stream_id": STREAM_ID,
                "collector_version": self.collector_version,
                "kind": KIND,
            },
        }
        if device_name:
            fields["device_name"] = device_name
        return EvidenceChunk.from_fields(fields), data
